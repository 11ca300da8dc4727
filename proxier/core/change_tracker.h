#pragma once
// Records what changed and nothing more: the newest raw object per name and which services are
// dirty. No slice is merged here (that waits for the sync, and only for dirty services), so each
// event costs O(1) on top of decoding it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxier/core/events.h"
#include "proxier/core/filter.h"
#include "proxier/core/pending_changes.h"

namespace sliceproxy::proxier {

struct TrackerCounters {
  std::atomic<uint64_t> serviceChanges{0};
  std::atomic<uint64_t> endpointSliceChanges{0};
  std::atomic<uint64_t> rejected{0};
};

class ChangeTracker : public EventSink {
 public:
  ChangeTracker(std::string nodeName, FilterConfig filter, int expectedSources = 1);

  // Called (outside the lock) after every recorded change; the sync runner wakes on it.
  void setOnChange(std::function<void()> fn) { onChange_ = std::move(fn); }

  void upsertService(ServicePtr svc) override;
  void deleteService(const ObjectKey& key) override;
  void upsertSlice(SlicePtr slice) override;
  void deleteSlice(const ObjectKey& key) override;
  void upsertNode(NodePtr node) override;
  void deleteNode(const ObjectKey& key) override;
  void rejected(const Rejection& r) override;
  void synced() override;
  void beginBatch() override;
  void endBatch() override;

  // Hands over everything recorded since the last call; waits for an open batch to close so a
  // batch is never split across two syncs.
  PendingChanges take();
  bool allSourcesSynced() const;
  size_t pendingServices() const;
  const TrackerCounters& counters() const { return counters_; }
  std::map<std::string, uint64_t> rejectionsByReason() const;
  // Values left out of accepted objects (Service::skipped), by kind and reason.
  std::map<std::pair<std::string, std::string>, uint64_t> skippedValues() const;

 private:
  void reportDuplicatePortNames(const Service& svc);
  struct Dirty {
    bool serviceChanged = false;
    ServicePtr service;
    std::unordered_map<std::string, SlicePtr> slices;
  };
  Dirty& dirtyLocked(const ObjectKey& service);
  void recordSliceLocked(const ObjectKey& service, const std::string& name, SlicePtr slice);
  void changeStartedLocked(std::optional<std::chrono::system_clock::time_point> trigger);
  bool shouldNotifyLocked();
  void notify(bool fire);

  const std::string nodeName_;
  const FilterConfig filter_;
  const int expectedSources_;
  std::function<void()> onChange_;

  mutable std::mutex mu_;
  std::condition_variable batchDone_;
  std::unordered_map<ObjectKey, Dirty, ObjectKeyHash> dirty_;
  std::vector<ObjectKey> dirtyOrder_;
  // Which service each accepted slice belongs to: a delete event names only the slice.
  std::unordered_map<ObjectKey, ObjectKey, ObjectKeyHash> sliceOwner_;
  bool nodeChanged_ = false;
  NodePtr node_;
  uint64_t serviceEvents_ = 0, sliceEvents_ = 0;
  const std::chrono::system_clock::time_point created_ = std::chrono::system_clock::now();
  std::vector<std::chrono::system_clock::time_point> changeStarts_;
  int syncedSources_ = 0;
  int batchDepth_ = 0;
  bool notifyHeld_ = false;
  std::map<std::string, uint64_t> rejections_;
  std::map<std::string, uint64_t> skipped_;  // "kind\x1freason"
  void skippedValue(std::string_view kind, const std::string& object, const SkippedValue& v);
  void skippedValueLocked(std::string_view kind, const std::string& object, const SkippedValue& v);
  TrackerCounters counters_;
};

}  // namespace sliceproxy::proxier
