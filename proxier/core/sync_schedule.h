#pragma once
// When to sync, as kube-proxy's BoundedFrequencyRunner decides it: a token bucket of `burst`
// runs refilled one per minInterval coalesces bursts of changes; a run happens at least every
// maxInterval (as soon as a token allows); a failed run is retried after retryInterval. Pure logic on explicit time points so
// it can be tested without sleeping.

#include <chrono>
#include <optional>

namespace sliceproxy::proxier {

class SyncSchedule {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using Duration = Clock::duration;

  SyncSchedule(Duration minInterval, int burst, Duration maxInterval, TimePoint start);

  void request() { pending_ = true; }
  void retryAfter(TimePoint now, Duration d);
  // The earliest time the next run may start.
  TimePoint nextRun(TimePoint now);
  // Records that a run starts now, taking a token.
  void started(TimePoint now);
  bool pending() const { return pending_; }

 private:
  void refill(TimePoint now);

  Duration minInterval_;
  double burst_;
  Duration maxInterval_;
  double tokens_;
  TimePoint lastRefill_;
  TimePoint lastRun_;
  bool pending_ = false;
  std::optional<TimePoint> retryAt_;
};

}  // namespace sliceproxy::proxier
