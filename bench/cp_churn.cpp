#include "bench/cp_churn.h"

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "backends/registry.h"
#include "bench/harness_workload.h"
#include "bench/timed_backend.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/proxier.h"
#include "proxier/core/sync_runner.h"

namespace sliceproxy::bench {

using namespace proxier;

namespace {

// Matches events to the sync that carried them. The tracker counts the slice events each sync
// folds in (report.sliceEvents) and events are recorded in order, so the first `taken` events
// are exactly those handed to a backend so far; they are programmed when a sync succeeds.
class EventClock : public SyncListener {
 public:
  explicit EventClock(size_t expected) { times_.reserve(expected); }

  // Called just before the event reaches the tracker.
  void recordEvent() {
    std::lock_guard lock(mu_);
    times_.push_back(Clock::now());
  }
  void skipInitial(uint64_t n) { skip_ = n; }

  void onSync(const SyncReport& r) override {
    std::lock_guard lock(mu_);
    taken_ += r.sliceEvents;
    if (!r.ok) {
      ++failures_;
      return;
    }
    ++syncs_;
    const auto end = r.start + std::chrono::duration_cast<Clock::duration>(r.took);
    if (r.programmed && taken_ > skip_)
      syncMs_.push_back(std::chrono::duration<double, std::milli>(r.took).count());
    for (; done_ < taken_; ++done_) {
      if (done_ < skip_) continue;
      latencies_.push_back(msSince(times_[done_ - skip_], end));
    }
    cv_.notify_all();
  }

  bool waitAll(size_t events, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return latencies_.size() >= events; });
  }
  bool waitSyncs(uint64_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return syncs_ >= n; });
  }

  std::vector<double> latencies() const {
    std::lock_guard lock(mu_);
    return latencies_;
  }
  std::vector<double> syncMs() const {
    std::lock_guard lock(mu_);
    return syncMs_;
  }
  uint64_t syncs() const {
    std::lock_guard lock(mu_);
    return syncs_;
  }
  uint64_t failures() const {
    std::lock_guard lock(mu_);
    return failures_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Clock::time_point> times_;
  uint64_t skip_ = 0, taken_ = 0, done_ = 0, syncs_ = 0, failures_ = 0;
  std::vector<double> latencies_, syncMs_;
};

}  // namespace

JsonObject measureChurn(const ChurnOptions& o, const NetworkConfig& net) {
  std::string error;
  auto backend = proxier::makeBackend(backends::registry(), o.backend, net, error);
  if (!backend) throw std::runtime_error("backend " + o.backend + ": " + error);
  const size_t roll = o.roll == 0 ? o.endpoints : std::min(o.roll, o.endpoints);
  const size_t events = roll * 3;

  // Slices of exactly 100 (the last one shorter), so endpoint i lives in slice i / 100.
  Workload w = seedWorkload(o.endpoints, (o.endpoints + 99) / 100);
  std::vector<std::shared_ptr<EndpointSlice>> slices;
  for (const auto& s : w.slices) slices.push_back(std::make_shared<EndpointSlice>(*s));

  TimedBackend timed(*backend);
  ChangeTracker tracker(kBenchNode, {});
  Proxier proxy(tracker, timed, kBenchNode);
  EventClock clock(events);
  proxy.addListener(&clock);
  SyncRunner runner({std::chrono::duration_cast<SyncSchedule::Duration>(o.minSync), 2,
                     std::chrono::hours(1), std::chrono::seconds(1)},
                    [&] { return proxy.syncOnce(); });
  tracker.setOnChange([&] { runner.run(); });

  auto node = std::make_shared<Node>();
  node->key = {"", kBenchNode};
  tracker.upsertNode(node);
  for (const auto& s : w.services) tracker.upsertService(s);
  for (const auto& s : slices) tracker.upsertSlice(s);
  clock.skipInitial(slices.size());
  tracker.synced();
  runner.start();
  runner.run();
  if (!clock.waitSyncs(1, std::chrono::seconds(60))) {
    runner.stop();
    throw std::runtime_error("churn: the initial sync did not finish within 60 s");
  }

  const auto period = std::chrono::duration<double>(1.0 / o.rate);
  const double cpu0 = cpuSeconds();
  const auto start = Clock::now();
  size_t sent = 0;
  auto emit = [&](std::shared_ptr<EndpointSlice>& slot, auto&& edit) {
    std::this_thread::sleep_until(
        start + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(sent)));
    auto next = std::make_shared<EndpointSlice>(*slot);
    edit(*next);
    slot = next;
    clock.recordEvent();
    tracker.upsertSlice(next);
    ++sent;
  };
  for (size_t i = 0; i < roll; ++i) {
    auto& slot = slices[i / 100];
    const IpAddr old = endpointAddress(static_cast<uint32_t>(i));
    auto find = [&](EndpointSlice& s) {
      for (auto it = s.endpoints.begin(); it != s.endpoints.end(); ++it) {
        if (it->addresses.front() == old) return it;
      }
      throw std::logic_error("churn: endpoint vanished from its slice");
    };
    emit(slot, [&](EndpointSlice& s) { find(s)->conditions = {false, true, true}; });
    emit(slot, [&](EndpointSlice& s) { s.endpoints.erase(find(s)); });
    emit(slot, [&](EndpointSlice& s) {
      Endpoint ep;
      ep.addresses = {endpointAddress((1u << 22) + static_cast<uint32_t>(i))};
      ep.conditions = {true, true, false};
      ep.nodeName = "node-1";
      s.endpoints.push_back(std::move(ep));
    });
  }
  const double sendSeconds = msSince(start, Clock::now()) / 1000.0;
  const bool complete = clock.waitAll(events, std::chrono::seconds(30));
  const double cpu = cpuSeconds() - cpu0;
  runner.stop();
  if (!complete)
    throw std::runtime_error("churn: events still unprogrammed 30 s after the last one");

  auto lat = clock.latencies();
  auto syncMs = clock.syncMs();
  if (!o.samplesPath.empty()) {
    std::ofstream out(o.samplesPath);
    for (double v : lat) out << v << "\n";
  }
  JsonObject j;
  j.str("system", "sliceproxy-" + o.backend)
      .str("workload", "churn")
      .num("endpoints", static_cast<double>(o.endpoints))
      .num("rolled", static_cast<double>(roll))
      .num("events", static_cast<double>(events))
      .num("rate_per_s", o.rate)
      .num("achieved_rate_per_s", static_cast<double>(events) / sendSeconds)
      .num("min_sync_ms", static_cast<double>(o.minSync.count()))
      .num("latency_p50_ms", percentile(lat, 50))
      .num("latency_p90_ms", percentile(lat, 90))
      .num("latency_p99_ms", percentile(lat, 99))
      .num("latency_max_ms", percentile(lat, 100))
      .num("syncs", static_cast<double>(syncMs.size()))
      .num("sync_failures", static_cast<double>(clock.failures()))
      .num("sync_p50_ms", percentile(syncMs, 50))
      .num("sync_p99_ms", percentile(syncMs, 99))
      .num("sync_max_ms", percentile(syncMs, 100))
      .num("cpu_s", cpu)
      .num("cpu_per_s", cpu / sendSeconds)
      .num("peak_rss_mb", procStatusMB("VmHWM"));
  return j;
}

}  // namespace sliceproxy::bench
