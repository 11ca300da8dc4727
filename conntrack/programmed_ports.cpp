#include "conntrack/programmed_ports.h"

#include <algorithm>

#include "conntrack/planner.h"

namespace sliceproxy::conntrack {

using proxier::EndpointKey;
using proxier::MergedEndpoint;

size_t ServicePortKeyHash::operator()(const proxier::ServicePortKey& k) const noexcept {
  size_t h = proxier::ObjectKeyHash{}(k.service);
  h ^= std::hash<std::string>{}(k.port.portName) + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
  return h ^ (static_cast<size_t>(k.port.protocol) << 8 | static_cast<size_t>(k.port.family));
}

void ProgrammedPorts::unindex(Port& p) {
  const uint8_t proto = p.info ? ipProto(p.info->key.port.protocol) : 0;
  auto drop = [&](auto& map, const auto& key) {
    auto it = map.find(key);
    if (it == map.end()) return;
    auto& refs = it->second;
    refs.erase(std::remove_if(refs.begin(), refs.end(),
                              [&](const FrontendRef& r) { return r.port == &p; }),
               refs.end());
    if (refs.empty()) map.erase(it);
  };
  for (const auto& f : p.frontends) {
    if (f.nodePort) {
      drop(byNodePort_, NodePortKey{p.info->key.port.family, proto, f.port});
    } else {
      drop(byAddr_, AddrPortKey{f.ip, f.port, proto});
    }
  }
  p.frontends.clear();
}

void ProgrammedPorts::setInfo(Port& p, const proxier::ServicePortInfoPtr& info) {
  if (p.info == info || (p.info && info && *p.info == *info)) {
    p.info = info;
    return;
  }
  unindex(p);
  p.info = info;
  if (!info) return;
  p.frontends = frontendsOf(*info);
  const uint8_t proto = ipProto(info->key.port.protocol);
  for (const auto& f : p.frontends) {
    if (f.nodePort) {
      byNodePort_[NodePortKey{info->key.port.family, proto, f.port}].push_back({&p, f.kind});
    } else {
      byAddr_[AddrPortKey{f.ip, f.port, proto}].push_back({&p, f.kind});
    }
  }
}

void ProgrammedPorts::applyDiff(const proxier::Diff& diff, std::vector<FlowSelector>& out) {
  if (!seeded_) return;  // the first sync is a full one and records everything
  std::vector<EndpointTransition> eps;
  for (const auto& u : diff.upserts) {
    const proxier::ServicePortInfoPtr& info = u.view->info();
    if (!info || !handles_(info->key.port.protocol)) continue;
    auto& slot = ports_[u.view->key()];
    if (!slot) slot = std::make_unique<Port>();
    Port& p = *slot;
    const proxier::ServicePortInfoPtr before = p.info;

    eps.clear();
    for (const auto& c : u.endpoints) eps.push_back({c.key, c.oldSets, c.newSets});
    if (before && servingChanged(*before, *info)) {
      // Which sets serve a frontend moved: endpoints whose own sets did not change matter too.
      u.view->forEachEndpoint([&](const MergedEndpoint& e) {
        if (!e.sets) return;
        auto it = std::lower_bound(
            u.endpoints.begin(), u.endpoints.end(), e.key,
            [](const proxier::EndpointChange& c, const EndpointKey& k) { return c.key < k; });
        if (it == u.endpoints.end() || it->key != e.key) eps.push_back({e.key, e.sets, e.sets});
      });
    }
    planTransition(
        {before, info, p.cluster, p.local, u.view->clusterCount(), u.view->localCount(), eps}, out);

    for (const auto& c : u.endpoints) {
      if (c.newSets) {
        p.sets[c.key] = c.newSets;
      } else {
        p.sets.erase(c.key);
      }
    }
    p.cluster = u.view->clusterCount();
    p.local = u.view->localCount();
    setInfo(p, info);
  }
  for (const auto& d : diff.deletes) {
    if (!handles_(d.key.port.protocol)) continue;
    auto it = ports_.find(d.key);
    proxier::ServicePortInfoPtr before = it != ports_.end() ? it->second->info : d.lastInfo;
    if (before) {
      PortTransition t;
      t.before = before;
      if (it != ports_.end()) {
        t.beforeCluster = it->second->cluster;
        t.beforeLocal = it->second->local;
      }
      planTransition(t, out);
    }
    if (it != ports_.end()) {
      unindex(*it->second);
      ports_.erase(it);
    }
  }
}

void ProgrammedPorts::applyState(const proxier::State& state, std::vector<FlowSelector>* out) {
  const uint64_t gen = ++fullSyncs_;
  if (!seeded_) out = nullptr;
  std::vector<EndpointTransition> eps;
  for (const proxier::ServicePortView* view : state.ports) {
    const proxier::ServicePortInfoPtr& info = view->info();
    if (!info || !handles_(info->key.port.protocol)) continue;
    auto& slot = ports_[view->key()];
    const bool existed = slot != nullptr;
    if (!slot) slot = std::make_unique<Port>();
    Port& p = *slot;
    p.seenInFullSync = gen;

    if (out) {
      eps.clear();
      const bool all = existed && p.info && servingChanged(*p.info, *info);
      view->forEachEndpoint([&](const MergedEndpoint& e) {
        auto it = p.sets.find(e.key);
        const uint8_t before = it == p.sets.end() ? 0 : it->second;
        if (before != e.sets || (all && e.sets)) eps.push_back({e.key, before, e.sets});
      });
      for (const auto& [k, sets] : p.sets) {
        if (!view->findEndpoint(k)) eps.push_back({k, sets, 0});
      }
      planTransition({existed ? p.info : nullptr, info, p.cluster, p.local, view->clusterCount(),
                      view->localCount(), eps},
                     *out);
    }

    p.sets.clear();
    view->forEachEndpoint([&](const MergedEndpoint& e) {
      if (e.sets) p.sets[e.key] = e.sets;
    });
    p.cluster = view->clusterCount();
    p.local = view->localCount();
    setInfo(p, info);
  }
  for (auto it = ports_.begin(); it != ports_.end();) {
    Port& p = *it->second;
    if (p.seenInFullSync == gen) {
      ++it;
      continue;
    }
    if (out && p.info) {
      PortTransition t;
      t.before = p.info;
      t.beforeCluster = p.cluster;
      t.beforeLocal = p.local;
      planTransition(t, *out);
    }
    unindex(p);
    it = ports_.erase(it);
  }
  seeded_ = true;
}

ProgrammedPorts::Refs ProgrammedPorts::frontendsOfFlow(const Flow& f,
                                                       const LocalAddresses& local) const {
  Refs refs;
  if (auto it = byAddr_.find(AddrPortKey{f.orig.dst, f.orig.dport, f.proto}); it != byAddr_.end()) {
    refs.insert(refs.end(), it->second.begin(), it->second.end());
  }
  if (!byNodePort_.empty() && local.contains(f.orig.dst)) {
    if (auto it = byNodePort_.find(NodePortKey{f.family, f.proto, f.orig.dport});
        it != byNodePort_.end()) {
      refs.insert(refs.end(), it->second.begin(), it->second.end());
    }
  }
  return refs;
}

bool ProgrammedPorts::stillStale(const FlowSelector& s, const Flow& f,
                                 const LocalAddresses& local) const {
  if (s.reason == StaleReason::FrontendRemoved) return frontendsOfFlow(f, local).empty();
  return judge(f, local).has_value();
}

std::optional<StaleReason> ProgrammedPorts::judge(const Flow& f,
                                                  const LocalAddresses& local) const {
  const Refs refs = frontendsOfFlow(f, local);
  if (refs.empty()) return std::nullopt;
  if (f.translated()) {
    const EndpointKey ep{f.reply.src, f.reply.sport};
    for (const auto& r : refs) {
      auto it = r.port->sets.find(ep);
      if (it != r.port->sets.end() && (it->second & servingSets(*r.port->info, r.kind))) {
        return std::nullopt;
      }
    }
    return StaleReason::EndpointGone;
  }
  for (const auto& r : refs) {
    if (servingCount(*r.port->info, r.kind, r.port->cluster, r.port->local) > 0) {
      return StaleReason::Untranslated;
    }
  }
  return std::nullopt;
}

}  // namespace sliceproxy::conntrack
