#pragma once
// One sync: take what the tracker recorded, fold it into the node-local model, and hand the
// backend either the Diff or, when a full sync is due, the whole State.

#include <chrono>
#include <mutex>
#include <vector>

#include "proxier/backend.h"
#include "proxier/change_tracker.h"
#include "proxier/node_state.h"

namespace sliceproxy::proxier {

struct SyncStats {
  uint64_t syncs = 0, fullSyncs = 0, failures = 0;
  std::chrono::duration<double> lastDuration{0};
  size_t lastUpserts = 0, lastDeletes = 0, lastEndpointChanges = 0;
};

// Told about every successful sync, on the sync thread, while the Diff's views are valid.
// Conntrack cleanup hangs here: it must act only on what was really programmed.
class SyncObserver {
 public:
  virtual ~SyncObserver() = default;
  // `full` syncs carry no per-endpoint changes.
  virtual void afterSync(const Diff& diff, bool full) = 0;
};

class Proxier {
 public:
  Proxier(ChangeTracker& tracker, Backend& backend, std::string nodeName,
          std::chrono::steady_clock::duration fullSyncPeriod = std::chrono::hours(1));

  // Returns false when the backend failed; the next sync is then a full one.
  bool syncOnce();
  void forceFullSync();
  void addObserver(SyncObserver* o) { observers_.push_back(o); }

  // Readers outside the sync thread (debug endpoints, tests) hold this lock.
  std::mutex& stateMutex() { return mu_; }
  const NodeState& nodeState() const { return state_; }
  SyncStats stats() const;

 private:
  ChangeTracker& tracker_;
  Backend& backend_;
  const std::chrono::steady_clock::duration fullSyncPeriod_;
  mutable std::mutex mu_;
  NodeState state_;
  bool needFull_ = true;
  std::chrono::steady_clock::time_point lastFull_;
  SyncStats stats_;
  std::vector<SyncObserver*> observers_;
};

}  // namespace sliceproxy::proxier
