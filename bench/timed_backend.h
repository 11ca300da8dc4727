#pragma once
// Wraps a backend to time its calls, so the harness can split a sync into control-plane and
// kernel-programming time without touching the proxier.

#include "bench/harness_stats.h"
#include "proxier/core/backend.h"

namespace sliceproxy::bench {

class TimedBackend : public proxier::Backend {
 public:
  explicit TimedBackend(proxier::Backend& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }
  proxier::Capabilities capabilities() const override { return inner_.capabilities(); }
  proxier::BackendResult apply(const proxier::Diff& diff) override {
    return timed([&] { return inner_.apply(diff); });
  }
  proxier::BackendResult fullSync(const proxier::State& state) override {
    return timed([&] { return inner_.fullSync(state); });
  }
  proxier::BackendResult cleanup() override { return inner_.cleanup(); }
  std::vector<std::string> kernelObjects(const proxier::ServicePortKey& key) const override {
    return inner_.kernelObjects(key);
  }

  double lastMs() const { return lastMs_; }
  uint64_t lastOperations() const { return lastOps_; }

 private:
  template <typename F>
  proxier::BackendResult timed(F&& f) {
    auto t0 = Clock::now();
    proxier::BackendResult r = f();
    lastMs_ = msSince(t0, Clock::now());
    lastOps_ = r.operations;
    return r;
  }
  proxier::Backend& inner_;
  double lastMs_ = 0;
  uint64_t lastOps_ = 0;
};

}  // namespace sliceproxy::bench
