// sliceproxy-testing: the product's composition plus test-only fault injection, so that none of
// it ships in the sliceproxy binary. Hidden flags:
//   --testing-fail-first-syncs N   the first N syncs fail as a kernel error would
//   --testing-skip-capability-check  start without checking the backend's Linux capabilities
//   --testing-fault-file PATH      kernel faults to inject, re-read when the file changes
//                                  (proxier/core/injected_faults.h, tests/support/fault_file.h)

#include <CLI/CLI.hpp>

#include "proxier/cmd/run.h"
#include "tests/support/failing_backend.h"
#include "tests/support/fault_file.h"

#include <memory>

int main(int argc, char** argv) {
  using namespace sliceproxy::proxier;
  int failFirstSyncs = 0;
  bool skipCapabilityCheck = false;
  std::string faultFile;
  std::unique_ptr<FaultFile> faults;
  cmd::Extensions ext;
  ext.addFlags = [&](CLI::App& app) {
    app.add_option("--testing-fail-first-syncs", failFirstSyncs)->group("");
    app.add_flag("--testing-skip-capability-check", skipCapabilityCheck)->group("");
    app.add_option("--testing-fault-file", faultFile)->group("");
  };
  ext.wrapBackend = [&](Backend& inner) -> std::unique_ptr<Backend> {
    if (!faultFile.empty() && !faults) faults = std::make_unique<FaultFile>(faultFile);
    if (failFirstSyncs <= 0) return nullptr;
    return std::make_unique<FailingBackend>(inner, failFirstSyncs);
  };
  ext.skipCapabilityCheck = [&] { return skipCapabilityCheck; };
  return cmd::run(argc, argv, ext);
}
