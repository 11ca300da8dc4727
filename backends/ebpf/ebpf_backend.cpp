#include "backends/ebpf/ebpf_backend.h"

#include "backends/ebpf/stale_sockets.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <chrono>
#include <cstring>
#include <set>
#include <stdexcept>

namespace sliceproxy::backends::ebpf {

using namespace proxier;

namespace {

// From this many slot writes on, one batched system call per map beats one call per slot.
constexpr size_t kBatchFrom = 8;

// Freed entries wait for this many before apply() deletes them (one batched call): a single
// endpoint change then costs its slot and frontend writes alone. A full sync deletes them all.
constexpr size_t kGarbageBatch = 64;

// Only ClientIP affinity reads the member map, so only those ports pay for its writes.
bool usesMembers(const ServicePortInfo& info) {
  return info.sessionAffinity == SessionAffinity::ClientIP;
}

uint8_t setIndex(uint8_t set) {
  return set == epset::kLocal ? 1 : 0;
}

bool operator==(const sp_svc_key& a, const sp_svc_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}
bool operator==(const sp_svc_value& a, const sp_svc_value& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// Map keys are padded explicitly, so their bytes are their identity.
template <typename T>
struct BytesHash {
  size_t operator()(const T& k) const noexcept {
    uint64_t h = 1469598103934665603ull;
    const auto* p = reinterpret_cast<const uint8_t*>(&k);
    for (size_t i = 0; i < sizeof(k); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};
template <typename T>
struct BytesEq {
  bool operator()(const T& a, const T& b) const noexcept {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
  }
};
using SvcKeyHash = BytesHash<sp_svc_key>;
using SvcKeyEq = BytesEq<sp_svc_key>;

uint8_t protoOf(const ServicePortInfo& info) {
  switch (info.key.port.protocol) {
    case Protocol::TCP:
      return IPPROTO_TCP;
    case Protocol::UDP:
      return IPPROTO_UDP;
    case Protocol::SCTP:
      break;
  }
  return 0;  // the socket hooks see no SCTP frontends
}

sp_svc_key frontendKey(const IpAddr& ip, uint16_t port, uint8_t proto) {
  sp_svc_key k{};
  std::memcpy(k.addr, ip.bytes.data(), ip.size());
  k.port = htons(port);
  k.proto = proto;
  k.family = ip.isV4() ? SP_FAMILY_V4 : SP_FAMILY_V6;
  return k;
}

// The frontends of a port and what each leads to. ClusterIPs use the set internal traffic
// uses; externalIPs and load-balancer IPs dialled from this node are short-circuited to the
// cluster-wide set, as kube-proxy does for traffic from pods and the node. A port with no
// endpoints at all rejects; one whose set is empty while other endpoints exist (iTP=Local with
// none on this node) passes untranslated (its packets get no answer, as kube-proxy drops them).
std::vector<std::pair<sp_svc_key, sp_svc_value>> desiredFrontends(
    const ServicePortInfo& info, const ServicePortView& v, const SlotSet (&sets)[2],
    const std::vector<IpAddr>* nodeAddrs, bool hairpin) {
  std::vector<std::pair<sp_svc_key, sp_svc_value>> out;
  const uint8_t proto = protoOf(info);
  if (proto == 0) return out;
  const uint32_t timeout =
      info.sessionAffinity == SessionAffinity::ClientIP ? info.affinityTimeoutSeconds : 0;
  auto add = [&](const IpAddr& ip, uint8_t set, uint16_t port) {
    const SlotSet& s = sets[setIndex(set)];
    sp_svc_value val{};
    val.set_id = s.id();
    val.gen = s.gen();
    val.count = s.count();
    val.affinity_timeout = timeout;
    if (!v.hasAnyEndpoints()) {
      val.flags = SP_SVC_F_REJECT;
      val.count = 0;
    } else if (s.count() == 0) {
      val.flags = SP_SVC_F_PASS;
    }
    out.emplace_back(frontendKey(ip, port, proto), val);
  };
  add(info.clusterIP, v.internalSet(), info.port);
  if (hairpin && out.back().second.flags == 0) out.back().second.flags = SP_SVC_F_HAIRPIN;
  // Traffic of local origin to an external frontend goes to every endpoint (kube-proxy's
  // short circuit), the node's masqueraded, the pods' not. Without the packet path the socket
  // does it all. With it, eTP Cluster frontends are left to the packet path, which masquerades
  // pods at their interface and the node at its egress; eTP Local ones are rewritten here,
  // NodePorts on the node's addresses included, so pods keep their address.
  const bool socketOnly = nodeAddrs == nullptr;
  if (!socketOnly && v.externalSet() == epset::kCluster) return out;
  for (const auto& ip : info.externalIPs) add(ip, epset::kCluster, info.port);
  for (const auto& ip : info.loadBalancerIPs) add(ip, epset::kCluster, info.port);
  if (!socketOnly && info.nodePort != 0) {
    for (const auto& ip : *nodeAddrs) {
      if (ip.family == info.key.port.family) add(ip, epset::kCluster, info.nodePort);
    }
  }
  return out;
}

// The port's backends on this node, in the set its ClusterIP uses.
std::set<EndpointKey> localBackendsOf(const ServicePortView& v) {
  std::set<EndpointKey> out;
  const uint8_t set = v.internalSet();
  v.forEachEndpoint([&](const MergedEndpoint& e) {
    if ((e.sets & set) && e.isLocal()) out.insert(e.key);
  });
  return out;
}

// Both sets' members, by setIndex, in one pass and in the view's own order: slots are picked
// at random, so their order means nothing, and sorting 100,000 endpoints was a sixth of a cold
// load.
std::array<std::vector<EndpointKey>, 2> membersBySet(const ServicePortView& v) {
  std::array<std::vector<EndpointKey>, 2> out;
  out[0].reserve(v.countOf(epset::kCluster));
  out[1].reserve(v.countOf(epset::kLocal));
  v.forEachEndpoint([&](const MergedEndpoint& e) {
    if (e.sets & epset::kCluster) out[0].push_back(e.key);
    if (e.sets & epset::kLocal) out[1].push_back(e.key);
  });
  return out;
}

}  // namespace

EbpfBackend::EbpfBackend(const NetworkConfig& net, std::unique_ptr<Backend> sctp)
    : sctp_(std::move(sctp)) {
  if (net.masqueradeAll && net.devices.empty()) {
    // Refused rather than ignored: a flow rewritten at the socket leaves with the client's own
    // address; only the packet path (--devices) masquerades.
    throw std::invalid_argument(
        "--masquerade-all: the ebpf backend masquerades in its packet path only, which "
        "--devices none turned off");
  }
  if (net.directServerReturn && net.devices.empty()) {
    throw std::invalid_argument(
        "--enable-dsr: direct server return is the packet path's, which "
        "--devices none turned off");
  }
  options_.pinDir = net.bpfPinDir;
  options_.cgroupRoot = net.cgroupRoot;
  sockmapShortcut_ = net.sockmapShortcut;
  net_ = net;
  if (options_.pinDir.empty() || options_.pinDir.front() != '/') {
    throw std::invalid_argument("--bpf-pin-dir: must be an absolute path, got \"" +
                                options_.pinDir + "\"");
  }
}

EbpfBackend::~EbpfBackend() = default;

Capabilities EbpfBackend::supported() {
  // The socket programs serve traffic that starts on this node; the packet path (on by default:
  // --devices) traffic from outside, and a pod reaching itself (hairpin, see PodHairpin); SCTP
  // ports the backend the registry gives it (nftables).
  return Capabilities{{Feature::ClusterIP, Feature::InternalTrafficPolicyLocal,
                       Feature::SessionAffinity, Feature::IPv6, Feature::NodePort,
                       Feature::ExternalIPs, Feature::LoadBalancerVIP,
                       Feature::ExternalTrafficPolicyLocal, Feature::LoadBalancerSourceRanges,
                       Feature::Hairpin, Feature::SCTP}};
}

std::string EbpfBackend::ensureLoaded() {
  if (progs_) return "";
  try {
    progs_ = std::make_unique<SockLbPrograms>(options_);
    // Known once, said once: whether a removed endpoint's sockets can be closed on this
    // kernel. A kernel without it is a gap; failing to load them otherwise is an error.
    progs_->iteratorLinks();
    if (!progs_->staleSocketsGap().empty()) spdlog::warn("ebpf: {}", progs_->staleSocketsGap());
  } catch (const std::exception& e) {
    progs_.reset();
    return e.what();
  }
  try {
    if (sockmapShortcut_) {
      sockmap_ = std::make_unique<SockmapPrograms>(options_.pinDir, progs_->cgroupRoot());
      spdlog::info("ebpf: sockmap shortcut on ({} maps, {} links updated in place)",
                   sockmap_->adoptedMaps() ? "adopted" : "new", sockmap_->updatedLinks());
    } else if (uint64_t n = SockmapPrograms::removePinned(options_.pinDir); n > 0) {
      spdlog::info("ebpf: sockmap shortcut off: removed the {} objects a previous run pinned", n);
    }
  } catch (const std::exception& e) {
    progs_.reset();
    return std::string("--sockmap-shortcut: ") + e.what();
  }
  maps_ = std::make_unique<MapWriter>(progs_->servicesFd(), progs_->slotsFd(), progs_->membersFd());
  try {
    if (!net_.devices.empty()) {
      nodePort_ = std::make_unique<NodePortPath>(net_);
    } else if (uint64_t n = NodePortPrograms::removePinned(options_.pinDir); n > 0) {
      spdlog::info(
          "ebpf: packet path off (--devices none): removed the {} objects a previous "
          "run pinned or attached",
          n);
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  if (nodePort_ && nodePort_->reachesPods() && !masqueradeAtPackets()) {
    hairpin_ = std::make_unique<PodHairpin>(progs_->hairpinFd(), progs_->cgroupRoot());
  } else if (!masqueradeAtPackets()) {
    // Said because it differs from kube-proxy: no hairpin masquerade.
    spdlog::info(
        "ebpf: a pod reaching itself through its service keeps its own address: the packet "
        "path does not run on pods' interfaces (--devices {})",
        nodePort_ ? "without `+` or PREFIX+" : "none");
  }
  spdlog::info(
      "ebpf: socket load balancing attached to cgroup {} ({} maps, {} links updated in "
      "place), pinned under {}",
      progs_->cgroupRoot(), progs_->adoptedMaps() ? "adopted" : "new", progs_->updatedLinks(),
      options_.pinDir);
  return "";
}

std::string EbpfBackend::writePlan(const SlotSet& set, const SlotPlan& plan, bool members,
                                   bool buryMembers) {
  if (!garbage_.empty()) {
    for (const auto& w : plan.writes) {
      garbage_.reviveSlot(MapWriter::slotKey(set.id(), w.slot));
      if (members) garbage_.reviveMember(MapWriter::memberKey(set.id(), {w.slot.gen, w.endpoint}));
    }
  }
  if (plan.writes.size() >= kBatchFrom) {
    if (auto err = maps_->writeSlots(set.id(), plan.writes, members); !err.empty()) return err;
  } else {
    for (const auto& w : plan.writes) {
      if (auto err = maps_->writeSlot(set.id(), w, members); !err.empty()) return err;
    }
  }
  bury(set, plan, buryMembers);
  return "";
}

std::string EbpfBackend::membersFollowAffinity(Port& p, bool had) {
  const bool now = usesMembers(*p.info);
  if (had == now) return "";
  for (const SlotSet& s : p.sets) {
    if (now) {
      std::vector<SlotWrite> all;
      for (const auto& ref : s.live()) {
        all.push_back({ref, s.at(ref.index)});
        garbage_.reviveMember(MapWriter::memberKey(s.id(), {ref.gen, s.at(ref.index)}));
      }
      // Rewriting a slot with what it holds is invisible to readers.
      if (auto err = maps_->writeSlots(s.id(), all, true); !err.empty()) return err;
    } else {
      SlotPlan members;
      members.garbageMembers = s.liveMembers();
      bury(s, members, true);
    }
  }
  return "";
}

void EbpfBackend::bury(const SlotSet& set, const SlotPlan& plan, bool members) {
  for (const auto& g : plan.garbage) garbage_.burySlot(MapWriter::slotKey(set.id(), g));
  if (!members) return;
  for (const auto& m : plan.garbageMembers) garbage_.buryMember(MapWriter::memberKey(set.id(), m));
}

std::string EbpfBackend::flushGarbage(bool all) {
  if (garbage_.deletable() == 0 || (!all && garbage_.deletable() < kGarbageBatch)) return "";
  return garbage_.flush(*maps_);
}

std::string EbpfBackend::syncFrontends(Port& p, const ServicePortView& v) {
  // --masquerade-all: every flow is masqueraded, so none is rewritten at its socket; the
  // packet path translates them all (pods' at their interface, the node's at its egress).
  auto next = masqueradeAtPackets()
                  ? decltype(p.frontends){}
                  : desiredFrontends(*p.info, v, p.sets,
                                     nodePort_ ? &nodePort_->nodeAddresses() : nullptr, p.hairpin);
  for (const auto& [k, val] : next) {
    auto it = std::find_if(p.frontends.begin(), p.frontends.end(),
                           [&](const auto& f) { return f.first == k; });
    if (it != p.frontends.end() && it->second == val) continue;
    if (auto err = maps_->writeFrontend(k, val); !err.empty()) {
      return fmt::format("{}: {}", v.key().str(), err);
    }
  }
  for (const auto& [k, val] : p.frontends) {
    const bool kept =
        std::any_of(next.begin(), next.end(), [&](const auto& f) { return f.first == k; });
    if (kept) continue;
    if (auto err = maps_->deleteFrontend(k); !err.empty()) {
      return fmt::format("{}: {}", v.key().str(), err);
    }
  }
  p.frontends = std::move(next);
  return "";
}

std::string EbpfBackend::clusterIpRef(const IpAddr& ip, int delta) {
  if (masqueradeAtPackets()) return "";  // no socket frontend, no socket reject either
  uint32_t& n = clusterIpRefs_[ip];
  const uint32_t before = n;
  n = static_cast<uint32_t>(static_cast<int64_t>(n) + delta);
  const sp_svc_key k = frontendKey(ip, SP_SVC_ANY_PORT, 0);
  std::string err;
  if (before == 0 && n > 0) {
    sp_svc_value v{};
    v.flags = SP_SVC_F_REJECT;
    err = maps_->writeFrontend(k, v);
  } else if (before > 0 && n == 0) {
    err = maps_->deleteFrontend(k);
  }
  if (n == 0) clusterIpRefs_.erase(ip);
  return err.empty() ? "" : "cluster IP " + ip.str() + ": " + err;
}

std::string EbpfBackend::moveClusterIp(Port& p, const ServicePortView& v) {
  const IpAddr before = p.info->clusterIP;
  p.info = v.info();
  if (before == p.info->clusterIP) return "";
  if (auto err = clusterIpRef(p.info->clusterIP, +1); !err.empty()) return err;
  return clusterIpRef(before, -1);
}

std::string EbpfBackend::syncHairpin(const std::vector<Port*>& dirty, bool rescan) {
  std::vector<Port*> all;
  if (rescan) {
    if (auto err = hairpin_->rescan(); !err.empty()) spdlog::warn("ebpf: hairpin: {}", err);
    nodePort_->setPodAddresses(hairpin_->podAddresses());
    spdlog::debug("ebpf: hairpin: {} pod addresses in {} network namespaces, found in {:.1f} ms",
                  hairpin_->podAddresses().size(), hairpin_->namespaces(),
                  hairpin_->rescanMillis());
    // A pod may have taken the address of one that went: every port is checked again.
    for (auto& [key, p] : ports_) {
      if (!p.local.empty() || p.hairpin) all.push_back(&p);
    }
  }
  for (Port* p : rescan ? all : dirty) {
    bool any = false;
    if (auto err = hairpin_->set(p->sets[0].id(), p->local, &any); !err.empty()) {
      return fmt::format("{}: {}", p->view->key().str(), err);
    }
    if (any == p->hairpin) continue;
    p->hairpin = any;
    if (auto err = syncFrontends(*p, *p->view); !err.empty()) return err;
  }
  return "";
}

std::string EbpfBackend::createPort(const ServicePortView& v, SlotSet (*adopted)[2]) {
  Port& p = ports_[v.key()];
  p.info = v.info();
  p.view = &v;
  if (hairpin_ && protoOf(*p.info) != 0) p.local = localBackendsOf(v);
  if (auto err = clusterIpRef(p.info->clusterIP, +1); !err.empty()) return err;
  if (adopted) {
    p.sets[0] = std::move((*adopted)[0]);
    p.sets[1] = std::move((*adopted)[1]);
  } else {
    // Ids are never reused while this process lives, so an affinity entry of a removed port
    // can never name a new port's set. A port's two ids are a pair (odd: cluster-wide, the
    // next even one: node-local), so a restart finds both from one frontend.
    p.sets[0] = SlotSet(nextSetId_++);
    p.sets[1] = SlotSet(nextSetId_++);
  }
  const auto members = membersBySet(v);
  for (uint8_t set : {epset::kCluster, epset::kLocal}) {
    SlotSet& s = p.sets[setIndex(set)];
    if (auto err = writePlan(s, s.replace(members[setIndex(set)]), usesMembers(*p.info),
                             usesMembers(*p.info));
        !err.empty()) {
      return fmt::format("{}: {}", v.key().str(), err);
    }
  }
  // Adopted sets were written by a run that may not have kept their member entries.
  if (adopted) {
    if (auto err = membersFollowAffinity(p, false); !err.empty()) {
      return fmt::format("{}: {}", v.key().str(), err);
    }
  }
  return syncFrontends(p, v);
}

std::string EbpfBackend::dropPort(std::map<ServicePortKey, Port>::iterator it) {
  Port& p = it->second;
  // Frontends first: once they are gone no new flow reads the slots.
  for (const auto& [k, val] : p.frontends) {
    if (auto err = maps_->deleteFrontend(k); !err.empty()) {
      return fmt::format("{}: {}", it->first.str(), err);
    }
  }
  if (auto err = clusterIpRef(p.info->clusterIP, -1); !err.empty()) return err;
  if (hairpin_) {
    if (auto err = hairpin_->drop(p.sets[0].id()); !err.empty()) {
      return fmt::format("{}: {}", it->first.str(), err);
    }
  }
  for (const SlotSet& s : p.sets) {
    SlotPlan all;
    all.garbage = s.live();
    all.garbageMembers = s.liveMembers();
    bury(s, all, usesMembers(*p.info));
  }
  ports_.erase(it);
  return "";
}

BackendResult EbpfBackend::apply(const Diff& diff) {
  if (auto err = ensureLoaded(); !err.empty()) return BackendResult::failure(err);
  const auto t0 = std::chrono::steady_clock::now();
  lastApply_ = {};
  const uint64_t before = maps_->operations();
  garbage_.age();
  // Endpoints that left every set of their port: sockets pointed at them are stale.
  std::vector<sp_backend> gone;
  auto left = [&](const EndpointChange& c) {
    if (c.oldSets != 0 && c.newSets == 0) gone.push_back(MapWriter::backendOf(c.key));
  };
  for (const auto& d : diff.deletes) {
    for (const auto& c : d.endpoints) left(c);
  }
  for (const auto& u : diff.upserts) {
    for (const auto& c : u.endpoints) left(c);
  }
  for (const auto& d : diff.deletes) {
    auto it = ports_.find(d.key);
    if (it == ports_.end()) continue;
    if (auto err = dropPort(it); !err.empty()) return BackendResult::failure(err);
  }
  // Ports whose backends on this node changed; rescan: one came, whose namespace may be new.
  std::vector<Port*> hairpinDirty;
  bool rescan = false;
  for (const auto& u : diff.upserts) {
    const ServicePortView& v = *u.view;
    auto it = ports_.find(v.key());
    if (it == ports_.end()) {
      if (auto err = createPort(v); !err.empty()) return BackendResult::failure(err);
      Port& created = ports_.at(v.key());
      if (!created.local.empty()) {
        hairpinDirty.push_back(&created);
        rescan = true;
      }
      continue;
    }
    Port& p = it->second;
    p.view = &v;
    if (hairpin_ && protoOf(*v.info()) != 0) {
      bool changed = false;
      if (u.infoChanged || u.modesChanged) {
        auto now = localBackendsOf(v);
        changed = now != p.local;
        rescan = rescan || !std::includes(p.local.begin(), p.local.end(), now.begin(), now.end());
        p.local = std::move(now);
      } else {
        const uint8_t in = v.internalSet();
        for (const auto& c : u.endpoints) {
          if ((c.newSets & in) && (c.flags & epflag::kLocal)) {
            if (p.local.insert(c.key).second) changed = rescan = true;
          } else if (p.local.erase(c.key) > 0) {
            changed = true;
          }
        }
      }
      if (changed) hairpinDirty.push_back(&p);
    }
    const bool hadMembers = usesMembers(*p.info);
    if (auto err = moveClusterIp(p, v); !err.empty()) return BackendResult::failure(err);
    for (uint8_t set : {epset::kCluster, epset::kLocal}) {
      std::vector<EndpointKey> removed, added;
      for (const auto& c : u.endpoints) {
        const bool was = c.oldSets & set, now = c.newSets & set;
        if (was && !now) removed.push_back(c.key);
        if (!was && now) added.push_back(c.key);
      }
      SlotSet& s = p.sets[setIndex(set)];
      SlotPlan plan = s.change(removed, added);
      if (s.count() != v.countOf(set)) {
        // The mirror disagrees with the proxier's view: rebuild this set from the view.
        spdlog::warn("ebpf: {} {} set holds {} endpoints, the view {}; rewriting it", v.key().str(),
                     set == epset::kLocal ? "node-local" : "cluster-wide", s.count(),
                     v.countOf(set));
        SlotPlan fix = s.replace(membersBySet(v)[setIndex(set)]);
        plan.writes.insert(plan.writes.end(), fix.writes.begin(), fix.writes.end());
        plan.garbage.insert(plan.garbage.end(), fix.garbage.begin(), fix.garbage.end());
        plan.garbageMembers.insert(plan.garbageMembers.end(), fix.garbageMembers.begin(),
                                   fix.garbageMembers.end());
      }
      if (auto err = writePlan(s, plan, usesMembers(*p.info), hadMembers); !err.empty()) {
        return BackendResult::failure(fmt::format("{}: {}", v.key().str(), err));
      }
    }
    if (auto err = membersFollowAffinity(p, hadMembers); !err.empty()) {
      return BackendResult::failure(fmt::format("{}: {}", v.key().str(), err));
    }
    if (auto err = syncFrontends(p, v); !err.empty()) return BackendResult::failure(err);
  }
  if (hairpin_ && !hairpinDirty.empty()) {
    if (auto err = syncHairpin(hairpinDirty, rescan); !err.empty()) {
      return BackendResult::failure(err);
    }
  }
  if (auto err = flushGarbage(false); !err.empty()) return BackendResult::failure(err);
  if (nodePort_) {
    if (auto err = nodePort_->apply(diff); !err.empty()) return BackendResult::failure(err);
  }
  uint64_t sctpOps = 0;
  if (sctp_) {
    auto r = sctp_->apply(diff);
    if (!r.ok) return r;
    sctpOps = r.operations;
  }
  const uint64_t ops = maps_->operations() - before + sctpOps;
  const auto t1 = std::chrono::steady_clock::now();
  lastApply_.mapMicros = std::chrono::duration<double, std::micro>(t1 - t0).count();
  // After the maps: a client that reconnects at once is already sent elsewhere.
  if (!gone.empty()) {
    auto r = destroyStaleSockets(*progs_, gone);
    if (!r.error.empty()) spdlog::warn("ebpf: stale sockets: {}", r.error);
    spdlog::debug("ebpf: {} endpoints gone: destroyed {} sockets in {} network namespaces",
                  gone.size(), r.destroyed, r.namespaces);
    destroyedSockets_ += r.destroyed;
    lastApply_.socketMicros =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count();
  }
  return {true, "", ops};
}

std::string EbpfBackend::adoptLeftovers(const State& state) {
  // What a previous run left: its frontends keep working until ours replace them, one atomic
  // write each; frontends no port claims any more are deleted, and its slots follow at the
  // next sync. Our set ids start above its, so no frontend of ours can name its slots.
  auto old = maps_->frontends();
  auto oldSlots = maps_->slotKeys();
  auto oldMembers = maps_->memberKeys();
  uint32_t maxId = 0;
  // What each old set exposes: (generation, count), from the frontends that name it.
  std::map<uint32_t, std::pair<uint32_t, uint32_t>> exposed;
  boost::unordered_flat_map<sp_svc_key, sp_svc_value, SvcKeyHash, SvcKeyEq> oldByKey;
  for (const auto& [k, v] : old) {
    maxId = std::max(maxId, v.set_id);
    oldByKey.emplace(k, v);
    if (v.set_id != 0 && !(v.flags & SP_SVC_F_REJECT)) exposed[v.set_id] = {v.gen, v.count};
  }
  for (const auto& k : oldSlots) maxId = std::max(maxId, k.set_id);
  nextSetId_ = std::max(nextSetId_, maxId + 1);
  if (nextSetId_ % 2 == 0) ++nextSetId_;
  // A port whose ClusterIP frontend the previous run programmed keeps that run's sets: the
  // slots its clients' affinity entries point at stay valid, and only the difference between
  // what it left and what is wanted now is written.
  std::set<uint32_t> claimed;
  size_t kept = 0;
  for (const ServicePortView* v : state.ports) {
    if (ports_.contains(v->key())) continue;
    const ServicePortInfo& info = *v->info();
    SlotSet sets[2];
    bool adopt = false;
    if (const uint8_t proto = protoOf(info)) {
      auto it = oldByKey.find(frontendKey(info.clusterIP, info.port, proto));
      if (it != oldByKey.end() && it->second.set_id != 0) {
        const uint32_t cluster = it->second.set_id % 2 ? it->second.set_id : it->second.set_id - 1;
        adopt = !claimed.contains(cluster);
        for (uint32_t i = 0; i < 2 && adopt; ++i) {
          const uint32_t id = cluster + i;
          auto e = exposed.find(id);
          if (e == exposed.end()) {
            sets[i] = SlotSet(id);
            continue;
          }
          std::vector<EndpointKey> slots;
          for (uint32_t s = 0; s < e->second.second && adopt; ++s) {
            auto ep = maps_->readSlot(id, {e->second.first, s});
            adopt = ep.has_value();
            if (ep) slots.push_back(*ep);
          }
          sets[i] = SlotSet(id, e->second.first, std::move(slots));
        }
        if (adopt) claimed.insert(cluster);
      }
    }
    if (auto err = createPort(*v, adopt ? &sets : nullptr); !err.empty()) return err;
    kept += adopt;
  }
  boost::unordered_flat_set<sp_svc_key, SvcKeyHash, SvcKeyEq> wanted;
  for (const auto& [key, p] : ports_) {
    for (const auto& f : p.frontends) wanted.insert(f.first);
    wanted.insert(frontendKey(p.info->clusterIP, SP_SVC_ANY_PORT, 0));
  }
  size_t dropped = 0;
  for (const auto& [k, v] : old) {
    if (wanted.contains(k)) continue;
    if (auto err = maps_->deleteFrontend(k); !err.empty()) return err;
    ++dropped;
  }
  if (!old.empty()) {
    spdlog::info(
        "ebpf: adopted what a previous run left: {} frontends ({} no longer wanted), "
        "{} service ports kept their backend sets",
        old.size(), dropped, kept);
  }
  // Whatever of the old slots and member entries no set of ours uses goes at the next sync.
  if (oldSlots.empty() && oldMembers.empty()) return "";  // a first start: nothing to compare
  boost::unordered_flat_set<uint64_t> liveSlots;
  boost::unordered_flat_set<sp_member_key, BytesHash<sp_member_key>, BytesEq<sp_member_key>>
      liveMembers;
  for (const auto& [key, p] : ports_) {
    for (const SlotSet& s : p.sets) {
      for (const auto& ref : s.live()) {
        const sp_slot_key k = MapWriter::slotKey(s.id(), ref);
        liveSlots.insert(uint64_t{k.set_id} << 32 | k.index);
      }
      if (!usesMembers(*p.info)) continue;
      for (const auto& m : s.liveMembers()) liveMembers.insert(MapWriter::memberKey(s.id(), m));
    }
  }
  for (const auto& k : oldSlots) {
    if (!liveSlots.contains(uint64_t{k.set_id} << 32 | k.index)) garbage_.burySlot(k);
  }
  for (const auto& k : oldMembers) {
    if (!liveMembers.contains(k)) garbage_.buryMember(k);
  }
  return "";
}

std::string EbpfBackend::drift() {
  std::string gone = progs_ ? progs_->detached() : std::string();
  if (sctp_) {
    if (auto s = sctp_->drift(); !s.empty()) gone += (gone.empty() ? "" : "; ") + s;
  }
  return gone;
}

BackendResult EbpfBackend::fullSync(const State& state) {
  if (auto err = ensureLoaded(); !err.empty()) return BackendResult::failure(err);
  // Links another program detached or unpinned (drift()); the pinned maps kept their contents.
  if (std::string gone = progs_->detached(); !gone.empty()) {
    try {
      progs_->reattach();
      spdlog::warn("ebpf: attached again: {}", gone);
    } catch (const std::exception& e) {
      return BackendResult::failure(e.what());
    }
  }
  const uint64_t before = maps_->operations();
  garbage_.age();
  std::map<ServicePortKey, const ServicePortView*> want;
  for (const ServicePortView* v : state.ports) want.emplace(v->key(), v);
  for (auto it = ports_.begin(); it != ports_.end();) {
    auto next = std::next(it);
    if (!want.contains(it->first)) {
      if (auto err = dropPort(it); !err.empty()) return BackendResult::failure(err);
    }
    it = next;
  }
  // Ports this run already programmed keep their sets (and so their clients' affinity).
  for (auto& [key, p] : ports_) {
    const ServicePortView& v = *want.at(key);
    p.view = &v;
    if (hairpin_ && protoOf(*v.info()) != 0) p.local = localBackendsOf(v);
    const bool hadMembers = usesMembers(*p.info);
    if (auto err = moveClusterIp(p, v); !err.empty()) return BackendResult::failure(err);
    const auto members = membersBySet(v);
    for (uint8_t set : {epset::kCluster, epset::kLocal}) {
      SlotSet& s = p.sets[setIndex(set)];
      if (auto err =
              writePlan(s, s.replace(members[setIndex(set)]), usesMembers(*p.info), hadMembers);
          !err.empty()) {
        return BackendResult::failure(fmt::format("{}: {}", key.str(), err));
      }
    }
    if (auto err = membersFollowAffinity(p, hadMembers); !err.empty()) {
      return BackendResult::failure(fmt::format("{}: {}", key.str(), err));
    }
    if (auto err = syncFrontends(p, v); !err.empty()) return BackendResult::failure(err);
  }
  if (!adopted_) {
    if (auto err = adoptLeftovers(state); !err.empty()) return BackendResult::failure(err);
    adopted_ = true;
  } else {
    for (const ServicePortView* v : state.ports) {
      if (ports_.contains(v->key())) continue;
      if (auto err = createPort(*v); !err.empty()) return BackendResult::failure(err);
    }
  }
  if (hairpin_) {
    std::vector<Port*> withLocal;
    for (auto& [key, p] : ports_) {
      if (!p.local.empty() || p.hairpin) withLocal.push_back(&p);
    }
    if (auto err = syncHairpin(withLocal, !withLocal.empty()); !err.empty()) {
      return BackendResult::failure(err);
    }
    if (auto err = hairpin_->dropLeftovers(); !err.empty()) return BackendResult::failure(err);
  }
  if (auto err = flushGarbage(true); !err.empty()) return BackendResult::failure(err);
  if (nodePort_) {
    if (auto err = nodePort_->fullSync(state); !err.empty()) return BackendResult::failure(err);
  }
  uint64_t sctpOps = 0;
  if (sctp_) {
    auto r = sctp_->fullSync(state);
    if (!r.ok) return r;
    sctpOps = r.operations;
  }
  return {true, "", maps_->operations() - before + sctpOps};
}

BackendResult EbpfBackend::cleanup() {
  hairpin_.reset();
  nodePort_.reset();
  maps_.reset();
  sockmap_.reset();  // its pins are under the same links/ and maps/ directories
  progs_.reset();
  ports_.clear();
  clusterIpRefs_.clear();
  garbage_.clear();
  adopted_ = false;
  uint64_t sctpOps = 0;
  if (sctp_) {
    auto r = sctp_->cleanup();
    if (!r.ok) return r;
    sctpOps = r.operations;
  }
  try {
    // The packet path first: its tc filters (kernels before 6.6) are found on the interfaces,
    // not under the pin directory.
    uint64_t n = NodePortPrograms::removePinned(options_.pinDir);
    n += SockLbPrograms::removePinned(options_.pinDir);
    return {true, "", n + sctpOps};
  } catch (const std::exception& e) {
    return BackendResult::failure(e.what());
  }
}

std::vector<std::string> EbpfBackend::kernelObjects(const ServicePortKey& key) const {
  if (key.port.protocol == Protocol::SCTP && sctp_) return sctp_->kernelObjects(key);
  auto it = ports_.find(key);
  if (it == ports_.end()) return {};
  const Port& p = it->second;
  std::vector<std::string> out;
  for (const auto& [k, v] : p.frontends) {
    out.push_back(
        fmt::format("map sp_services {} -> set {} generation {} count {}{}{}", describe(k),
                    v.set_id, v.gen, v.count,
                    v.flags & SP_SVC_F_REJECT ? " reject"
                    : v.flags & SP_SVC_F_PASS ? " untranslated (dropped)"
                                              : "",
                    v.affinity_timeout ? fmt::format(" affinity {}s", v.affinity_timeout) : ""));
  }
  if (p.hairpin) {
    out.push_back(fmt::format(
        "map sp_hairpin set {}: its pods on this node reach the ClusterIP through the packet "
        "path (masqueraded when they land on themselves)",
        p.sets[0].id()));
  }
  out.push_back(fmt::format("map sp_services {} -> reject (the service's other ports)",
                            describe(frontendKey(p.info->clusterIP, SP_SVC_ANY_PORT, 0))));
  for (uint8_t set : {epset::kCluster, epset::kLocal}) {
    const SlotSet& s = p.sets[setIndex(set)];
    if (s.count() == 0) continue;
    out.push_back(fmt::format("map sp_slots set {} generation {} slots 0..{} ({})", s.id(), s.gen(),
                              s.count() - 1,
                              set == epset::kCluster ? "cluster-wide" : "node-local"));
  }
  return out;
}

}  // namespace sliceproxy::backends::ebpf
