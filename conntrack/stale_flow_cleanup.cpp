#include "conntrack/stale_flow_cleanup.h"

#include <spdlog/spdlog.h>

#include "proxier/metrics.h"

namespace sliceproxy::conntrack {

namespace {

double millis(std::chrono::duration<double> d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

class StaleFlowCleanup::Judge final : public FlowJudge {
 public:
  explicit Judge(StaleFlowCleanup& c) : c_(c), local_(LocalAddresses::read()) {}
  void underLock(const std::function<void()>& fn) override {
    std::unique_lock<std::mutex> sync;
    if (c_.syncMutex_) sync = std::unique_lock<std::mutex>(*c_.syncMutex_);
    std::lock_guard lock(c_.mu_);
    fn();
  }
  std::optional<StaleReason> judge(const Flow& f) override { return c_.ports_.judge(f, local_); }

 private:
  StaleFlowCleanup& c_;
  LocalAddresses local_;
};

StaleFlowCleanup::StaleFlowCleanup(std::unique_ptr<StaleFlowCleaner> cleaner,
                                   const proxier::NodeState& state, std::mutex* syncMutex,
                                   CleanupOptions opts)
    : cleaner_(std::move(cleaner)),
      state_(state),
      syncMutex_(syncMutex),
      opts_(opts),
      ports_([c = cleaner_.get()](proxier::Protocol p) { return c->handles(p); }) {
  if (opts_.sweepAfterStart || opts_.reconcilePeriod.count() > 0) {
    thread_ = std::thread([this] { sweepLoop(); });
  }
}

StaleFlowCleanup::~StaleFlowCleanup() {
  {
    std::lock_guard lock(loopMu_);
    stop_ = true;
  }
  loopCv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

size_t StaleFlowCleanup::trackedPorts() const {
  std::lock_guard lock(mu_);
  return ports_.portCount();
}

void StaleFlowCleanup::afterSync(const proxier::Diff& diff, bool full) {
  std::vector<FlowSelector> selectors;
  bool first = false;
  {
    std::lock_guard lock(mu_);
    if (full) {
      first = !ports_.seeded();
      ports_.applyState(state_.state(), &selectors);
    } else {
      ports_.applyDiff(diff, selectors);
    }
  }
  if (first && opts_.sweepAfterStart) requestSweep();
  if (selectors.empty()) return;
  // Two ports can rarely name the same flows (a shared external IP); deleting twice is harmless
  // but costs a table walk, so drop exact duplicates.
  for (size_t i = 0; i < selectors.size(); ++i) {
    for (size_t j = i + 1; j < selectors.size();) {
      if (selectors[j] == selectors[i]) {
        selectors.erase(selectors.begin() + static_cast<std::ptrdiff_t>(j));
      } else {
        ++j;
      }
    }
    if (selectors.size() > 64) break;  // quadratic guard: the cleaner copes with duplicates
  }
  for (const auto& s : selectors) spdlog::debug("conntrack: stale: {}", s.str());
  const CleanResult r = cleaner_->deleteFlows(selectors);
  if (opts_.metrics && r.deleted) opts_.metrics->conntrackEntriesDeleted(r.deleted);
  const auto level = r.deleted || r.errors ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level,
              "conntrack: {} stale flows deleted, {} already gone, {} errors ({} selectors, {} "
              "kernel walks, {} flows examined, {:.3f} ms)",
              r.deleted, r.vanished, r.errors, selectors.size(), r.dumps, r.examined, millis(r.took));
}

CleanResult StaleFlowCleanup::sweepNow() {
  {
    std::lock_guard lock(mu_);
    if (!ports_.seeded()) return {};
  }
  Judge judge(*this);
  const CleanResult r = cleaner_->sweep(judge);
  if (opts_.metrics && r.deleted) opts_.metrics->conntrackEntriesDeleted(r.deleted);
  const auto level = r.deleted || r.errors ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level,
              "conntrack: sweep examined {} flows: {} stale deleted, {} already gone, {} errors "
              "({:.1f} ms)",
              r.examined, r.deleted, r.vanished, r.errors, millis(r.took));
  return r;
}

void StaleFlowCleanup::requestSweep() {
  {
    std::lock_guard lock(loopMu_);
    sweepRequested_ = true;
  }
  loopCv_.notify_all();
}

void StaleFlowCleanup::sweepLoop() {
  const auto period = opts_.reconcilePeriod;
  auto next = std::chrono::steady_clock::now() + period;
  std::unique_lock lock(loopMu_);
  for (;;) {
    if (period.count() > 0) {
      loopCv_.wait_until(lock, next, [&] { return stop_ || sweepRequested_; });
    } else {
      loopCv_.wait(lock, [&] { return stop_ || sweepRequested_; });
    }
    if (stop_) return;
    const bool due = period.count() > 0 && std::chrono::steady_clock::now() >= next;
    if (!sweepRequested_ && !due) continue;
    sweepRequested_ = false;
    lock.unlock();
    sweepNow();
    lock.lock();
    if (period.count() > 0) next = std::chrono::steady_clock::now() + period;
  }
}

}  // namespace sliceproxy::conntrack
