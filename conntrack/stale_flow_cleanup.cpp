#include "conntrack/stale_flow_cleanup.h"

#include <spdlog/spdlog.h>

#include "proxier/ops/metrics.h"

namespace sliceproxy::conntrack {

namespace {

double millis(std::chrono::duration<double> d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

void dedupe(std::vector<FlowSelector>& sels) {
  // Usually a handful; past a few hundred, duplicates only cost a wasted delete each.
  if (sels.size() > 256) return;
  std::vector<FlowSelector> out;
  out.reserve(sels.size());
  for (auto& s : sels) {
    bool seen = false;
    for (const auto& o : out) seen = seen || o == s;
    if (!seen) out.push_back(std::move(s));
  }
  sels = std::move(out);
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
  bool stillStale(const FlowSelector& s, const Flow& f) override {
    return c_.ports_.stillStale(s, f, local_);
  }
  bool cancelled() const override { return c_.stopping_.load(std::memory_order_relaxed); }

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
  if (opts_.worker) thread_ = std::thread([this] { workerLoop(); });
}

StaleFlowCleanup::~StaleFlowCleanup() {
  stopping_ = true;
  {
    std::lock_guard lock(queueMu_);
    stop_ = true;
  }
  queueCv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

size_t StaleFlowCleanup::trackedPorts() const {
  std::lock_guard lock(mu_);
  return ports_.portCount();
}

void StaleFlowCleanup::afterSync(const proxier::Diff& diff, bool full) {
  std::vector<FlowSelector> selectors;
  bool first = false, seedRecord = false;
  {
    std::lock_guard lock(mu_);
    if (full) {
      first = !ports_.seeded();
      // The data plane (re)created its flow record: one sweep seeds it.
      seedRecord = opts_.worker && cleaner_->needsSweep();
      ports_.applyState(state_.state(), &selectors);
    } else {
      ports_.applyDiff(diff, selectors);
    }
  }
  const bool sweep = (first && opts_.sweepAfterStart) || seedRecord;
  for (const auto& s : selectors) spdlog::debug("conntrack: stale: {}", s.str());
  {
    std::lock_guard lock(queueMu_);
    if (selectors.empty() && !sweep && retry_.empty()) return;
    pending_.insert(pending_.end(), std::make_move_iterator(selectors.begin()),
                    std::make_move_iterator(selectors.end()));
    pending_.insert(pending_.end(), std::make_move_iterator(retry_.begin()),
                    std::make_move_iterator(retry_.end()));
    retry_.clear();
    if (sweep) sweepRequested_ = true;
  }
  queueCv_.notify_all();
}

void StaleFlowCleanup::afterUnchangedSync() {
  {
    std::lock_guard lock(queueMu_);
    if (retry_.empty()) return;
    pending_.insert(pending_.end(), std::make_move_iterator(retry_.begin()),
                    std::make_move_iterator(retry_.end()));
    retry_.clear();
  }
  queueCv_.notify_all();
}

CleanResult StaleFlowCleanup::runPending() {
  std::vector<FlowSelector> selectors;
  {
    std::lock_guard lock(queueMu_);
    selectors.swap(pending_);
  }
  if (selectors.empty()) return {};
  dedupe(selectors);
  Judge judge(*this);
  CleanResult r = cleaner_->deleteFlows(selectors, &judge);
  if (!r.retry.empty() && !stopping_) {
    dedupe(r.retry);
    std::lock_guard lock(queueMu_);
    retry_.insert(retry_.end(), r.retry.begin(), r.retry.end());
    if (retry_.size() > kMaxRetries) {
      spdlog::warn("conntrack: {} cleanups to try again; dropping the oldest {}", retry_.size(),
                   retry_.size() - kMaxRetries);
      retry_.erase(retry_.begin(), retry_.end() - kMaxRetries);
    }
    spdlog::info("conntrack: the flows of {} stale selectors are tried again after the next sync",
                 r.retry.size());
  }
  if (opts_.metrics && r.deleted) opts_.metrics->conntrackEntriesDeleted(r.deleted);
  if (opts_.metrics && r.errors) opts_.metrics->conntrackErrors(r.errors);
  const auto level = r.deleted || r.errors ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level,
              "conntrack: {} stale flows deleted, {} already gone, {} errors ({} selectors, {} "
              "kernel walks, {} flow record lookups, {} flows examined, {:.3f} ms)",
              r.deleted, r.vanished, r.errors, selectors.size(), r.dumps, r.recordLookups,
              r.examined, millis(r.took));
  return r;
}

CleanResult StaleFlowCleanup::sweepNow() {
  {
    std::lock_guard lock(mu_);
    if (!ports_.seeded()) return {};
  }
  Judge judge(*this);
  const CleanResult r = cleaner_->sweep(judge);
  if (opts_.metrics && r.deleted) opts_.metrics->conntrackEntriesDeleted(r.deleted);
  if (opts_.metrics && r.errors) opts_.metrics->conntrackErrors(r.errors);
  const auto level = r.deleted || r.errors ? spdlog::level::info : spdlog::level::debug;
  spdlog::log(level,
              "conntrack: sweep examined {} flows: {} stale deleted, {} already gone, {} errors "
              "({:.1f} ms)",
              r.examined, r.deleted, r.vanished, r.errors, millis(r.took));
  return r;
}

void StaleFlowCleanup::waitIdle() {
  std::unique_lock lock(queueMu_);
  queueCv_.wait(lock, [&] { return stop_ || !opts_.worker || (pending_.empty() && !busy_); });
}

void StaleFlowCleanup::workerLoop() {
  const auto period = opts_.reconcilePeriod;
  auto nextSweep = std::chrono::steady_clock::now() + period;
  std::unique_lock lock(queueMu_);
  for (;;) {
    auto ready = [&] { return stop_ || !pending_.empty() || sweepRequested_; };
    if (period.count() > 0) {
      queueCv_.wait_until(lock, nextSweep, ready);
    } else {
      queueCv_.wait(lock, ready);
    }
    if (stop_) return;
    const bool sweepDue =
        sweepRequested_ || (period.count() > 0 && std::chrono::steady_clock::now() >= nextSweep);
    if (pending_.empty() && !sweepDue) continue;
    busy_ = true;
    sweepRequested_ = false;
    lock.unlock();
    runPending();  // what the syncs made stale first: it is what clients are waiting on
    if (sweepDue) {
      sweepNow();
      nextSweep = std::chrono::steady_clock::now() + period;
    }
    lock.lock();
    busy_ = false;
    queueCv_.notify_all();
  }
}

}  // namespace sliceproxy::conntrack
