#include "proxier/core/proxier.h"

#include <spdlog/spdlog.h>

namespace sliceproxy::proxier {

Proxier::Proxier(ChangeTracker& tracker, Backend& backend, std::string nodeName,
                 std::chrono::steady_clock::duration fullSyncPeriod)
    : tracker_(tracker),
      backend_(backend),
      fullSyncPeriod_(fullSyncPeriod),
      state_(std::move(nodeName)),
      backendName_(backend.name()) {}

void Proxier::forceFullSync() {
  std::lock_guard lock(mu_);
  needFull_ = true;
}

SyncStats Proxier::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Proxier::syncOnce() {
  // A cold start that programmed a half-listed cluster would drop traffic to the other half.
  if (!tracker_.allSourcesSynced()) {
    spdlog::debug("sync deferred: sources have not finished their initial listing");
    return true;
  }
  std::lock_guard lock(mu_);
  const auto start = std::chrono::steady_clock::now();
  PendingChanges changes = tracker_.take();
  SyncReport report;
  report.start = start;
  report.wallStart = std::chrono::system_clock::now();
  report.serviceEvents = changes.serviceEvents;
  report.sliceEvents = changes.sliceEvents;
  report.changeStarts = std::move(changes.changeStarts);
  report.state = &state_;
  auto tell = [&](bool ok, bool programmed, std::chrono::steady_clock::duration took,
                  uint64_t ops) {
    report.ok = ok;
    report.programmed = programmed;
    report.took = took;
    report.operations = ops;
    for (auto* l : listeners_) l->onSync(report);
  };
  // This node's addresses and pod CIDRs shape every backend's skeleton; they change rarely, so
  // a change to them is simply a full sync. Other Node changes (labels, taints) reach the
  // backends only through the endpoint choices they change (a new zone, with topology hints).
  bool full = needFull_ || start - lastFull_ >= fullSyncPeriod_ ||
              (changes.nodeChanged && shapeChanged(state_.node().node.get(), changes.node.get()));
  Diff diff = state_.apply(std::move(changes), !full);
  report.full = full;
  report.diff = &diff;

  BackendResult res;
  if (full) {
    res = backend_.fullSync(state_.state());
  } else if (!diff.empty()) {
    res = backend_.apply(diff);
    if (res.needsFullSyncNow) {
      spdlog::info("backend {}: {}; full sync now", backend_.name(), res.error);
      full = true;
      report.full = true;
      res = backend_.fullSync(state_.state());
    }
  } else if (std::string gone = backend_.drift(); !gone.empty()) {
    spdlog::warn("backend {}: {} behind sliceproxy's back; reprogramming everything",
                 backend_.name(), gone);
    full = true;
    report.full = true;
    report.repaired = std::move(gone);
    res = backend_.fullSync(state_.state());
  } else {
    for (auto* o : observers_) o->afterUnchangedSync();
    tell(true, false, std::chrono::steady_clock::now() - start, 0);
    return true;
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ++stats_.syncs;
  stats_.lastDuration = took;
  stats_.lastUpserts = diff.upserts.size();
  stats_.lastDeletes = diff.deletes.size();
  stats_.lastEndpointChanges = diff.endpointChanges();
  if (!res.ok) {
    ++stats_.failures;
    needFull_ = true;
    spdlog::error("{} sync with backend {} failed, next sync will be full: {}",
                  full ? "full" : "partial", backend_.name(), res.error);
    tell(false, true, took, res.operations);
    return false;
  }
  if (res.wantsFullSync) needFull_ = true;
  for (auto* o : observers_) o->afterSync(diff, full);
  tell(true, true, took, res.operations);
  if (full) {
    ++stats_.fullSyncs;
    needFull_ = false;
    lastFull_ = start;
    spdlog::info("full sync: {} service ports, {} kernel operations, {:.3f} ms",
                 state_.activePortCount(), res.operations,
                 std::chrono::duration<double, std::milli>(took).count());
  } else {
    spdlog::info("partial sync: {} upserted, {} deleted, {} endpoint changes, {:.3f} ms",
                 diff.upserts.size(), diff.deletes.size(), stats_.lastEndpointChanges,
                 std::chrono::duration<double, std::milli>(took).count());
  }
  return true;
}

}  // namespace sliceproxy::proxier
