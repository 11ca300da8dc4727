// Network programming latency (issue 4, acceptance 4): where each change's latency starts (the
// tracker), how it is observed (metrics), and the sync schedule's bound on how long a change of
// a continuous stream waits for its sync.

#include <gtest/gtest.h>

#include <algorithm>

#include "builders.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/sync_schedule.h"
#include "proxier/ops/metrics.h"

namespace sliceproxy::testing {
namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

SlicePtr triggered(std::string name, std::optional<system_clock::time_point> trigger) {
  auto s = std::make_shared<EndpointSlice>(*slice(std::move(name), "svc", {{"10.244.1.1"}}));
  s->triggerTime = trigger;
  return s;
}

TEST(NetworkProgrammingStart, TriggerTimeOrArrival) {
  ChangeTracker t("node-a", {});
  const auto trigger = system_clock::now() + 1ms;  // after the tracker was created
  const auto before = system_clock::now();
  t.upsertSlice(triggered("a", trigger));
  t.upsertSlice(triggered("b", std::nullopt));  // no annotation: timed from its arrival
  t.upsertService(service({}));
  const auto after = system_clock::now();
  auto c = t.take();
  ASSERT_EQ(c.changeStarts.size(), 3u);
  EXPECT_EQ(c.changeStarts[0], trigger);
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_GE(c.changeStarts[i], before);
    EXPECT_LE(c.changeStarts[i], after);
  }
  EXPECT_TRUE(t.take().changeStarts.empty());
}

TEST(NetworkProgrammingStart, EveryUpdateOfACoalescedSliceCounts) {
  ChangeTracker t("node-a", {});
  const auto t1 = system_clock::now() + 1ms, t2 = t1 + 5ms;
  t.upsertSlice(triggered("a", t1));
  t.upsertSlice(triggered("a", t2));
  auto c = t.take();
  ASSERT_EQ(c.services.size(), 1u);
  ASSERT_EQ(c.services[0].slices.size(), 1u);        // the object is coalesced ...
  EXPECT_EQ(c.changeStarts, (std::vector{t1, t2}));  // ... the two changes are not
}

TEST(NetworkProgrammingStart, TriggerTimesFromBeforeThisProcessAreNotObserved) {
  // A cold start lists every slice with the trigger time of its last change, possibly days
  // old: that is not this process's latency (kube-proxy ignores them too).
  ChangeTracker t("node-a", {});
  t.upsertSlice(triggered("a", system_clock::now() - 24h));
  auto c = t.take();
  EXPECT_EQ(c.services.size(), 1u);
  EXPECT_TRUE(c.changeStarts.empty());
}

double sample(const std::string& text, const std::string& name) {
  // Appended, not concatenated with operator+, on which g++ 12 -O3 warns falsely (-Wrestrict).
  std::string line("\n");
  line.append(name).append(" ");
  auto pos = text.find(line);
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + line.size()));
}

TEST(NetworkProgrammingMetric, OneObservationPerChangeOfASuccessfulSync) {
  Metrics m("dry-run", nullptr);
  SyncReport r;
  const auto now = system_clock::now();
  // 90 changes 100 ms old, 10 changes 1.5 s old, one from the future (the clock stepped back).
  r.changeStarts.assign(90, now - 100ms);
  r.changeStarts.insert(r.changeStarts.end(), 10, now - 1500ms);
  r.changeStarts.push_back(now + 1s);
  m.onSync(r);
  SyncReport failed;
  failed.ok = false;
  failed.changeStarts = {now - 10s};
  m.onSync(failed);  // not programmed: not observed

  std::string text("\n");
  text.append(m.render());
  EXPECT_EQ(sample(text, "kubeproxy_network_programming_duration_seconds_count"), 101);
  EXPECT_EQ(sample(text, "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"}"), 91);
  EXPECT_EQ(sample(text, "kubeproxy_network_programming_duration_seconds_bucket{le=\"1\"}"), 91);
  EXPECT_EQ(sample(text, "kubeproxy_network_programming_duration_seconds_bucket{le=\"2\"}"), 101);
  EXPECT_EQ(sample(text, "sliceproxy_network_programming_duration_seconds_count"), 101);
  const double p99 =
      sample(text, "sliceproxy_network_programming_duration_seconds{quantile=\"0.99\"}");
  EXPECT_GE(p99, 1.5);
  EXPECT_LT(p99, 2.0);
  const double p50 =
      sample(text, "sliceproxy_network_programming_duration_seconds{quantile=\"0.5\"}");
  EXPECT_GE(p50, 0.09);
  EXPECT_LT(p50, 0.5);
}

// kube-proxy's BoundedFrequencyRunner promises that under a continuous stream a change waits at
// most about one min-interval plus the sync itself, burst or not. The same for SyncSchedule,
// driven the way SyncRunner drives it: 200 requests/s for 60 s, each sync taking 30 ms, the
// runner waking at nextRun() or at the next request.
TEST(SyncSchedulePacing, AContinuousStreamWaitsAtMostOneMinIntervalPlusTheSync) {
  for (int burst : {1, 2, 4}) {
    for (auto minInterval : {std::chrono::milliseconds(100), std::chrono::milliseconds(1000)}) {
      const auto t0 = proxier::SyncSchedule::Clock::now();
      proxier::SyncSchedule s(minInterval, burst, 1h, t0);
      const auto syncTakes = 30ms, every = 5ms;
      const auto end = t0 + 60s;
      auto now = t0 + 3s, nextRequest = now;  // the stream starts after an idle spell
      std::vector<proxier::SyncSchedule::TimePoint> waiting;
      proxier::SyncSchedule::Duration worst{0};
      int syncs = 0;
      while (now < end) {
        for (; nextRequest <= now; nextRequest += every) {
          s.request();
          waiting.push_back(nextRequest);
        }
        auto next = s.nextRun(now);
        if (next <= now) {
          s.started(now);
          ++syncs;
          for (auto r : waiting) worst = std::max(worst, now + syncTakes - r);
          waiting.clear();
          now += syncTakes;  // requests during the sync wait for the next one
          continue;
        }
        now = std::min(next, nextRequest);
      }
      EXPECT_LE(worst, minInterval + syncTakes + every)
          << "burst " << burst << ", min interval " << minInterval.count() << " ms";
      // ... and it does not sync more often than the bucket allows.
      EXPECT_LE(syncs, burst + 57 * 1000 / minInterval.count() + 1) << "burst " << burst;
    }
  }
}

}  // namespace
}  // namespace sliceproxy::testing
