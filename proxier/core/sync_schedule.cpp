#include "proxier/core/sync_schedule.h"

#include <algorithm>

namespace sliceproxy::proxier {

SyncSchedule::SyncSchedule(Duration minInterval, int burst, Duration maxInterval, TimePoint start)
    : minInterval_(minInterval),
      burst_(std::max(1, burst)),
      maxInterval_(maxInterval),
      tokens_(burst_),
      lastRefill_(start),
      lastRun_(start) {}

void SyncSchedule::refill(TimePoint now) {
  if (minInterval_.count() <= 0) {
    tokens_ = burst_;
  } else if (now > lastRefill_) {
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - lastRefill_) /
                                             std::chrono::duration<double>(minInterval_));
  }
  lastRefill_ = std::max(lastRefill_, now);
}

void SyncSchedule::retryAfter(TimePoint now, Duration d) {
  TimePoint at = now + d;
  if (!retryAt_ || at < *retryAt_) retryAt_ = at;
}

SyncSchedule::TimePoint SyncSchedule::nextRun(TimePoint now) {
  refill(now);
  const TimePoint whenToken =
      tokens_ >= 1.0 ? now
                     : now + std::chrono::duration_cast<Duration>(
                                 std::chrono::duration<double>(minInterval_) * (1.0 - tokens_));
  // The periodic run takes a token like any other (kube-proxy's runner does too), so a short
  // --sync-period cannot run past --min-sync-period.
  TimePoint next = std::max(lastRun_ + maxInterval_, whenToken);
  if (retryAt_) next = std::min(next, *retryAt_);
  if (pending_) next = std::min(next, whenToken);
  return next;
}

void SyncSchedule::started(TimePoint now) {
  refill(now);
  tokens_ = std::max(0.0, tokens_ - 1.0);
  lastRun_ = now;
  pending_ = false;
  if (retryAt_ && *retryAt_ <= now) retryAt_.reset();
}

}  // namespace sliceproxy::proxier
