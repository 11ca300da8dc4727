#include "proxier/core/change_tracker.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sliceproxy::proxier {

ChangeTracker::ChangeTracker(std::string nodeName, FilterConfig filter, int expectedSources)
    : nodeName_(std::move(nodeName)),
      filter_(std::move(filter)),
      expectedSources_(expectedSources) {}

// Decided under the lock the change was recorded in, so an event costs one lock, not two.
bool ChangeTracker::shouldNotifyLocked() {
  if (batchDepth_ > 0) {
    notifyHeld_ = true;
    return false;
  }
  return true;
}

void ChangeTracker::notify(bool fire) {
  if (fire && onChange_) onChange_();
}

void ChangeTracker::beginBatch() {
  std::lock_guard lock(mu_);
  ++batchDepth_;
}

void ChangeTracker::endBatch() {
  bool fire = false;
  {
    std::lock_guard lock(mu_);
    if (batchDepth_ > 0 && --batchDepth_ == 0) {
      fire = notifyHeld_;
      notifyHeld_ = false;
    }
  }
  batchDone_.notify_all();
  if (fire && onChange_) onChange_();
}

ChangeTracker::Dirty& ChangeTracker::dirtyLocked(const ObjectKey& service) {
  auto [it, inserted] = dirty_.try_emplace(service);
  if (inserted) dirtyOrder_.push_back(service);
  return it->second;
}

void ChangeTracker::changeStartedLocked(
    std::optional<std::chrono::system_clock::time_point> trigger) {
  if (!trigger) {
    changeStarts_.push_back(std::chrono::system_clock::now());
  } else if (*trigger >= created_) {
    changeStarts_.push_back(*trigger);
  }
  // else, as kube-proxy: a change that started before this process did (every slice of the
  // initial list carries its last trigger time) says nothing about this process's latency.
}

void ChangeTracker::recordSliceLocked(const ObjectKey& service, const std::string& name,
                                      SlicePtr slice) {
  dirtyLocked(service).slices[name] = std::move(slice);
  ++sliceEvents_;
  counters_.endpointSliceChanges.fetch_add(1, std::memory_order_relaxed);
}

void ChangeTracker::upsertService(ServicePtr svc) {
  if (auto why = serviceSkipReason(*svc, filter_)) {
    spdlog::debug("ignoring Service {}: {}", svc->key.str(), *why);
    // It may have been handled before the change that made us ignore it.
    deleteService(svc->key);
    return;
  }
  reportDuplicatePortNames(*svc);
  for (const auto& v : svc->skipped) skippedValue("Service", svc->key.str(), v);
  bool fire;
  {
    std::lock_guard lock(mu_);
    Dirty& d = dirtyLocked(svc->key);
    d.serviceChanged = true;
    d.service = std::move(svc);
    ++serviceEvents_;
    changeStartedLocked(std::nullopt);
    fire = shouldNotifyLocked();
  }
  counters_.serviceChanges.fetch_add(1, std::memory_order_relaxed);
  notify(fire);
}

void ChangeTracker::reportDuplicatePortNames(const Service& svc) {
  // The API server refuses these; a manifest can hold them. The ports are keyed by name (as
  // kube-proxy's ServicePortName), so only the first of each name is programmed: say so.
  for (size_t i = 1; i < svc.ports.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const auto& a = svc.ports[j];
      const auto& b = svc.ports[i];
      if (a.name != b.name || a.protocol != b.protocol) continue;
      rejected({"", "Service", svc.key.str(), fmt::format("spec.ports[{}].name", i),
                "duplicate_port_name",
                fmt::format("\"{}\" ({}) already names spec.ports[{}]; port {} is ignored, port {} "
                            "is served (the API server refuses such a Service)",
                            b.name, protocolName(b.protocol), j, b.port, a.port)});
      break;
    }
  }
}

void ChangeTracker::deleteService(const ObjectKey& key) {
  bool fire;
  {
    std::lock_guard lock(mu_);
    Dirty& d = dirtyLocked(key);
    d.serviceChanged = true;
    d.service = nullptr;
    ++serviceEvents_;
    changeStartedLocked(std::nullopt);
    fire = shouldNotifyLocked();
  }
  counters_.serviceChanges.fetch_add(1, std::memory_order_relaxed);
  notify(fire);
}

void ChangeTracker::upsertSlice(SlicePtr slice) {
  if (auto why = sliceSkipReason(*slice, filter_)) {
    spdlog::debug("ignoring EndpointSlice {}: {}", slice->key.str(), *why);
    deleteSlice(slice->key);
    return;
  }
  for (const auto& v : slice->skipped) skippedValue("EndpointSlice", slice->key.str(), v);
  bool fire;
  {
    std::lock_guard lock(mu_);
    ObjectKey service = slice->serviceKey();
    auto [it, inserted] = sliceOwner_.try_emplace(slice->key, service);
    if (!inserted && it->second != service) {
      // The slice now claims another service: it leaves the old one first.
      recordSliceLocked(it->second, slice->key.name, nullptr);
      it->second = service;
    }
    const std::string name = slice->key.name;
    changeStartedLocked(slice->triggerTime);
    recordSliceLocked(service, name, std::move(slice));
    fire = shouldNotifyLocked();
  }
  notify(fire);
}

void ChangeTracker::deleteSlice(const ObjectKey& key) {
  bool fire;
  {
    std::lock_guard lock(mu_);
    auto it = sliceOwner_.find(key);
    if (it == sliceOwner_.end()) return;
    recordSliceLocked(it->second, key.name, nullptr);
    sliceOwner_.erase(it);
    changeStartedLocked(std::nullopt);
    fire = shouldNotifyLocked();
  }
  notify(fire);
}

void ChangeTracker::upsertNode(NodePtr node) {
  if (node->key.name != nodeName_) return;
  bool fire;
  {
    std::lock_guard lock(mu_);
    // The kubelet rewrites its Node's status every few seconds; only what sliceproxy reads
    // makes a change.
    if (node_ && sameContent(*node_, *node)) {
      node_ = std::move(node);
      return;
    }
    // Reported when the content changes, not at every status heartbeat.
    for (const auto& v : node->skipped) skippedValueLocked("Node", node->key.str(), v);
    nodeChanged_ = true;
    node_ = std::move(node);
    changeStartedLocked(std::nullopt);
    fire = shouldNotifyLocked();
  }
  notify(fire);
}

void ChangeTracker::deleteNode(const ObjectKey& key) {
  if (key.name != nodeName_) return;
  bool fire;
  {
    std::lock_guard lock(mu_);
    nodeChanged_ = true;
    node_ = nullptr;
    changeStartedLocked(std::nullopt);
    fire = shouldNotifyLocked();
  }
  notify(fire);
}

void ChangeTracker::rejected(const Rejection& r) {
  spdlog::error("rejected {}", r.describe());
  counters_.rejected.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  ++rejections_[r.reason.empty() ? "unknown" : r.reason];
}

void ChangeTracker::skippedValue(std::string_view kind, const std::string& object,
                                 const SkippedValue& v) {
  std::lock_guard lock(mu_);
  skippedValueLocked(kind, object, v);
}

void ChangeTracker::skippedValueLocked(std::string_view kind, const std::string& object,
                                       const SkippedValue& v) {
  spdlog::warn("{} {}: {}: {} ({})", kind, object, v.field, v.message, v.reason);
  ++skipped_[fmt::format("{}\x1f{}", kind, v.reason)];
}

std::map<std::pair<std::string, std::string>, uint64_t> ChangeTracker::skippedValues() const {
  std::lock_guard lock(mu_);
  std::map<std::pair<std::string, std::string>, uint64_t> out;
  for (const auto& [k, n] : skipped_) {
    const size_t sep = k.find('\x1f');
    out[{k.substr(0, sep), k.substr(sep + 1)}] = n;
  }
  return out;
}

void ChangeTracker::synced() {
  bool fire;
  {
    std::lock_guard lock(mu_);
    ++syncedSources_;
    fire = shouldNotifyLocked();
  }
  notify(fire);
}

bool ChangeTracker::allSourcesSynced() const {
  std::lock_guard lock(mu_);
  return syncedSources_ >= expectedSources_;
}

size_t ChangeTracker::pendingServices() const {
  std::lock_guard lock(mu_);
  return dirty_.size();
}

std::map<std::string, uint64_t> ChangeTracker::rejectionsByReason() const {
  std::lock_guard lock(mu_);
  return rejections_;
}

PendingChanges ChangeTracker::take() {
  PendingChanges out;
  std::unordered_map<ObjectKey, Dirty, ObjectKeyHash> dirty;
  std::vector<ObjectKey> order;
  {
    std::unique_lock lock(mu_);
    batchDone_.wait(lock, [this] { return batchDepth_ == 0; });
    dirty.swap(dirty_);
    order.swap(dirtyOrder_);
    out.nodeChanged = nodeChanged_;
    out.node = node_;
    nodeChanged_ = false;
    out.serviceEvents = serviceEvents_;
    out.sliceEvents = sliceEvents_;
    serviceEvents_ = sliceEvents_ = 0;
    out.changeStarts.swap(changeStarts_);
  }
  // Built outside the lock so sources are never held up by a big batch.
  out.services.reserve(order.size());
  for (auto& key : order) {
    Dirty& d = dirty[key];
    ServiceChanges sc;
    sc.key = std::move(key);
    sc.serviceChanged = d.serviceChanged;
    sc.service = std::move(d.service);
    sc.slices.reserve(d.slices.size());
    for (auto& [name, slice] : d.slices) sc.slices.emplace_back(name, std::move(slice));
    out.services.push_back(std::move(sc));
  }
  return out;
}

}  // namespace sliceproxy::proxier
