#include "slice-watch/backoff.h"

#include <algorithm>
#include <cmath>

namespace sliceproxy::slicewatch {

Backoff::Backoff(BackoffPolicy policy, uint64_t seed) : policy_(policy), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  const double cap = static_cast<double>(policy_.max.count());
  // 2^64 ms is beyond any cap: stop growing the exponent once the cap is reached.
  double nominal = static_cast<double>(policy_.initial.count()) *
                   std::pow(policy_.factor, std::min(attempts_, 64u));
  nominal = std::min(nominal, cap);
  ++attempts_;
  std::uniform_real_distribution<double> u(0.0, policy_.jitter);
  double jittered = std::min(cap, nominal * (1.0 + u(rng_)));
  return std::chrono::milliseconds(static_cast<int64_t>(jittered));
}

}  // namespace sliceproxy::slicewatch
