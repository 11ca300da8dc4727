#include "proxier/core/node_state.h"

#include <algorithm>

#include "proxier/model/node_ips.h"

namespace sliceproxy::proxier {

// The service ports a sync has to finish, each listed once however many slices touched it.
class NodeState::WorkList {
 public:
  Work& add(ServicePortView& v) {
    auto it = index_.find(&v);
    if (it != index_.end()) return items_[it->second];
    index_.emplace(&v, items_.size());
    items_.push_back(Work{&v, false, nullptr});
    return items_.back();
  }
  std::vector<Work>& items() { return items_; }
  bool contains(const ServicePortView& v) const { return index_.contains(&v); }

 private:
  std::vector<Work> items_;
  std::unordered_map<const ServicePortView*, size_t> index_;
};

size_t Diff::endpointChanges() const {
  size_t n = 0;
  for (const auto& u : upserts) n += u.endpoints.size();
  for (const auto& d : deletes) n += d.endpoints.size();
  return n;
}

std::vector<const MergedEndpoint*> ServicePortView::sortedEndpoints() const {
  std::vector<const MergedEndpoint*> out;
  out.reserve(endpoints_.size());
  for (const auto& [k, e] : endpoints_) out.push_back(&e);
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->key < b->key; });
  return out;
}

NodeState::NodeState(std::string nodeName) {
  node_.identity.nodeName = std::move(nodeName);
}

void NodeState::setNodeIpOverride(std::optional<IpAddr> ip) {
  nodeIpOverride_ = ip;
  node_.primaryIps = primaryNodeIps(node_.node.get(), nodeIpOverride_);
}

ServicePortView& NodeState::portView(ServiceRecord& rec, const ObjectKey& key,
                                     const PortGroupKey& group) {
  auto it = rec.ports.find(group);
  if (it == rec.ports.end()) {
    it = rec.ports.emplace(group, std::make_unique<ServicePortView>(ServicePortKey{key, group}))
             .first;
  }
  return *it->second;
}

namespace {

// Dedupe rule when several slices carry the same address:port: prefer a copy that is not
// terminating, then a ready one, then a serving one; among equals the first slice by name, so
// the outcome never depends on the order events arrived in.
int copyRank(const Endpoint& ep) {
  const auto& c = ep.conditions;
  return (c.isTerminating() ? 0 : 4) + (c.isReady() ? 2 : 0) + (c.isServing() ? 1 : 0);
}

template <typename F>
void forEachPortOfSlice(const EndpointSlice& s, F&& f) {
  for (const auto& port : s.ports) {
    // A slice port without a number is ignored, as kube-proxy does.
    if (port.port == 0) continue;
    f(port);
  }
}

}  // namespace

void NodeState::addSlice(ServiceRecord& rec, const ObjectKey& key, SliceRecord& sr,
                         WorkList& work) {
  const EndpointSlice& s = *sr.slice;
  forEachPortOfSlice(s, [&](const EndpointPort& port) {
    ServicePortView* views[2] = {nullptr, nullptr};
    for (const auto& ep : s.endpoints) {
      if (ep.addresses.empty()) continue;
      const IpAddr& ip = ep.addresses.front();
      auto& slot = views[ip.isV4() ? 0 : 1];
      if (!slot) {
        slot = &portView(rec, key, PortGroupKey{port.name, port.protocol, ip.family});
        work.add(*slot);
      }
      EndpointKey k{ip, port.port};
      auto [it, inserted] = slot->endpoints_.try_emplace(k);
      MergedEndpoint& e = it->second;
      if (inserted) e.key = k;
      e.copies.push_back(SliceCopy{&sr.name, &ep});
      if (!e.touched) {
        e.touched = true;
        slot->touched_.push_back(k);
      }
    }
  });
}

void NodeState::removeSlice(ServiceRecord& rec, SliceRecord& sr, WorkList& work) {
  const EndpointSlice& s = *sr.slice;
  forEachPortOfSlice(s, [&](const EndpointPort& port) {
    ServicePortView* views[2] = {nullptr, nullptr};
    for (const auto& ep : s.endpoints) {
      if (ep.addresses.empty()) continue;
      const IpAddr& ip = ep.addresses.front();
      auto& slot = views[ip.isV4() ? 0 : 1];
      if (!slot) {
        auto pit = rec.ports.find(PortGroupKey{port.name, port.protocol, ip.family});
        if (pit == rec.ports.end()) continue;
        slot = pit->second.get();
        work.add(*slot);
      }
      auto it = slot->endpoints_.find(EndpointKey{ip, port.port});
      if (it == slot->endpoints_.end()) continue;
      MergedEndpoint& e = it->second;
      auto& copies = e.copies;
      // A slice listing the same address twice contributes one copy per listing; drop one.
      auto c = std::find_if(copies.begin(), copies.end(),
                            [&](const SliceCopy& sc) { return sc.sliceName == &sr.name; });
      if (c != copies.end()) copies.erase(c);
      if (!e.touched) {
        e.touched = true;
        slot->touched_.push_back(e.key);
      }
    }
  });
}

void NodeState::finalize(Work& w, Diff* diff) {
  ServicePortView& v = *w.view;
  const ServicePortInfoPtr oldInfo = v.info_;
  const bool wasActive = oldInfo != nullptr;
  const uint32_t oldCluster = v.clusterCount_, oldLocal = v.localCount_;
  const bool hadAnyEndpoints = v.counters_.hasAnyEndpoints();
  bool infoChanged = false;
  if (w.infoUpdate) {
    infoChanged = !(oldInfo && w.newInfo && *oldInfo == *w.newInfo) && (oldInfo || w.newInfo);
    // Keep the old pointer when nothing changed so backends can compare by identity.
    if (infoChanged) v.info_ = w.newInfo;
  }
  const bool isActive = v.info_ != nullptr;

  // Re-pick each touched endpoint's copy and refresh the counters its flags feed.
  for (const auto& k : v.touched_) {
    MergedEndpoint& e = v.endpoints_.find(k)->second;
    e.touched = false;
    v.counters_.add(e.flags, -1);
    if (e.copies.empty()) {
      e.flags = 0;
      continue;
    }
    const SliceCopy* best = &e.copies.front();
    int bestRank = copyRank(*best->endpoint);
    for (const auto& c : e.copies) {
      int r = copyRank(*c.endpoint);
      if (r > bestRank || (r == bestRank && *c.sliceName < *best->sliceName)) {
        best = &c;
        bestRank = r;
      }
    }
    e.chosen = *best;
    e.flags = endpointFlags(*best->endpoint, node_.identity);
    v.counters_.add(e.flags, +1);
  }

  const SelectionModes modes = isActive ? selectModes(*v.info_, v.counters_) : SelectionModes{};
  const bool modesChanged = modes != v.modes_;
  // Reject (no endpoints anywhere) or drop (endpoints, but none usable here) can flip with no
  // endpoint entering or leaving a set this node uses, e.g. iTP=Local ClusterIP losing its last
  // remote endpoint: the Diff must say so, or the backend keeps the old verdict.
  const bool anyEndpointsChanged = isActive && hadAnyEndpoints != v.counters_.hasAnyEndpoints();
  v.modes_ = modes;

  std::vector<EndpointChange> changes;
  auto update = [&](MergedEndpoint& e) {
    const uint8_t sets = endpointSets(modes, e.flags);
    if (sets == e.sets) return;
    v.clusterCount_ += ((sets & epset::kCluster) != 0) - ((e.sets & epset::kCluster) != 0);
    v.localCount_ += ((sets & epset::kLocal) != 0) - ((e.sets & epset::kLocal) != 0);
    if (diff) changes.push_back(EndpointChange{e.key, e.sets, sets, e.flags});
    e.sets = sets;
  };
  if (modesChanged || wasActive != isActive) {
    for (auto& [k, e] : v.endpoints_) update(e);
  } else {
    for (const auto& k : v.touched_) update(v.endpoints_.find(k)->second);
  }
  for (const auto& k : v.touched_) {
    auto it = v.endpoints_.find(k);
    if (it != v.endpoints_.end() && it->second.copies.empty()) v.endpoints_.erase(it);
  }
  v.touched_.clear();

  if (!diff) return;
  std::sort(changes.begin(), changes.end(),
            [](const EndpointChange& a, const EndpointChange& b) { return a.key < b.key; });
  if (isActive &&
      (!wasActive || infoChanged || !changes.empty() || modesChanged || anyEndpointsChanged)) {
    ServicePortUpsert u;
    u.view = &v;
    u.created = !wasActive;
    u.infoChanged = infoChanged || !wasActive;
    u.modesChanged = modesChanged;
    u.anyEndpointsChanged = anyEndpointsChanged && wasActive;
    u.previousInfo = wasActive ? oldInfo : nullptr;
    u.endpoints = std::move(changes);
    u.previousClusterCount = wasActive ? oldCluster : 0;
    u.previousLocalCount = wasActive ? oldLocal : 0;
    diff->upserts.push_back(std::move(u));
  } else if (wasActive && !isActive) {
    diff->deletes.push_back(ServicePortDelete{v.key_, oldInfo, std::move(changes)});
  }
}

void NodeState::applyService(ServiceChanges& change, WorkList& work) {
  ServiceRecord& rec = services_[change.key];

  for (auto& [name, slice] : change.slices) {
    auto it = rec.slices.find(name);
    if (it != rec.slices.end()) removeSlice(rec, it->second, work);
    if (slice) {
      if (it == rec.slices.end()) it = rec.slices.emplace(name, SliceRecord{name, nullptr}).first;
      it->second.slice = std::move(slice);
      addSlice(rec, change.key, it->second, work);
    } else if (it != rec.slices.end()) {
      rec.slices.erase(it);
    }
  }

  if (change.serviceChanged) {
    rec.service = change.service;
    rebuildInfos(rec, change.key, work);
  }
}

void NodeState::rebuildInfos(ServiceRecord& rec, const ObjectKey& key, WorkList& work) {
  auto infos =
      rec.service ? buildServicePortInfos(*rec.service) : std::vector<ServicePortInfoPtr>{};
  conflicts_.update(key,
                    rec.service ? rec.service->created : std::chrono::system_clock::time_point{},
                    infos, conflictAffected_);
  conflicts_.filter(key, infos);
  for (auto& [group, view] : rec.ports) {
    // Active ports, and ports a first rebuild in this batch gave an info: a second rebuild
    // (a frontend conflict decided later in the batch) starts over.
    if (view->active() || work.contains(*view)) {
      Work& w = work.add(*view);
      w.infoUpdate = true;  // stays null unless a new info claims this port below
      w.newInfo = nullptr;
    }
  }
  for (auto& info : infos) {
    Work& w = work.add(portView(rec, key, info->key.port));
    w.infoUpdate = true;
    w.newInfo = std::move(info);
  }
}

void NodeState::dropEmpty(const ObjectKey& key) {
  auto sit = services_.find(key);
  if (sit == services_.end()) return;
  ServiceRecord& rec = sit->second;
  for (auto it = rec.ports.begin(); it != rec.ports.end();) {
    if (!it->second->active() && it->second->endpointCount() == 0) {
      it = rec.ports.erase(it);
    } else {
      ++it;
    }
  }
  if (!rec.service && rec.slices.empty() && rec.ports.empty()) services_.erase(sit);
}

void NodeState::touchAll(WorkList& work) {
  for (auto& [key, rec] : services_) {
    for (auto& [group, view] : rec.ports) {
      for (auto& [k, e] : view->endpoints_) {
        if (!e.touched) {
          e.touched = true;
          view->touched_.push_back(k);
        }
      }
      work.add(*view);
    }
  }
}

Diff NodeState::apply(PendingChanges changes, bool wantDiff) {
  Diff diff;
  diff.node = &node_;
  WorkList work;

  if (changes.nodeChanged) {
    std::string zone = changes.node ? changes.node->zone() : std::string();
    const bool zoneChanged = zone != node_.identity.zone;
    // Backends rebuild node-derived structure only when its inputs changed (the proxier makes
    // that a full sync); a label or taint change is no work for them.
    diff.nodeChanged = shapeChanged(node_.node.get(), changes.node.get());
    node_.node = std::move(changes.node);
    node_.primaryIps = primaryNodeIps(node_.node.get(), nodeIpOverride_);
    node_.identity.zone = std::move(zone);
    // Zone hints match against this node's zone, so a new zone re-decides every endpoint.
    if (zoneChanged) touchAll(work);
  }
  for (auto& sc : changes.services) applyService(sc, work);
  // A Service that gained or lost a frontend another Service shares changes what the other
  // one may program (frontend_conflicts.h).
  while (!conflictAffected_.empty()) {
    auto affected = std::move(conflictAffected_);
    conflictAffected_.clear();
    for (const auto& key : affected) {
      auto it = services_.find(key);
      if (it != services_.end() && it->second.service) rebuildInfos(it->second, key, work);
    }
  }
  // Each port is finished once, however many slices, services or node changes touched it.
  for (auto& w : work.items()) finalize(w, wantDiff ? &diff : nullptr);
  for (const auto& sc : changes.services) dropEmpty(sc.key);

  if (wantDiff) {
    std::sort(diff.upserts.begin(), diff.upserts.end(),
              [](const auto& a, const auto& b) { return a.view->key() < b.view->key(); });
    std::sort(diff.deletes.begin(), diff.deletes.end(),
              [](const auto& a, const auto& b) { return a.key < b.key; });
  }
  return diff;
}

State NodeState::state() const {
  State s;
  s.node = &node_;
  for (const auto& [key, rec] : services_) {
    for (const auto& [group, view] : rec.ports) {
      if (view->active()) s.ports.push_back(view.get());
    }
  }
  std::sort(s.ports.begin(), s.ports.end(),
            [](const auto* a, const auto* b) { return a->key() < b->key(); });
  return s;
}

const ServicePortView* NodeState::find(const ServicePortKey& key) const {
  auto it = services_.find(key.service);
  if (it == services_.end()) return nullptr;
  auto pit = it->second.ports.find(key.port);
  return pit == it->second.ports.end() ? nullptr : pit->second.get();
}

size_t NodeState::activePortCount() const {
  size_t n = 0;
  for (const auto& [key, rec] : services_) {
    for (const auto& [group, view] : rec.ports) n += view->active();
  }
  return n;
}

}  // namespace sliceproxy::proxier
