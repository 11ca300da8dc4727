#pragma once
// Exponential backoff with jitter, capped: how long an API watch waits before its next attempt
// after a failure. 0.8 s, 1.6 s, 3.2 s ... up to 30 s by default, each delay stretched by a random
// factor in [1, 1 + jitter] (then capped again) so that many nodes losing the same API server do
// not come back in lockstep.

#include <chrono>
#include <cstdint>
#include <random>

namespace sliceproxy::slicewatch {

struct BackoffPolicy {
  std::chrono::milliseconds initial{800};
  std::chrono::milliseconds max{30000};
  double factor = 2.0;
  double jitter = 0.2;
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}, uint64_t seed = std::random_device{}());

  // The delay to wait before the next attempt; each call without reset() grows it.
  std::chrono::milliseconds next();
  // After a success: the next failure waits the initial delay again.
  void reset() { attempts_ = 0; }
  unsigned attempts() const { return attempts_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  unsigned attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace sliceproxy::slicewatch
