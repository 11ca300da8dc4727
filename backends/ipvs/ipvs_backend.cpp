// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/ipvs/ipvs_backend.h"

#include <fmt/format.h>
#include <ifaddrs.h>
#include <linux/ip_vs.h>
#include <linux/netfilter.h>
#include <net/if.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "backends/ipvs/sysctls.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/main_table.h"

namespace sliceproxy::backends::ipvs {

using proxier::BackendResult;
using proxier::Capabilities;
using proxier::Feature;
using proxier::IpAddr;

namespace {

uint16_t ipProto(proxier::Protocol p) {
  switch (p) {
    case proxier::Protocol::TCP:
      return IPPROTO_TCP;
    case proxier::Protocol::UDP:
      return IPPROTO_UDP;
    case proxier::Protocol::SCTP:
      return IPPROTO_SCTP;
  }
  return IPPROTO_TCP;
}

// Every local address but loopback, link-local and the service addresses themselves (as
// kube-proxy's IPVS mode binds NodePorts).
std::vector<IpAddr> localAddresses(const std::string& dummyLink) {
  std::vector<IpAddr> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_flags & IFF_LOOPBACK)) continue;
    if (dummyLink == i->ifa_name || std::strcmp(i->ifa_name, "kube-ipvs0") == 0) continue;
    IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      a.family = proxier::IpFamily::V6;
      const auto* s6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&s6->sin6_addr)) continue;
      std::memcpy(a.bytes.data(), &s6->sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

std::string kernelSupport() {
  IpvsNetlink nl;
  return nl.open();
}

IpvsBackend::IpvsBackend(const proxier::NetworkConfig& net)
    : net_(net),
      masq4_(net, proxier::IpFamily::V4),
      masq6_(net, proxier::IpFamily::V6),
      policy4_(net, proxier::IpFamily::V4),
      policy6_(net, proxier::IpFamily::V6) {}

IpvsBackend::~IpvsBackend() = default;

nft::Socket& IpvsBackend::nftSocket() {
  if (!nft_) nft_ = std::make_unique<nft::Socket>();
  return *nft_;
}

bool IpvsBackend::isNodeAddress(const IpAddr& a) const {
  return std::find(nodeAddrs_.begin(), nodeAddrs_.end(), a) != nodeAddrs_.end();
}

Capabilities IpvsBackend::supported() {
  // Masquerading (hairpin included) and the eTP=Local short-circuit are table ip/ip6
  // sliceproxy-ipvs; source ranges, reject and drop are the shared node-policy table
  // (policy_table.h).
  // SessionAffinity: IPVS persistence is programmed, but a persistence template lives as long as
  // any connection it controls (TCP TIME_WAIT: 2 minutes), so affinity outlives a short timeout,
  // as in kube-proxy's IPVS mode.
  return Capabilities{{Feature::ClusterIP, Feature::NodePort, Feature::LoadBalancerVIP,
                       Feature::ExternalIPs, Feature::IPv6, Feature::SCTP,
                       Feature::InternalTrafficPolicyLocal, Feature::LoadBalancerSourceRanges,
                       Feature::Hairpin, Feature::ExternalTrafficPolicyLocal}};
}

std::string IpvsBackend::ensureOpen() {
  if (open_) return "";
  if (std::string err = nl_.open(); !err.empty()) return err;
  if (std::string err = dummy_.ensure(); !err.empty()) return err;
  if (std::string err = applyIpvsSysctls(); !err.empty()) return err;
  open_ = true;
  return "";
}

void IpvsBackend::refreshNodeAddresses(const proxier::NodeContext* node) {
  if (net_.nodePortPrimaryOnly) {
    // --nodeport-addresses=primary: the node's primary IPs only (none until the Node is seen,
    // unless --bind-address names one).
    nodeAddrs_ = node ? node->primaryIps : std::vector<IpAddr>{};
    return;
  }
  nodeAddrs_.clear();
  for (const auto& a : localAddresses(dummy_.name())) {
    if (!net_.nodePortAddresses.empty()) {
      bool in = false;
      for (const auto& c : net_.nodePortAddresses) in = in || c.contains(a);
      if (!in) continue;
    }
    nodeAddrs_.push_back(a);
  }
}

std::map<VirtualServiceKey, IpvsBackend::Desired> IpvsBackend::desiredFor(
    const proxier::ServicePortView& v) const {
  std::map<VirtualServiceKey, Desired> out;
  const auto& info = v.info();
  if (!info) return out;
  VirtualService base;
  base.scheduler = net_.ipvsScheduler.empty() ? "rr" : net_.ipvsScheduler;
  if (info->sessionAffinity == proxier::SessionAffinity::ClientIP) {
    base.flags = IP_VS_SVC_F_PERSISTENT;
    base.timeout = info->affinityTimeoutSeconds;
  }
  const uint16_t proto = ipProto(v.key().port.protocol);
  auto destsOf = [&](uint8_t set) {
    std::map<RealServerKey, uint32_t> d;
    v.forEachEndpoint([&](const proxier::MergedEndpoint& e) {
      if (e.sets & set) d[RealServerKey{e.key.ip, e.key.port}] = 1;
    });
    return d;
  };
  const VirtualServiceKey clusterKey{info->clusterIP, proto, info->port};
  auto add = [&](const IpAddr& addr, uint16_t port, const std::map<RealServerKey, uint32_t>& d,
                 bool external = true) {
    Desired want{base, external, external && info->externalPolicyLocal, clusterKey, d};
    want.svc.key = VirtualServiceKey{addr, proto, port};
    out.emplace(want.svc.key, std::move(want));
  };
  add(info->clusterIP, info->port, destsOf(v.internalSet()), false);
  if (info->externallyAccessible()) {
    auto ext = destsOf(v.externalSet());
    for (const auto& a : info->externalIPs) add(a, info->port, ext);
    for (const auto& a : info->loadBalancerIPs) add(a, info->port, ext);
    if (info->nodePort != 0) {
      for (const auto& a : nodeAddrs_) {
        if (a.family == info->clusterIP.family) add(a, info->nodePort, ext);
      }
    }
  }
  return out;
}

std::string IpvsBackend::addrRef(const IpAddr& a, int delta) {
  int& n = addrRefs_[a];
  n += delta;
  if (isNodeAddress(a)) return "";  // a node address is the node's, not ours to bind or unbind
  if (n > 0 && delta > 0 && n == delta) {
    ++ops_;
    return dummy_.addAddress(a);
  }
  if (n <= 0) {
    addrRefs_.erase(a);
    ++ops_;
    return dummy_.removeAddress(a);
  }
  return "";
}

std::string IpvsBackend::removeRealServer(const VirtualServiceKey& key, Programmed& p,
                                          const RealServerKey& rs) {
  // Graceful termination as kube-proxy: UDP has no connection to wait for, so it goes at once;
  // otherwise weight 0 stops new connections and the real server goes when its connections have.
  if (key.protocol == IPPROTO_UDP) {
    ++ops_;
    if (std::string err = nl_.deleteRealServer(key, rs); !err.empty()) return err;
    p.dests.erase(rs);
    graceful_.erase({key, rs});
    return "";
  }
  if (p.dests[rs] != 0) {
    ++ops_;
    if (std::string err = nl_.editRealServer(key, RealServer{rs, 0}); !err.empty()) return err;
    p.dests[rs] = 0;
  }
  graceful_.emplace(std::make_pair(key, rs), Clock::now());
  return "";
}

std::string IpvsBackend::reconcile(const VirtualServiceKey& key, const Desired* want) {
  auto it = programmed_.find(key);
  if (!want) {
    if (it == programmed_.end()) return "";
    ++ops_;
    if (std::string err = nl_.deleteService(key); !err.empty()) return err;
    for (auto g = graceful_.lower_bound({key, RealServerKey{}});
         g != graceful_.end() && g->first.first == key;) {
      g = graceful_.erase(g);
    }
    programmed_.erase(it);
    return addrRef(key.addr, -1);
  }
  if (it == programmed_.end()) {
    if (std::string err = addrRef(key.addr, +1); !err.empty()) return err;
    ++ops_;
    if (std::string err = nl_.addService(want->svc); !err.empty()) return err;
    it = programmed_
             .emplace(key, Programmed{want->svc, want->external, want->local, want->clusterIP, {}})
             .first;
  } else if (!it->second.svc.sameSettings(want->svc)) {
    ++ops_;
    if (std::string err = nl_.editService(want->svc); !err.empty()) return err;
    it->second.svc = want->svc;
  }
  Programmed& p = it->second;
  p.external = want->external;
  p.local = want->local;
  p.clusterIP = want->clusterIP;
  // Real servers to add or bring back from weight 0, then those to remove: a merge of two
  // sorted maps, so a change costs requests only for what differs.
  for (const auto& [rs, weight] : want->dests) {
    auto have = p.dests.find(rs);
    if (have == p.dests.end()) {
      ++ops_;
      if (std::string err = nl_.addRealServer(key, RealServer{rs, weight}); !err.empty()) {
        return err;
      }
      p.dests.emplace(rs, weight);
    } else if (have->second != weight) {
      ++ops_;
      if (std::string err = nl_.editRealServer(key, RealServer{rs, weight}); !err.empty()) {
        return err;
      }
      have->second = weight;
      graceful_.erase({key, rs});
    }
  }
  std::vector<RealServerKey> gone;
  for (const auto& [rs, weight] : p.dests) {
    if (!want->dests.count(rs) && (weight != 0 || !graceful_.count({key, rs}))) {
      gone.push_back(rs);
    }
  }
  for (const auto& rs : gone) {
    if (std::string err = removeRealServer(key, p, rs); !err.empty()) return err;
  }
  return "";
}

std::string IpvsBackend::expireGraceful(bool all) {
  if (graceful_.empty()) return "";
  const auto now = Clock::now();
  const bool list = all || now - lastGracefulCheck_ >= gracefulCheckEvery_;
  if (list) lastGracefulCheck_ = now;
  std::map<VirtualServiceKey, std::vector<RealServer>> listed;
  for (auto g = graceful_.begin(); g != graceful_.end();) {
    const auto& [key, rs] = g->first;
    auto p = programmed_.find(key);
    if (p == programmed_.end() || p->second.dests.count(rs) == 0 || p->second.dests[rs] != 0) {
      g = graceful_.erase(g);
      continue;
    }
    bool drop = all || now - g->second >= gracefulBound_;
    if (!drop && !list) {
      ++g;
      continue;
    }
    if (!drop) {
      auto l = listed.find(key);
      if (l == listed.end()) {
        l = listed.emplace(key, std::vector<RealServer>{}).first;
        if (std::string err = nl_.listRealServers(key, l->second); !err.empty()) return err;
      }
      drop = true;
      for (const auto& r : l->second) {
        if (r.key == rs && r.activeConns + r.inactiveConns > 0) drop = false;
      }
    }
    if (!drop) {
      ++g;
      continue;
    }
    ++ops_;
    if (std::string err = nl_.deleteRealServer(key, rs); !err.empty()) return err;
    spdlog::debug("ipvs: real server {} of {} deleted after graceful termination", rs.str(),
                  key.str());
    p->second.dests.erase(rs);
    g = graceful_.erase(g);
  }
  return "";
}

std::string IpvsBackend::syncMasquerade(bool replace) {
  MasqueradeState want[2];
  for (const auto& [k, p] : programmed_) {
    MasqueradeState& m = want[k.addr.isV4() ? 0 : 1];
    if (!p.external) {
      m.cluster.insert(k.addr);
    } else if (!p.local) {
      m.external.insert(k);
    } else {
      m.externalLocal.insert(k);
      m.shortCircuit.emplace(k, p.clusterIP);
    }
  }
  for (const auto& [a, n] : hairpinRefs_) want[a.isV4() ? 0 : 1].hairpin.insert(a);
  for (int f = 0; f < 2; ++f) {
    MasqueradeTable& t = f == 0 ? masq4_ : masq6_;
    const auto fam = f == 0 ? proxier::IpFamily::V4 : proxier::IpFamily::V6;
    const proxier::Cidr* pod = nullptr;
    for (const auto& c : podCIDRs_) {
      if (c.addr.family == fam) pod = &c;
    }
    std::string err = replace ? t.replace(want[f], pod) : t.update(want[f], pod);
    if (!err.empty()) return err;
  }
  return "";
}

void IpvsBackend::localRef(const proxier::EndpointKey& ep, int delta) {
  int& n = hairpinRefs_[ep.ip];
  n += delta;
  if (n <= 0) hairpinRefs_.erase(ep.ip);
}

void IpvsBackend::trackLocal(const proxier::ServicePortKey& key,
                             const proxier::ServicePortView* v) {
  std::set<proxier::EndpointKey> now;
  if (v) {
    v->forEachEndpoint([&](const proxier::MergedEndpoint& e) {
      if (e.isLocal() && (e.sets & (proxier::epset::kCluster | proxier::epset::kLocal))) {
        now.insert(e.key);
      }
    });
  }
  auto& was = local_[key];
  for (const auto& e : was) {
    if (!now.count(e)) localRef(e, -1);
  }
  for (const auto& e : now) {
    if (!was.count(e)) localRef(e, +1);
  }
  if (now.empty()) {
    local_.erase(key);
  } else {
    was = std::move(now);
  }
}

std::string IpvsBackend::adoptKernelState(const std::set<VirtualServiceKey>& known) {
  // What a previous run programmed: the virtual services on addresses bound to our dummy
  // interface (or on a node address, for NodePorts), with their real servers. They keep serving
  // until the first full sync has reconciled them against the current state.
  std::vector<VirtualService> services;
  if (std::string err = nl_.listServices(services); !err.empty()) return err;
  auto local = localAddresses(dummy_.name());
  std::set<IpAddr> node(local.begin(), local.end());
  for (const auto& svc : services) {
    // Ours: on an address of our dummy link, or on a node address (NodePorts). Like kube-proxy's
    // IPVS mode, every virtual service on a node address is taken as this proxy's: a previous
    // run's NodePort that is no longer wanted (other flags, a deleted service) must go.
    bool onDummy = dummy_.addresses().count(svc.key.addr) > 0;
    if (!onDummy && !node.count(svc.key.addr) && !known.count(svc.key)) continue;
    Programmed p{svc, !onDummy, false, {}, {}};
    std::vector<RealServer> rss;
    if (std::string err = nl_.listRealServers(svc.key, rss); !err.empty()) return err;
    for (const auto& r : rss) p.dests.emplace(r.key, r.weight);
    programmed_.emplace(svc.key, std::move(p));
    ++addrRefs_[svc.key.addr];
  }
  return "";
}

std::string IpvsBackend::adoptAgain() {
  std::set<VirtualServiceKey> known;
  for (const auto& [k, p] : programmed_) known.insert(k);
  programmed_.clear();
  addrRefs_.clear();
  // Creates the link again if it is gone and reads the addresses it still has.
  if (std::string err = dummy_.ensure(); !err.empty()) return err;
  return adoptKernelState(known);
}

std::string IpvsBackend::drift() {
  return findDrift().what;
}

std::string IpvsBackend::realServersGone() {
  // A dump of every real server at each check would cost as much as the full sync it guards
  // against; a few virtual services per check, in turn, bound the work and still find a real
  // server deleted alone within programmed_.size() / budget checks.
  size_t budget = kDriftRealServersPerCheck;
  auto it = programmed_.upper_bound(driftCursor_);
  for (size_t seen = 0; seen < programmed_.size() && budget > 0; ++seen, ++it) {
    if (it == programmed_.end()) it = programmed_.begin();
    const auto& [key, p] = *it;
    driftCursor_ = key;
    budget -= std::min(budget, p.dests.size() + 1);
    std::vector<RealServer> listed;
    // A listing that fails says nothing; the next turn of the cursor asks again.
    if (!nl_.listRealServers(key, listed).empty()) continue;
    for (const auto& [rs, weight] : p.dests) {
      auto found = std::find_if(listed.begin(), listed.end(),
                                [&](const RealServer& l) { return l.key == rs; });
      if (found == listed.end()) {
        return fmt::format("real server {} of IPVS virtual service {} removed", rs.str(),
                           key.str());
      }
      if (found->weight != weight) {
        return fmt::format(
            "real server {} of IPVS virtual service {} changed (weight {}, programmed {})",
            rs.str(), key.str(), found->weight, weight);
      }
    }
  }
  return "";
}

IpvsBackend::Drift IpvsBackend::findDrift() {
  Drift drift;
  if (!open_ || !adopted_) return drift;
  std::vector<std::string> gone;
  if (std::string d = dummy_.missing(); !d.empty()) gone.push_back(std::move(d));
  std::vector<VirtualService> listed;
  // A listing that fails says nothing about what is there; the next check asks again.
  if (nl_.listServices(listed).empty()) {
    std::sort(listed.begin(), listed.end(),
              [](const VirtualService& a, const VirtualService& b) { return a.key < b.key; });
    size_t removed = 0, changed = 0;
    std::string firstRemoved, firstChanged;
    for (const auto& [k, p] : programmed_) {
      auto it = std::lower_bound(
          listed.begin(), listed.end(), k,
          [](const VirtualService& s, const VirtualServiceKey& key) { return s.key < key; });
      if (it == listed.end() || it->key != k) {
        if (removed++ == 0) firstRemoved = k.str();
      } else if (!it->sameSettings(p.svc)) {
        if (changed++ == 0) firstChanged = it->str();
      }
    }
    if (removed == 1) gone.push_back("IPVS virtual service " + firstRemoved + " removed");
    if (removed > 1) {
      gone.push_back(fmt::format("{} of {} IPVS virtual services ({}, ...) removed", removed,
                                 programmed_.size(), firstRemoved));
    }
    if (changed > 0) {
      gone.push_back(fmt::format("{} IPVS virtual service{} changed (now {}{})", changed,
                                 changed == 1 ? "" : "s", firstChanged,
                                 changed == 1 ? "" : ", ..."));
    }
    if (removed == 0 && changed == 0) {
      if (std::string rs = realServersGone(); !rs.empty()) gone.push_back(std::move(rs));
    }
  }
  const size_t ipvsParts = gone.size();
  drift.ipvs = ipvsParts > 0;
  for (const auto fam : {proxier::IpFamily::V4, proxier::IpFamily::V6}) {
    const bool masq = (fam == proxier::IpFamily::V4 ? masq4_ : masq6_).built();
    const bool pol = policy(fam).built();
    if (!masq && !pol) continue;
    auto tables =
        nft::listTables(nftSocket(), fam == proxier::IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
    if (!tables.ok) continue;
    auto missing = [&](bool built, const std::string& name) {
      if (!built ||
          std::find(tables.names.begin(), tables.names.end(), name) != tables.names.end()) {
        return;
      }
      gone.push_back(
          fmt::format("table {} {} removed", fam == proxier::IpFamily::V4 ? "ip" : "ip6", name));
    };
    missing(masq, kMasqueradeTable);
    missing(pol, nft::kMainTableName);
  }
  drift.tables = gone.size() > ipvsParts;
  for (const auto& g : gone) drift.what += (drift.what.empty() ? "" : ", ") + g;
  return drift;
}

BackendResult IpvsBackend::fullSync(const proxier::State& state) {
  const uint64_t before = ops_;
  if (std::string err = ensureOpen(); !err.empty()) return BackendResult::failure(err);
  refreshNodeAddresses(state.node);
  if (state.node && state.node->node) podCIDRs_ = state.node->node->podCIDRs;
  if (!adopted_) {
    if (std::string err = adoptKernelState(); !err.empty()) return BackendResult::failure(err);
  }
  // What another program removed (the proxier asks drift() when idle; a full sync after a failed
  // one, or the periodic one, checks too). Only what the link or IPVS lost needs the kernel read
  // again (real servers included); a table removed is built again.
  const Drift drift = findDrift();
  if (!drift.what.empty()) spdlog::info("ipvs: repairing: {}", drift.what);
  if (drift.ipvs) {
    if (std::string err = adoptAgain(); !err.empty()) return BackendResult::failure(err);
  }
  std::map<VirtualServiceKey, Desired> want;
  std::map<proxier::ServicePortKey, std::vector<VirtualServiceKey>> ports;
  std::set<proxier::ServicePortKey> current;
  for (const auto* v : state.ports) {
    current.insert(v->key());
    policy(v->key().port.family).setPort(*v);
    trackLocal(v->key(), v);
    auto d = desiredFor(*v);
    auto& keys = ports[v->key()];
    for (auto& [k, w] : d) {
      keys.push_back(k);
      want.emplace(k, std::move(w));
    }
  }
  std::vector<VirtualServiceKey> stale;
  for (const auto& [k, p] : programmed_) {
    if (!want.count(k)) stale.push_back(k);
  }
  for (const auto& [k, w] : want) {
    if (std::string err = reconcile(k, &w); !err.empty()) return BackendResult::failure(err);
  }
  for (const auto& k : stale) {
    if (std::string err = reconcile(k, nullptr); !err.empty()) return BackendResult::failure(err);
  }
  // Addresses a virtual service needs that the link lacks (removed behind our back).
  for (const auto& [a, n] : addrRefs_) {
    if (n <= 0 || isNodeAddress(a) || dummy_.addresses().count(a)) continue;
    ++ops_;
    if (std::string err = dummy_.addAddress(a); !err.empty()) return BackendResult::failure(err);
  }
  // Dummy-interface addresses no virtual service uses (left by a previous run).
  std::vector<IpAddr> unused;
  for (const auto& a : dummy_.addresses()) {
    if (!addrRefs_.count(a)) unused.push_back(a);
  }
  for (const auto& a : unused) {
    ++ops_;
    if (std::string err = dummy_.removeAddress(a); !err.empty()) {
      return BackendResult::failure(err);
    }
  }
  for (const auto& [k, keys] : ports_) {
    if (!current.count(k)) {
      policy(k.port.family).removePort(k);
      trackLocal(k, nullptr);
    }
  }
  ports_ = std::move(ports);
  for (auto* t : {&policy4_, &policy6_}) {
    if (std::string err = t->commit(true, state.node); !err.empty()) {
      return BackendResult::failure(err);
    }
  }
  // The first full sync replaces whatever table a previous run left, in one transaction; so does
  // a repair.
  if (std::string err = syncMasquerade(!adopted_ || drift.tables); !err.empty()) {
    return BackendResult::failure(err);
  }
  if (adopted_) {
    if (std::string err = expireGraceful(false); !err.empty()) return BackendResult::failure(err);
  }
  adopted_ = true;
  BackendResult r;
  r.operations = ops_ - before;
  return r;
}

std::string IpvsBackend::applyEndpointChanges(const proxier::ServicePortView& v,
                                              const std::vector<proxier::EndpointChange>& changes) {
  constexpr uint8_t anySet = proxier::epset::kCluster | proxier::epset::kLocal;
  for (const auto& c : changes) {
    const bool now = (c.flags & proxier::epflag::kLocal) && (c.newSets & anySet);
    auto mine = local_.find(v.key());
    if (now) {
      if (mine == local_.end())
        mine = local_.emplace(v.key(), std::set<proxier::EndpointKey>{}).first;
      if (mine->second.insert(c.key).second) localRef(c.key, +1);
    } else if (mine != local_.end() && mine->second.erase(c.key)) {
      localRef(c.key, -1);
      if (mine->second.empty()) local_.erase(mine);
    }
  }
  for (const auto& k : ports_.at(v.key())) {
    auto it = programmed_.find(k);
    if (it == programmed_.end()) continue;
    Programmed& p = it->second;
    const uint8_t set = p.external ? v.externalSet() : v.internalSet();
    for (const auto& c : changes) {
      RealServerKey rs{c.key.ip, c.key.port};
      const bool want = c.newSets & set;
      auto have = p.dests.find(rs);
      if (want && have == p.dests.end()) {
        ++ops_;
        if (std::string err = nl_.addRealServer(k, RealServer{rs, 1}); !err.empty()) return err;
        p.dests.emplace(rs, 1);
      } else if (want && have->second != 1) {
        ++ops_;
        if (std::string err = nl_.editRealServer(k, RealServer{rs, 1}); !err.empty()) return err;
        have->second = 1;
        graceful_.erase({k, rs});
      } else if (!want && have != p.dests.end() && have->second != 0) {
        if (std::string err = removeRealServer(k, p, rs); !err.empty()) return err;
      }
    }
  }
  return "";
}

BackendResult IpvsBackend::apply(const proxier::Diff& diff) {
  const uint64_t before = ops_;
  if (std::string err = ensureOpen(); !err.empty()) return BackendResult::failure(err);
  if (std::string err = expireGraceful(false); !err.empty()) return BackendResult::failure(err);
  if (diff.node && diff.node->node) podCIDRs_ = diff.node->node->podCIDRs;
  for (const auto& d : diff.deletes) {
    policy(d.key.port.family).removePort(d.key);
    trackLocal(d.key, nullptr);
    auto it = ports_.find(d.key);
    if (it == ports_.end()) continue;
    for (const auto& k : it->second) {
      if (std::string err = reconcile(k, nullptr); !err.empty()) {
        return BackendResult::failure(err);
      }
    }
    ports_.erase(it);
  }
  for (const auto& u : diff.upserts) {
    const auto& key = u.view->key();
    policy(key.port.family).setPort(*u.view);
    if (!u.created && !u.infoChanged && !u.modesChanged && ports_.count(key)) {
      // Only endpoints changed: touch just their real servers, O(change), whatever the size.
      if (std::string err = applyEndpointChanges(*u.view, u.endpoints); !err.empty()) {
        return BackendResult::failure(err);
      }
      continue;
    }
    trackLocal(key, u.view);
    auto want = desiredFor(*u.view);
    std::vector<VirtualServiceKey> keys;
    for (const auto& [k, w] : want) keys.push_back(k);
    auto it = ports_.find(key);
    if (it != ports_.end()) {
      for (const auto& k : it->second) {
        if (!want.count(k)) {
          if (std::string err = reconcile(k, nullptr); !err.empty()) {
            return BackendResult::failure(err);
          }
        }
      }
    }
    for (const auto& [k, w] : want) {
      if (std::string err = reconcile(k, &w); !err.empty()) return BackendResult::failure(err);
    }
    ports_[key] = std::move(keys);
  }
  for (auto* t : {&policy4_, &policy6_}) {
    if (std::string err = t->commit(false, diff.node); !err.empty()) {
      return BackendResult::failure(err);
    }
  }
  if (std::string err = syncMasquerade(false); !err.empty()) return BackendResult::failure(err);
  BackendResult r;
  r.operations = ops_ - before;
  // A node address change moves NodePorts: the next full sync lists the addresses again.
  r.wantsFullSync = diff.nodeChanged;
  return r;
}

BackendResult IpvsBackend::cleanup() {
  const uint64_t before = ops_;
  if (std::string err = nl_.opened() ? "" : nl_.open(); !err.empty()) {
    // No IPVS in this kernel: nothing of ours can be there but the dummy link and the table.
    if (std::string e2 = dummy_.remove(); !e2.empty()) return BackendResult::failure(e2);
    if (std::string e2 = masq4_.remove(); !e2.empty()) return BackendResult::failure(e2);
    if (std::string e2 = masq6_.remove(); !e2.empty()) return BackendResult::failure(e2);
    if (std::string e2 = policy4_.remove(); !e2.empty()) return BackendResult::failure(e2);
    if (std::string e2 = policy6_.remove(); !e2.empty()) return BackendResult::failure(e2);
    return {};
  }
  if (std::string err = dummy_.ensure(); !err.empty()) return BackendResult::failure(err);
  const auto local = localAddresses(dummy_.name());
  std::vector<VirtualService> services;
  if (std::string err = nl_.listServices(services); !err.empty()) {
    return BackendResult::failure(err);
  }
  for (const auto& svc : services) {
    // Ours: on an address of our dummy interface, or on a node address (NodePorts), as
    // adoption decides.
    if (!dummy_.addresses().count(svc.key.addr) && !programmed_.count(svc.key) &&
        std::find(local.begin(), local.end(), svc.key.addr) == local.end()) {
      continue;
    }
    ++ops_;
    if (std::string err = nl_.deleteService(svc.key); !err.empty()) {
      return BackendResult::failure(err);
    }
  }
  ++ops_;
  if (std::string err = dummy_.remove(); !err.empty()) return BackendResult::failure(err);
  if (std::string err = masq4_.remove(); !err.empty()) return BackendResult::failure(err);
  if (std::string err = masq6_.remove(); !err.empty()) return BackendResult::failure(err);
  if (std::string err = policy4_.remove(); !err.empty()) return BackendResult::failure(err);
  if (std::string err = policy6_.remove(); !err.empty()) return BackendResult::failure(err);
  local_.clear();
  hairpinRefs_.clear();
  programmed_.clear();
  ports_.clear();
  addrRefs_.clear();
  graceful_.clear();
  open_ = adopted_ = false;
  BackendResult r;
  r.operations = ops_ - before;
  return r;
}

std::vector<std::string> IpvsBackend::kernelObjects(const proxier::ServicePortKey& key) const {
  std::vector<std::string> out;
  auto it = ports_.find(key);
  if (it == ports_.end()) return out;
  for (const auto& k : it->second) {
    auto p = programmed_.find(k);
    out.push_back(fmt::format("ipvs virtual service {} ({} real servers)",
                              p == programmed_.end() ? k.str() : p->second.svc.str(),
                              p == programmed_.end() ? 0 : p->second.dests.size()));
  }
  return out;
}

}  // namespace sliceproxy::backends::ipvs
