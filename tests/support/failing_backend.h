#pragma once
// A Backend wrapper whose first N syncs fail, for end-to-end tests of what the daemon does
// before its first successful sync (hidden flag --testing-fail-first-syncs of sliceproxy-testing).

#include <atomic>

#include "proxier/core/backend.h"

namespace sliceproxy::proxier {

class FailingBackend : public Backend {
 public:
  FailingBackend(Backend& inner, int failures) : inner_(inner), left_(failures) {}
  std::string name() const override { return inner_.name(); }
  Capabilities capabilities() const override { return inner_.capabilities(); }
  BackendResult apply(const Diff& diff) override {
    return fail() ? BackendResult::failure("injected failure") : inner_.apply(diff);
  }
  BackendResult fullSync(const State& state) override {
    return fail() ? BackendResult::failure("injected failure") : inner_.fullSync(state);
  }
  BackendResult cleanup() override { return inner_.cleanup(); }
  std::vector<std::string> kernelObjects(const ServicePortKey& key) const override {
    return inner_.kernelObjects(key);
  }

 private:
  bool fail() { return left_ > 0 && left_-- > 0; }
  Backend& inner_;
  std::atomic<int> left_;
};

}  // namespace sliceproxy::proxier
