#pragma once
// Programs nothing: prints each Diff (and each full State) as JSON lines, one object per line, so
// a human or a test can see exactly what a kernel backend would be asked to do.

#include <mutex>
#include <ostream>

#include "proxier/core/backend.h"

namespace sliceproxy::backends {

class DryRunBackend : public proxier::Backend {
 public:
  explicit DryRunBackend(std::ostream& out) : out_(out) {}
  std::string name() const override { return "dry-run"; }
  static proxier::Capabilities supported();
  proxier::Capabilities capabilities() const override { return supported(); }
  proxier::BackendResult apply(const proxier::Diff& diff) override;
  proxier::BackendResult fullSync(const proxier::State& state) override;
  proxier::BackendResult cleanup() override;

 private:
  std::ostream& out_;
  std::mutex mu_;
};

}  // namespace sliceproxy::backends
