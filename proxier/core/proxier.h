#pragma once
// One sync: take what the tracker recorded, fold it into the node-local model, and hand the
// backend either the Diff or, when a full sync is due, the whole State.

#include <chrono>
#include <mutex>
#include <optional>
#include <vector>

#include "proxier/core/backend.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

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
  // A sync that found nothing to change (the periodic one, or changes that cancelled out).
  virtual void afterUnchangedSync() {}
};

// What one sync attempt did, for health and metrics. Not reported: syncs deferred because the
// sources have not finished listing.
struct SyncReport {
  bool ok = true;
  bool full = false;
  bool programmed = false;  // false when nothing changed and the backend was not called
  std::chrono::steady_clock::time_point start;
  std::chrono::system_clock::time_point wallStart;
  std::chrono::duration<double> took{0};
  uint64_t operations = 0;
  uint64_t serviceEvents = 0, sliceEvents = 0;  // events folded into this sync
  // When each change folded into this sync started (PendingChanges::changeStarts).
  std::vector<std::chrono::system_clock::time_point> changeStarts;
  // A full sync that repairs what another program removed: what was gone (Backend::drift()).
  std::string repaired;
  const Diff* diff = nullptr;        // empty for full syncs
  const NodeState* state = nullptr;  // readable without stateMutex() during the call
};

// Told about every sync attempt (successful or not), on the sync thread, under stateMutex().
class SyncListener {
 public:
  virtual ~SyncListener() = default;
  virtual void onSync(const SyncReport& report) = 0;
};

class Proxier {
 public:
  Proxier(ChangeTracker& tracker, Backend& backend, std::string nodeName,
          std::chrono::steady_clock::duration fullSyncPeriod = std::chrono::hours(1));

  // Returns false when the backend failed; the next sync is then a full one.
  bool syncOnce();
  void forceFullSync();
  void addObserver(SyncObserver* o) { observers_.push_back(o); }
  void addListener(SyncListener* l) { listeners_.push_back(l); }
  const std::string& backendName() const { return backendName_; }

  // Readers outside the sync thread (debug endpoints, tests) hold this lock.
  std::mutex& stateMutex() { return mu_; }
  const NodeState& nodeState() const { return state_; }
  // Before start: where Warning events about Services go (frontend conflicts).
  void setObjectEvents(ObjectEvents* events) { state_.setObjectEvents(events); }
  // Before start: --bind-address (NodeState::setNodeIpOverride).
  void setNodeIpOverride(std::optional<IpAddr> ip) { state_.setNodeIpOverride(ip); }
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
  std::vector<SyncListener*> listeners_;
  const std::string backendName_;
};

}  // namespace sliceproxy::proxier
