// sliceproxy-testing: the product's composition plus test-only fault injection, so that none of
// it ships in the sliceproxy binary. Hidden flags:
//   --testing-fail-first-syncs N   the first N syncs fail as a kernel error would
//   --testing-skip-capability-check  start without checking the backend's Linux capabilities

#include <CLI/CLI.hpp>

#include "proxier/cmd/run.h"
#include "tests/support/failing_backend.h"

int main(int argc, char** argv) {
  using namespace sliceproxy::proxier;
  int failFirstSyncs = 0;
  bool skipCapabilityCheck = false;
  cmd::Extensions ext;
  ext.addFlags = [&](CLI::App& app) {
    app.add_option("--testing-fail-first-syncs", failFirstSyncs)->group("");
    app.add_flag("--testing-skip-capability-check", skipCapabilityCheck)->group("");
  };
  ext.wrapBackend = [&](Backend& inner) -> std::unique_ptr<Backend> {
    if (failFirstSyncs <= 0) return nullptr;
    return std::make_unique<FailingBackend>(inner, failFirstSyncs);
  };
  ext.skipCapabilityCheck = [&] { return skipCapabilityCheck; };
  return cmd::run(argc, argv, ext);
}
