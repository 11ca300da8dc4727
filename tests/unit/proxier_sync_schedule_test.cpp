// Bounded-frequency syncing, on explicit time points.

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "proxier/config/duration.h"
#include "proxier/core/sync_runner.h"
#include "proxier/core/sync_schedule.h"

namespace sliceproxy::testing {
namespace {

using proxier::SyncSchedule;
using namespace std::chrono_literals;

TEST(SyncScheduleTest, BurstThenOnePerMinInterval) {
  auto t0 = SyncSchedule::Clock::now();
  SyncSchedule s(1s, 2, 1h, t0);
  s.request();
  EXPECT_EQ(s.nextRun(t0), t0);
  s.started(t0);
  s.request();
  EXPECT_EQ(s.nextRun(t0), t0);  // second token of the burst
  s.started(t0);
  s.request();
  // Out of tokens: the next run waits for one to refill.
  EXPECT_EQ(s.nextRun(t0), t0 + 1s);
  s.request();  // more requests meanwhile coalesce into that one run
  EXPECT_EQ(s.nextRun(t0 + 500ms), t0 + 1s);
  s.started(t0 + 1s);
  EXPECT_FALSE(s.pending());
}

// A periodic run shorter than the refill takes a token too, as in kube-proxy: a --sync-period
// of 1 s cannot apply a change that --min-sync-period holds back.
TEST(SyncScheduleTest, PeriodicRunWaitsForAToken) {
  auto t0 = SyncSchedule::Clock::now();
  SyncSchedule s(8s, 2, 1s, t0);
  s.started(t0);
  s.started(t0);  // the burst is spent
  EXPECT_EQ(s.nextRun(t0), t0 + 8s);
  s.request();
  EXPECT_EQ(s.nextRun(t0 + 2s), t0 + 8s);
}

TEST(SyncScheduleTest, IdleRunsAtMaxInterval) {
  auto t0 = SyncSchedule::Clock::now();
  SyncSchedule s(1s, 2, 1h, t0);
  EXPECT_EQ(s.nextRun(t0), t0 + 1h);
  s.started(t0 + 1h);
  EXPECT_EQ(s.nextRun(t0 + 1h), t0 + 2h);
}

TEST(SyncScheduleTest, RetryAfterFailure) {
  auto t0 = SyncSchedule::Clock::now();
  SyncSchedule s(1s, 2, 1h, t0);
  s.started(t0);
  s.retryAfter(t0, 30s);
  EXPECT_EQ(s.nextRun(t0), t0 + 30s);
  s.started(t0 + 30s);
  EXPECT_EQ(s.nextRun(t0 + 30s), t0 + 30s + 1h);
}

TEST(SyncScheduleTest, TokensRefillToBurstOnly) {
  auto t0 = SyncSchedule::Clock::now();
  SyncSchedule s(1s, 2, 1h, t0);
  s.started(t0);
  s.started(t0);
  auto later = t0 + 100s;
  for (int i = 0; i < 2; ++i) {
    s.request();
    EXPECT_EQ(s.nextRun(later), later);
    s.started(later);
  }
  s.request();
  EXPECT_EQ(s.nextRun(later), later + 1s);
}

TEST(SyncRunnerTest, CoalescesABurstOfRequests) {
  std::atomic<int> runs{0};
  proxier::SyncRunner r({200ms, 1, 1h, 30s}, [&] {
    ++runs;
    return true;
  });
  r.start();
  r.run();
  for (int i = 0; i < 200 && runs.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(runs.load(), 1);
  auto burstStart = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) r.run();
  for (int i = 0; i < 200 && runs.load() == 1; ++i) std::this_thread::sleep_for(5ms);
  auto waited = std::chrono::steady_clock::now() - burstStart;
  std::this_thread::sleep_for(500ms);
  r.stop();
  // The 100 requests coalesce into one run, held back until a token refilled.
  EXPECT_EQ(runs.load(), 2);
  EXPECT_GE(waited, 150ms);
}

TEST(DurationTest, ParsesGoDurations) {
  using proxier::parseDuration;
  EXPECT_EQ(parseDuration("1s"), std::chrono::nanoseconds(1s));
  EXPECT_EQ(parseDuration("500ms"), std::chrono::nanoseconds(500ms));
  EXPECT_EQ(parseDuration("1m30s"), std::chrono::nanoseconds(90s));
  EXPECT_EQ(parseDuration("1.5h"), std::chrono::nanoseconds(90min));
  EXPECT_EQ(parseDuration("0"), std::chrono::nanoseconds(0));
  EXPECT_FALSE(parseDuration("10"));
  EXPECT_FALSE(parseDuration("1d"));
  EXPECT_FALSE(parseDuration(""));
  EXPECT_EQ(proxier::formatDuration(90s), "90s");
  EXPECT_EQ(proxier::formatDuration(1h), "1h");
}

}  // namespace
}  // namespace sliceproxy::testing
