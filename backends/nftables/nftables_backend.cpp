// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/nftables_backend.h"

#include <fmt/format.h>
#include <linux/netfilter.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/unordered/unordered_flat_set.hpp>
#include <tuple>
#include <unordered_map>

#include "proxier/core/injected_faults.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

namespace {

// Test hook (proxier/core/injected_faults.h): reached only when a test armed a fault.
[[gnu::cold]] void injectFaults(Transaction& tx) {
  if (int err = injectedFault(FaultPoint::NftCommit)) tx.failAtEnd(err);
  if (injectedFault(FaultPoint::NftAckOverrun)) tx.overrunAnswers();
}

// The service ports of `family` a diff changes, for the log line of a failed transaction:
// "2 service ports: conf/web:http/TCP/IPv4 (changed), conf/new:http/TCP/IPv4 (removed)".
std::string portsOf(const Diff& diff, IpFamily family) {
  std::vector<std::string> names;
  size_t n = 0;
  for (const auto& u : diff.upserts) {
    if (u.view->key().port.family != family) continue;
    if (++n <= 3) names.push_back(u.view->key().str() + (u.created ? " (new)" : " (changed)"));
  }
  for (const auto& d : diff.deletes) {
    if (d.key.port.family != family) continue;
    if (++n <= 3) names.push_back(d.key.str() + " (removed)");
  }
  std::string out = fmt::format("{} service port{}", n, n == 1 ? "" : "s");
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : ": ") + names[i];
  if (n > names.size()) out += fmt::format(" and {} more", n - names.size());
  return out;
}

}  // namespace

// --- SlotTable ---------------------------------------------------------------------------

void SlotTable::touch(uint32_t slot) {
  if (slot >= committed_ || before_.contains(slot)) return;
  before_.emplace(slot, slots_[slot]);
}

void SlotTable::add(const EndpointKey& k, bool local) {
  if (index_.contains(k)) return;
  const uint32_t slot = size();
  touch(slot);
  slots_.push_back({k, local});
  index_.emplace(k, slot);
}

void SlotTable::remove(const EndpointKey& k) {
  auto it = index_.find(k);
  if (it == index_.end()) return;
  const uint32_t slot = it->second, last = size() - 1;
  index_.erase(it);
  touch(slot);
  touch(last);
  if (slot != last) {
    slots_[slot] = slots_[last];
    index_[slots_[slot].key] = slot;
  }
  slots_.pop_back();
}

std::vector<std::pair<uint32_t, std::optional<SlotTable::Slot>>> SlotTable::takeChanges() {
  std::vector<std::pair<uint32_t, std::optional<Slot>>> out(before_.begin(), before_.end());
  out.reserve(out.size() + (size() > committed_ ? size() - committed_ : 0));
  for (uint32_t slot = committed_; slot < size(); ++slot) out.emplace_back(slot, std::nullopt);
  before_.clear();
  committed_ = size();
  return out;
}

// --- mirror ------------------------------------------------------------------------------

struct NftablesBackend::Port {
  uint32_t id = 0;
  ServicePortInfoPtr info;
  PortChains chains;
  ChainInputs inputs;
  std::vector<Elem> front;
  SlotTable slots[2];  // [0] cluster-wide, [1] node-local
  // Shared DNAT only: per slot table, the maps and key prefixes its slots are written under.
  std::vector<std::pair<uint8_t, Bytes>> sharedKeys[2];
  // ClientIP affinity only: each endpoint's serial, stable while it stays in the set so its
  // clients' timeout set survives other endpoints coming and going.
  boost::unordered_flat_map<EndpointKey, uint32_t, EndpointKeyHash> affinitySerial[2];
  uint32_t nextSerial = 0;
  // The handle of each endpoint's rule in the check chain, by serial (node-based: the commit
  // writes handles through pointers).
  std::unordered_map<uint32_t, uint64_t> affinityCheckHandle[2];
  bool buried = false;  // removed or rebuilt: dropAffinity() deletes everything at once
  bool hasAffinity() const { return info->sessionAffinity == SessionAffinity::ClientIP; }
};

struct NftablesBackend::Family {
  FamilyContext ctx;
  std::map<ServicePortKey, Port> ports;
  uint32_t nextId = 0;
  std::vector<uint32_t> tableLoad;  // service ports per service table
  boost::unordered_flat_map<IpAddr, uint32_t, IpAddrHash> clusterIpRefs, hairpinRefs;
  std::optional<Cidr> nodePodCIDR;
  // Per endpoints map (service table x map): elements now, and the size the last full sync
  // gave it (0: unsized).
  std::vector<uint32_t> mapElems, mapSize;
  size_t mapIndex(uint8_t table, uint8_t set, uint8_t part) const {
    return static_cast<size_t>(table) * ctx.mapsPerTable() + ctx.mapSlot(set, part);
  }
  // Shared DNAT chains (port_program.h) by table and name: the frontend elements that go to
  // each. A chain exists while this is above zero.
  std::map<std::pair<uint8_t, std::string>, uint32_t> sharedChainRefs;
  bool programmed = false;  // by a full sync: its tables must exist (drift())
};

// Everything one transaction must do, gathered first and then emitted in an order the kernel
// accepts: deletions of elements before the chains they point to go away, chains before the
// rules and elements that refer to them.
class NftablesBackend::Changes {
 public:
  std::vector<Elem> del, add;
  std::vector<ObjRef> newChains, flushChains, deadChains;
  std::vector<Port*> rewrite;
  boost::unordered_flat_map<IpAddr, int, IpAddrHash> clusterIpDelta, hairpinDelta;
  std::vector<Port*> slotPorts;
  std::vector<std::pair<uint8_t, nftnl_set*>> newSets;
  std::vector<ObjRef> flushSets, deadSets;
  struct AffinityEndpoint {
    uint8_t table;
    std::string name;
    EndpointKey key;
    uint32_t timeout;
  };
  std::vector<AffinityEndpoint> affinityRules;
  struct AffinitySlot {
    ObjRef map;
    uint32_t slot;
    std::string chain;
  };
  std::vector<AffinitySlot> affinitySlots;
  std::vector<std::pair<ObjRef, uint32_t>> affinitySlotsGone;  // map, slot
  struct AffinityCheck {
    uint8_t table;
    uint32_t setId;
    std::string name;
    uint64_t* handle;
  };
  std::vector<AffinityCheck> affinityChecks;
  struct AffinityCheckGone {
    uint8_t table;
    std::string chain;
    uint64_t handle;
  };
  std::vector<AffinityCheckGone> affinityChecksGone;
  struct AffinityCarried {
    ObjRef set;
    std::vector<AffinityClient> clients;
  };
  std::vector<AffinityCarried> affinityCarried;
  bool empty() const {
    return del.empty() && add.empty() && newChains.empty() && flushChains.empty() &&
           deadChains.empty() && rewrite.empty() && clusterIpDelta.empty() &&
           hairpinDelta.empty() && slotPorts.empty() && newSets.empty() && deadSets.empty();
  }
};

namespace {

uint8_t slotIndex(uint8_t set) {
  return set == epset::kLocal ? 1 : 0;
}

void diffElems(const std::vector<Elem>& before, const std::vector<Elem>& after,
               std::vector<Elem>& del, std::vector<Elem>& add) {
  for (const auto& e : before) {
    if (std::find(after.begin(), after.end(), e) == after.end()) del.push_back(e);
  }
  for (const auto& e : after) {
    if (std::find(before.begin(), before.end(), e) == before.end()) add.push_back(e);
  }
}

void emitElems(Transaction& tx, std::vector<Elem>& elems, bool add, const char* what) {
  // Grouped by set with a stable sort of a 32-bit key and index: an Elem is ~200 bytes, and a
  // cold sync has 100,000 of them.
  std::vector<uint64_t> order(elems.size());
  for (size_t i = 0; i < elems.size(); ++i) {
    const Elem& e = elems[i];
    const uint64_t group = (uint64_t{e.table} << 16) | (uint64_t{e.set} << 8) | e.part;
    order[i] = (group << 32) | i;
  }
  std::sort(order.begin(), order.end());
  std::vector<nftnl_set_elem*> batch;
  for (size_t i = 0; i < order.size();) {
    const Elem& first = elems[order[i] & 0xffffffffu];
    const uint64_t group = order[i] >> 32;
    for (; i < order.size() && (order[i] >> 32) == group; ++i) {
      Elem& e = elems[order[i] & 0xffffffffu];
      batch.push_back(makeElem(e.key, add ? &e.value : nullptr));
    }
    if (add) {
      tx.addElements(tableName(first.table), elemSetName(first.set, first.part), batch, what);
    } else {
      tx.deleteElements(tableName(first.table), elemSetName(first.set, first.part), batch, what);
    }
  }
}

}  // namespace

// --- backend -----------------------------------------------------------------------------

NftablesBackend::NftablesBackend(NetworkConfig net) : net_(std::move(net)) {
  sock_ = std::make_unique<Socket>();
  flows_ = std::make_shared<FlowRecord>(net_.flowRecordMax);
  families_[0] = freshFamily({{IpFamily::V4, NFPROTO_IPV4, &net_}});
  families_[1] = freshFamily({{IpFamily::V6, NFPROTO_IPV6, &net_}});
}

NftablesBackend::~NftablesBackend() = default;

std::unique_ptr<NftablesBackend::Family> NftablesBackend::freshFamily(const FamilyContext& ctx) {
  auto f = std::make_unique<Family>();
  f->ctx = ctx;
  f->tableLoad.assign(ctx.serviceTables, 0);
  f->mapElems.assign(ctx.allEndpointMaps(), 0);
  f->mapSize.assign(ctx.allEndpointMaps(), 0);
  return f;
}

Capabilities NftablesBackend::supported() {
  return Capabilities{{Feature::ClusterIP, Feature::NodePort, Feature::LoadBalancerVIP,
                       Feature::ExternalIPs, Feature::ExternalTrafficPolicyLocal,
                       Feature::InternalTrafficPolicyLocal, Feature::SessionAffinity,
                       Feature::LoadBalancerSourceRanges, Feature::IPv6, Feature::SCTP,
                       Feature::Hairpin}};
}

BackendResult NftablesBackend::commit(Family& f, Changes& ch,
                                      const std::function<void(Transaction&)>& prelude) {
  if (ch.empty() && !prelude) return {};
  const FamilyContext& ctx = f.ctx;
  Transaction tx(*sock_, ctx.nfproto);
  if (prelude) prelude(tx);

  // Endpoint slots that changed become element deletions and additions.
  for (Port* p : ch.slotPorts) {
    for (uint8_t s = 0; s < 2; ++s) {
      const uint32_t setId = endpointSetId(p->id, s == 0 ? epset::kCluster : epset::kLocal);
      std::vector<std::pair<EndpointKey, bool>> gone, came;
      auto slotChanges = p->slots[s].takeChanges();
      // A cold sync appends 100,000 elements here: grown by doubling, the vector touches twice
      // their memory, and fresh pages are what a cold sync pays most for on some hosts
      // (page faults were a third of the seed's cold sync on a PVM guest).
      // (Growth stays geometric: reserving exactly per port would copy the vector per port.)
      const size_t keysPerSlot = p->chains.shared ? p->sharedKeys[s].size() : 1;
      const size_t need = ch.add.size() + slotChanges.size() * keysPerSlot;
      if (need > ch.add.capacity()) ch.add.reserve(std::max(need, 2 * ch.add.capacity()));
      came.reserve(slotChanges.size());
      for (auto& [slot, before] : slotChanges) {
        const bool now = slot < p->slots[s].size();
        if (before && now && before->key == p->slots[s].at(slot).key) continue;
        const uint8_t table = p->chains.shard;
        // Where this slot is written: once in the port's endpoints map, or once per frontend.
        auto forEachKey = [&](auto&& fn) {
          if (!p->chains.shared) {
            fn(kEndpoints, ctx.endpointMap(setId), Bytes().u32(setId).u32(slot));
            return;
          }
          for (const auto& [map, prefix] : p->sharedKeys[s]) {
            Bytes key = prefix;
            fn(map, uint8_t{0}, key.u32(slot));
          }
        };
        if (before) {
          forEachKey([&](uint8_t map, uint8_t part, const Bytes& key) {
            ch.del.push_back({map, key, {}, part, table});
          });
          gone.emplace_back(before->key, before->local);
        }
        if (now) {
          const auto& cur = p->slots[s].at(slot);
          const Bytes data = Bytes().addr(cur.key.ip).port(cur.key.port);
          forEachKey([&](uint8_t map, uint8_t part, const Bytes& key) {
            ch.add.push_back({map, key, {ElemValue::Data, "", data}, part, table});
          });
          came.emplace_back(cur.key, cur.local);
        }
      }
      // A moved endpoint shows up as gone from one slot and come to another: no net change.
      // (Only a change with both can have moves; a cold sync has 100,000 arrivals and none.)
      if (!gone.empty() && !came.empty()) {
        boost::unordered_flat_set<EndpointKey, EndpointKeyHash> goneKeys, cameKeys;
        for (auto& g : gone) goneKeys.insert(g.first);
        for (auto& c : came) cameKeys.insert(c.first);
        std::erase_if(gone, [&](const auto& g) { return cameKeys.contains(g.first); });
        std::erase_if(came, [&](const auto& c) { return goneKeys.contains(c.first); });
      }
      for (auto& [k, local] : gone) {
        if (local) --ch.hairpinDelta[k.ip];
      }
      if (p->hasAffinity() && !p->buried)
        affinitySlotChanges(f, *p, s, slotChanges, gone, came, ch);
      for (auto& [k, local] : came) {
        if (local) ++ch.hairpinDelta[k.ip];
      }
    }
  }
  // A sized endpoints map is a hard limit (layout.h): a change that would overflow one is not
  // sent; the full sync that follows sizes the maps for it.
  std::vector<int64_t> mapDelta(f.mapElems.size(), 0);
  auto isEndpoints = [](const Elem& e) {
    return e.set == kEndpoints || e.set == kFrontendEndpoints || e.set == kNodePortEndpoints;
  };
  for (const auto& e : ch.add) {
    if (isEndpoints(e)) ++mapDelta[f.mapIndex(e.table, e.set, e.part)];
  }
  for (const auto& e : ch.del) {
    if (isEndpoints(e)) --mapDelta[f.mapIndex(e.table, e.set, e.part)];
  }
  for (size_t i = 0; i < mapDelta.size(); ++i) {
    const int64_t after = static_cast<int64_t>(f.mapElems[i]) + mapDelta[i];
    if (f.mapSize[i] && after > static_cast<int64_t>(f.mapSize[i])) {
      const uint32_t slot = static_cast<uint32_t>(i % ctx.mapsPerTable());
      BackendResult r = BackendResult::failure(fmt::format(
          "{} endpoints map {} of {} would hold {} endpoints, above the {} it was sized for",
          familyName(ctx.family),
          slot == ctx.mapSlot(kFrontendEndpoints, 0) ? std::string(setName(kFrontendEndpoints))
          : slot == ctx.mapSlot(kNodePortEndpoints, 0)
              ? std::string(setName(kNodePortEndpoints))
              : elemSetName(kEndpoints, static_cast<uint8_t>(slot)),
          serviceTableName(static_cast<uint32_t>(i / ctx.mapsPerTable())), after, f.mapSize[i]));
      r.needsFullSyncNow = true;
      return r;
    }
  }
  auto refs = [&](auto& table, auto& delta, uint8_t set, auto key) {
    for (auto& [addr, d] : delta) {
      if (d == 0) continue;
      uint32_t& n = table[addr];
      const uint32_t before = n;
      n = static_cast<uint32_t>(static_cast<int64_t>(n) + d);
      if (before == 0 && n > 0) ch.add.push_back({set, key(addr), {}});
      if (before > 0 && n == 0) ch.del.push_back({set, key(addr), {}});
      if (n == 0) table.erase(addr);
    }
  };
  refs(f.clusterIpRefs, ch.clusterIpDelta, kClusterIps, clusterIpKey);
  refs(f.hairpinRefs, ch.hairpinDelta, kHairpin, hairpinKey);

  // Shared DNAT chains come with the first frontend that goes to them and leave with the last.
  std::map<std::pair<uint8_t, std::string>, int> sharedDelta;
  auto countShared = [&](const std::vector<Elem>& elems, int d) {
    for (const auto& e : elems) {
      if (e.value.kind == ElemValue::Goto && e.table != kMainTable &&
          (e.set == kServiceIps || e.set == kServiceNodePorts) &&
          parseSharedDnatChain(e.value.chain)) {
        sharedDelta[{e.table, e.value.chain}] += d;
      }
    }
  };
  countShared(ch.add, 1);
  countShared(ch.del, -1);
  std::vector<std::pair<uint8_t, std::string>> sharedNew, sharedDead;
  for (auto& [chain, d] : sharedDelta) {
    if (d == 0) continue;
    auto it = f.sharedChainRefs.try_emplace(chain, 0).first;
    const uint32_t before = it->second;
    it->second = static_cast<uint32_t>(static_cast<int64_t>(before) + d);
    if (before == 0 && it->second > 0) sharedNew.push_back(chain);
    if (before > 0 && it->second == 0) sharedDead.push_back(chain);
    if (it->second == 0) f.sharedChainRefs.erase(it);
  }

  emitElems(tx, ch.del, false, "service changes");
  for (size_t i = 0; i < ch.affinitySlotsGone.size();) {
    const ObjRef& map = ch.affinitySlotsGone[i].first;
    std::vector<nftnl_set_elem*> elems;
    for (; i < ch.affinitySlotsGone.size() && ch.affinitySlotsGone[i].first == map; ++i) {
      elems.push_back(makeElem(Bytes().u32(ch.affinitySlotsGone[i].second), nullptr));
    }
    tx.deleteElements(tableName(map.table), map.name, elems, "affinity endpoints");
  }
  for (const auto& c : ch.affinityChecksGone) {
    tx.deleteRule(tableName(c.table), c.chain, c.handle, "affinity check of a removed endpoint");
  }
  for (const auto& s : ch.flushSets) tx.flushSet(tableName(s.table), s.name);
  for (const auto& c : ch.flushChains) tx.flushChain(tableName(c.table), c.name);
  for (auto [table, s] : ch.newSets) {
    tx.addSet(tableName(table), s, std::string("set ") + nftnl_set_get_str(s, NFTNL_SET_NAME));
  }
  ch.newSets.clear();
  for (const auto& c : ch.newChains) tx.addChain(tableName(c.table), c.name);
  for (const auto& [table, name] : sharedNew) {
    const auto [kind, endpoints] = *parseSharedDnatChain(name);
    tx.addChain(tableName(table), name);
    addSharedDnatRule(tx, ctx, tableName(table), kind, endpoints);
  }
  for (Port* p : ch.rewrite) {
    addPortRules(tx, ctx, p->id, *p->info, p->chains, p->inputs, p->hasAffinity());
  }
  for (const auto& a : ch.affinityRules) {
    addAffinityEndpointRules(tx, ctx, tableName(a.table), a.name, a.key, a.timeout);
  }
  for (const auto& c : ch.affinityChecks) {
    addAffinityCheckRule(tx, ctx, tableName(c.table), c.setId, c.name, c.handle);
  }
  emitElems(tx, ch.add, true, "service changes");
  for (size_t i = 0; i < ch.affinitySlots.size();) {
    const ObjRef& map = ch.affinitySlots[i].map;
    std::vector<nftnl_set_elem*> elems;
    for (; i < ch.affinitySlots.size() && ch.affinitySlots[i].map == map; ++i) {
      ElemValue v{ElemValue::Goto, ch.affinitySlots[i].chain, {}};
      elems.push_back(makeElem(Bytes().u32(ch.affinitySlots[i].slot), &v));
    }
    tx.addElements(tableName(map.table), map.name, elems, "affinity endpoints");
  }
  for (auto& c : ch.affinityCarried) {
    std::vector<nftnl_set_elem*> elems;
    for (const auto& client : c.clients) {
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, client.addr.bytes.data(),
                         static_cast<uint32_t>(client.addr.size()));
      nftnl_set_elem_set_u64(e, NFTNL_SET_ELEM_TIMEOUT, client.remainingMs);
      elems.push_back(e);
    }
    tx.addElements(tableName(c.set.table), c.set.name, elems,
                   "clients kept by ClientIP affinity across the full sync");
  }
  for (const auto& c : ch.deadChains) tx.deleteChain(tableName(c.table), c.name);
  for (const auto& s : ch.deadSets) tx.deleteSet(tableName(s.table), s.name);
  for (const auto& [table, name] : sharedDead) {
    tx.flushChain(tableName(table), name);
    tx.deleteChain(tableName(table), name);
  }

  if (faultsArmed()) [[unlikely]]
    injectFaults(tx);
  auto res = tx.commit();
  stats_.lastMessages += res.messages;
  stats_.lastBytes += res.bytes;
  if (!res.ok) {
    return BackendResult::failure(fmt::format("{} table: {}", familyName(ctx.family), res.error));
  }
  for (size_t i = 0; i < mapDelta.size(); ++i) {
    f.mapElems[i] = static_cast<uint32_t>(static_cast<int64_t>(f.mapElems[i]) + mapDelta[i]);
  }
  return {true, "", res.messages};
}

namespace {

ChainInputs inputsOf(const SlotTable (&slots)[2], const ServicePortView& v,
                     const std::optional<Cidr>& podCIDR) {
  return ChainInputs{slots[0].size(), slots[1].size(), v.hasAnyEndpoints(),
                     podCIDR ? &*podCIDR : nullptr};
}

}  // namespace

NftablesBackend::Port& NftablesBackend::createPort(Family& f, const ServicePortView& v,
                                                   Changes& ch) {
  Port& p = f.ports[v.key()];
  // Ids are never reused while this mirror lives, so a stale affinity entry can never name a
  // new port's endpoint set.
  p.id = f.nextId++;
  p.info = v.info();
  // The least loaded service table; a full sync deals ports out evenly in creation order.
  const auto least = std::min_element(f.tableLoad.begin(), f.tableLoad.end());
  ++*least;
  p.slots[0].reserve(v.clusterCount());
  p.slots[1].reserve(v.localCount());
  v.forEachEndpoint([&](const MergedEndpoint& e) {
    if (e.sets & epset::kCluster) p.slots[0].add(e.key, e.isLocal());
    if (e.sets & epset::kLocal) p.slots[1].add(e.key, e.isLocal());
  });
  p.chains = chainNames(p.id, static_cast<uint8_t>(least - f.tableLoad.begin()), *p.info,
                        usesSharedDnat(*p.info, p.slots[0].size(), p.slots[1].size()));
  p.chains.appendTo(ch.newChains);
  if (p.chains.shared) {
    p.sharedKeys[0] = sharedSlotKeys(*p.info, epset::kCluster);
    p.sharedKeys[1] = sharedSlotKeys(*p.info, epset::kLocal);
  }
  p.inputs = inputsOf(p.slots, v, f.nodePodCIDR);
  ch.rewrite.push_back(&p);
  p.front = frontendElems(*p.info, p.chains, p.inputs, v.internalSet(), v.externalSet());
  ch.add.insert(ch.add.end(), p.front.begin(), p.front.end());
  ++ch.clusterIpDelta[p.info->clusterIP];
  ch.slotPorts.push_back(&p);
  createAffinity(p, ch);
  return p;
}

void NftablesBackend::createAffinity(Port& p, Changes& ch) {
  if (!p.hasAffinity()) return;
  for (uint8_t s = 0; s < 2; ++s) {
    const uint32_t setId = endpointSetId(p.id, s == 0 ? epset::kCluster : epset::kLocal);
    ch.newSets.emplace_back(p.chains.shard, affinityMap(affinityMapName(setId)));
    ch.newChains.push_back({p.chains.shard, affinityCheckName(setId)});
  }
}

// One endpoint set's slot changes, as the commit found them: a set, chain and check rule per
// endpoint that came, the same deleted for one that went, and the slot map's changed slots.
void NftablesBackend::affinitySlotChanges(
    Family& f, Port& p, uint8_t s,
    const std::vector<std::pair<uint32_t, std::optional<SlotTable::Slot>>>& slots,
    const std::vector<std::pair<EndpointKey, bool>>& gone,
    const std::vector<std::pair<EndpointKey, bool>>& came, Changes& ch) {
  const uint32_t setId = endpointSetId(p.id, s == 0 ? epset::kCluster : epset::kLocal);
  const uint8_t table = p.chains.shard;
  auto& serials = p.affinitySerial[s];
  for (const auto& [k, local] : gone) {
    auto it = serials.find(k);
    if (it == serials.end()) continue;
    const ObjRef name{table, affinityName(setId, it->second)};
    auto h = p.affinityCheckHandle[s].find(it->second);
    if (h != p.affinityCheckHandle[s].end()) {
      ch.affinityChecksGone.push_back({table, affinityCheckName(setId), h->second});
      p.affinityCheckHandle[s].erase(h);
    }
    ch.flushChains.push_back(name);
    ch.deadChains.push_back(name);
    ch.deadSets.push_back(name);
    serials.erase(it);
  }
  for (const auto& [k, local] : came) {
    const uint32_t serial = p.nextSerial++;
    serials.emplace(k, serial);
    const std::string name = affinityName(setId, serial);
    const std::string owner = affinityOwnerTag(p.info->key, s, k);
    ch.newSets.emplace_back(table, affinitySet(f.ctx, name, p.info->affinityTimeoutSeconds,
                                               affinityOwnerUserdata(owner)));
    if (carry_ && !owner.empty()) {
      auto clients = carry_->take(owner);
      if (!clients.empty()) ch.affinityCarried.push_back({{table, name}, std::move(clients)});
    }
    ch.newChains.push_back({table, name});
    ch.affinityRules.push_back({table, name, k, p.info->affinityTimeoutSeconds});
    ch.affinityChecks.push_back({table, setId, name, &p.affinityCheckHandle[s][serial]});
  }
  const ObjRef map{table, affinityMapName(setId)};
  for (const auto& [slot, before] : slots) {
    const bool now = slot < p.slots[s].size();
    if (before && now && before->key == p.slots[s].at(slot).key) continue;
    if (before) ch.affinitySlotsGone.emplace_back(map, slot);
    if (now) {
      const uint32_t serial = serials.at(p.slots[s].at(slot).key);
      ch.affinitySlots.push_back({map, slot, affinityName(setId, serial)});
    }
  }
}

void NftablesBackend::dropAffinity(Port& p, Changes& ch) {
  if (!p.hasAffinity()) return;
  p.buried = true;
  for (uint8_t s = 0; s < 2; ++s) {
    const uint32_t setId = endpointSetId(p.id, s == 0 ? epset::kCluster : epset::kLocal);
    const uint8_t table = p.chains.shard;
    ch.flushSets.push_back({table, affinityMapName(setId)});
    ch.flushChains.push_back({table, affinityCheckName(setId)});
    for (auto& [k, serial] : p.affinitySerial[s]) {
      const ObjRef name{table, affinityName(setId, serial)};
      ch.flushChains.push_back(name);
      ch.deadChains.push_back(name);
      ch.deadSets.push_back(name);
    }
    ch.deadChains.push_back({table, affinityCheckName(setId)});
    ch.deadSets.push_back({table, affinityMapName(setId)});
  }
}

BackendResult NftablesBackend::apply(const Diff& diff) {
  stats_ = {};
  uint64_t ops = 0;
  bool outgrown = false;
  for (auto& fam : families_) {
    Family& f = *fam;
    Changes ch;
    auto drop = [&](std::map<ServicePortKey, Port>::iterator it) {
      Port& p = it->second;
      dropAffinity(p, ch);
      ch.del.insert(ch.del.end(), p.front.begin(), p.front.end());
      --ch.clusterIpDelta[p.info->clusterIP];
      for (uint8_t s = 0; s < 2; ++s) {
        while (p.slots[s].size() > 0) p.slots[s].remove(p.slots[s].at(p.slots[s].size() - 1).key);
      }
      std::vector<ObjRef> chains;
      p.chains.appendTo(chains);
      for (auto& c : chains) {
        ch.flushChains.push_back(c);
        ch.deadChains.push_back(c);
      }
      --f.tableLoad[p.chains.shard];
    };
    // Ports removed (or about to be rebuilt) keep their slot tables alive until the commit has
    // turned them into element deletions.
    std::vector<std::unique_ptr<Port>> graveyard;
    auto bury = [&](std::map<ServicePortKey, Port>::iterator it) {
      drop(it);
      graveyard.push_back(std::make_unique<Port>(std::move(it->second)));
      ch.slotPorts.push_back(graveyard.back().get());
      f.ports.erase(it);
    };

    // Frontends the flow record stops or starts treating as ours.
    std::vector<ServicePortInfoPtr> frontendsGone, frontendsCame;
    for (const auto& d : diff.deletes) {
      if (d.key.port.family != f.ctx.family) continue;
      auto it = f.ports.find(d.key);
      if (it != f.ports.end()) {
        frontendsGone.push_back(it->second.info);
        bury(it);
      }
    }
    for (const auto& u : diff.upserts) {
      const ServicePortView& v = *u.view;
      if (v.key().port.family != f.ctx.family) continue;
      auto it = f.ports.find(v.key());
      const bool rebuild = it == f.ports.end() || u.created || u.infoChanged;
      if (rebuild) {
        if (it != f.ports.end()) {
          frontendsGone.push_back(it->second.info);
          bury(it);
        }
        frontendsCame.push_back(createPort(f, v, ch).info);
        continue;
      }
      Port& p = it->second;
      for (const auto& c : u.endpoints) {
        const bool local = c.flags & epflag::kLocal;
        for (uint8_t set : {epset::kCluster, epset::kLocal}) {
          SlotTable& t = p.slots[slotIndex(set)];
          const bool was = c.oldSets & set, now = c.newSets & set;
          if (was && !now) t.remove(c.key);
          if (!was && now) t.add(c.key, local);
        }
      }
      ch.slotPorts.push_back(&p);
      ChainInputs in = inputsOf(p.slots, v, f.nodePodCIDR);
      if (!(in == p.inputs)) {
        p.inputs = in;
        p.chains.appendTo(ch.flushChains);
        ch.rewrite.push_back(&p);
      }
      auto front = frontendElems(*p.info, p.chains, p.inputs, v.internalSet(), v.externalSet());
      diffElems(p.front, front, ch.del, ch.add);
      p.front = std::move(front);
    }
    std::function<void(Transaction&)> flowRecordChanges;
    if (flows_->enabled() && (!frontendsGone.empty() || !frontendsCame.empty())) {
      flowRecordChanges = [&](Transaction& tx) {
        for (const auto& info : frontendsGone) flows_->portGone(tx, *info);
        for (const auto& info : frontendsCame) flows_->portCame(tx, *info);
      };
    }
    auto res = commit(f, ch, flowRecordChanges);
    if (!res.ok) {
      // Which services the refused transaction carried: the kernel kept none of it.
      res.error += fmt::format(" (programming {})", portsOf(diff, f.ctx.family));
      return res;
    }
    ops += res.operations;
    if (f.ports.size() > f.ctx.serviceTables * kPortsPerServiceTableLimit &&
        f.ctx.serviceTables < kMaxServiceTables) {
      outgrown = true;
    }
  }
  BackendResult out{true, "", ops};
  if (outgrown) {
    out.wantsFullSync = true;
    spdlog::info(
        "nftables: the service ports outgrew the service tables; the next sync is full "
        "and spreads them over more tables");
  }
  return out;
}

BackendResult NftablesBackend::fullSync(const State& state) {
  stats_ = {};
  uint64_t ops = 0;
  for (auto& fam : families_) {
    FamilyContext ctx = fam->ctx;
    // Tables of a previous run, whatever its number of service tables, go in the same
    // transaction that creates ours.
    auto previous = listTables(*sock_, ctx.nfproto);
    if (!previous.ok) return BackendResult::failure(previous.error);
    std::vector<std::string> ownServiceTables;
    for (const auto& name : previous.names) {
      if (name != kMainTableName && isOwnTable(name)) ownServiceTables.push_back(name);
    }
    std::string carryError;
    AffinityCarry carry =
        AffinityCarry::read(*sock_, ctx.nfproto, ctx.family, ownServiceTables, carryError);
    if (!carryError.empty()) {
      // Losing affinity is better than not programming: clients are re-balanced once.
      spdlog::warn("nftables: ClientIP affinity is not kept across this full sync: {}", carryError);
    } else if (carry.clients() > 0) {
      spdlog::info(
          "nftables: keeping {} ClientIP affinity entries of {} endpoints across the "
          "full sync",
          carry.clients(), carry.sets());
    }
    carry_ = &carry;
    size_t ports = 0;
    for (const ServicePortView* v : state.ports) ports += v->key().port.family == ctx.family;
    ctx.serviceTables = serviceTablesFor(ports);
    // A fresh mirror: the tables are replaced in this one transaction.
    fam = freshFamily(ctx);
    Family& f = *fam;
    if (state.node && state.node->node) {
      for (const auto& c : state.node->node->podCIDRs) {
        if (c.addr.family == ctx.family && !f.nodePodCIDR) f.nodePodCIDR = c;
      }
    }
    Changes ch;
    for (const ServicePortView* v : state.ports) {
      if (v->key().port.family == ctx.family) createPort(f, *v, ch);
    }
    std::vector<size_t> fill(ctx.allEndpointMaps(), 0);
    for (const auto& [key, p] : f.ports) {
      for (uint8_t s = 0; s < 2; ++s) {
        const uint32_t setId = endpointSetId(p.id, s == 0 ? epset::kCluster : epset::kLocal);
        if (!p.chains.shared) {
          fill[f.mapIndex(p.chains.shard, kEndpoints, ctx.endpointMap(setId))] += p.slots[s].size();
          continue;
        }
        for (const auto& [map, prefix] : p.sharedKeys[s]) {
          fill[f.mapIndex(p.chains.shard, map, 0)] += p.slots[s].size();
        }
      }
    }
    for (size_t i = 0; i < fill.size(); ++i) f.mapSize[i] = endpointMapSize(fill[i]);
    auto res = commit(f, ch, [&](Transaction& tx) {
      // add, delete, add: replaces whatever a previous run left in one atomic step, whether
      // or not the table exists, so a restart never opens a window without rules.
      tx.addTable(kMainTableName);
      tx.deleteTable(kMainTableName, "replacing the previous table");
      for (const auto& name : previous.names) {
        if (name != kMainTableName && isOwnTable(name))
          tx.deleteTable(name, "replacing table " + name);
      }
      tx.addTable(kMainTableName);
      buildMainTable(tx, ctx, state.node);
      for (uint32_t shard = 0; shard < ctx.serviceTables; ++shard) {
        buildServiceTable(tx, ctx, state.node, static_cast<uint8_t>(shard),
                          &f.mapSize[f.mapIndex(static_cast<uint8_t>(shard), kEndpoints, 0)]);
      }
      std::vector<const ServicePortInfo*> infos;
      for (const auto& [key, p] : f.ports) infos.push_back(p.info.get());
      flows_->ensure(tx, ctx, previous, infos);
    });
    carry_ = nullptr;  // the commit's slot changes took what they could
    if (!res.ok) {
      res.error += fmt::format(" (replacing the {} tables with {} service ports)",
                               familyName(ctx.family), f.ports.size());
      return res;
    }
    f.programmed = true;
    ops += res.operations;
  }
  return {true, "", ops};
}

std::string NftablesBackend::drift() {
  std::string gone;
  for (auto& fam : families_) {
    const Family& f = *fam;
    if (!f.programmed) continue;
    auto tables = listTables(*sock_, f.ctx.nfproto);
    // A listing that fails says nothing about the tables; the next sync asks again.
    if (!tables.ok) continue;
    auto missing = [&](const std::string& name) {
      if (std::find(tables.names.begin(), tables.names.end(), name) != tables.names.end()) return;
      gone += fmt::format("{}table {} {} removed", gone.empty() ? "" : ", ",
                          f.ctx.family == IpFamily::V4 ? "ip" : "ip6", name);
    };
    missing(kMainTableName);
    for (uint32_t shard = 0; shard < f.ctx.serviceTables; ++shard) {
      missing(serviceTableName(shard));
    }
    if (flows_->enabled()) missing(kFlowTable);
  }
  return gone;
}

BackendResult NftablesBackend::cleanup() {
  uint64_t ops = 0;
  for (auto& fam : families_) {
    const FamilyContext ctx = fam->ctx;
    auto tables = listTables(*sock_, ctx.nfproto);
    if (!tables.ok) return BackendResult::failure(tables.error);
    Transaction tx(*sock_, ctx.nfproto);
    for (const auto& name : tables.names) {
      if (isOwnTable(name) || name == kFlowTable) {
        tx.deleteTable(name, "removing sliceproxy's table " + name);
      }
    }
    auto r = tx.commit();
    if (!r.ok) {
      return BackendResult::failure(
          fmt::format("cleanup of the {} tables: {}", familyName(ctx.family), r.error));
    }
    ops += tx.messages();
    fam = freshFamily(ctx);
  }
  flows_->removed();
  return {true, "", ops};
}

// For `sliceproxy explain`: where this port lives in the kernel, as `nft list` names it.
std::vector<std::string> NftablesBackend::kernelObjects(const ServicePortKey& key) const {
  const Family& f = *families_[key.port.family == IpFamily::V4 ? 0 : 1];
  auto it = f.ports.find(key);
  if (it == f.ports.end()) return {};
  const Port& p = it->second;
  const char* family = key.port.family == IpFamily::V4 ? "ip" : "ip6";
  const std::string table = fmt::format("{} {}", family, serviceTableName(p.chains.shard));
  std::vector<std::string> out;
  std::vector<ObjRef> chains;
  p.chains.appendTo(chains);
  for (const auto& c : chains) {
    out.push_back(fmt::format("chain {} {} {}", family, tableName(c.table), c.name));
  }
  out.push_back(fmt::format("map {} {}", table, setName(kServiceIps)));
  if (p.info->nodePort) out.push_back(fmt::format("map {} {}", table, setName(kServiceNodePorts)));
  if (p.chains.shared) {
    // The shared DNAT chains its frontends go to now, and the maps holding its endpoints.
    std::vector<std::string> shared;
    for (const auto& e : p.front) {
      if (e.value.kind == ElemValue::Goto && parseSharedDnatChain(e.value.chain) &&
          std::find(shared.begin(), shared.end(), e.value.chain) == shared.end()) {
        shared.push_back(e.value.chain);
      }
    }
    for (const auto& c : shared) out.push_back(fmt::format("chain {} {} (shared)", table, c));
    for (uint8_t s = 0; s < 2; ++s) {
      if (p.slots[s].size() == 0) continue;
      for (uint8_t map : {kFrontendEndpoints, kNodePortEndpoints}) {
        const auto& keys = p.sharedKeys[s];
        const auto n =
            std::count_if(keys.begin(), keys.end(), [&](const auto& k) { return k.first == map; });
        if (n == 0) continue;
        out.push_back(fmt::format("map {} {} ({} endpoints under {} frontends, {})", table,
                                  setName(map), p.slots[s].size(), n,
                                  s == 0 ? "cluster-wide" : "node-local"));
      }
    }
  } else {
    for (uint8_t set : {epset::kCluster, epset::kLocal}) {
      const uint32_t id = endpointSetId(p.id, set);
      out.push_back(fmt::format("map {} {} (set id {}, {})", table,
                                elemSetName(kEndpoints, f.ctx.endpointMap(id)), id,
                                set == epset::kCluster ? "cluster-wide" : "node-local"));
    }
  }
  for (uint8_t s = 0; s < 2; ++s) {
    const uint32_t setId = endpointSetId(p.id, s == 0 ? epset::kCluster : epset::kLocal);
    if (!p.hasAffinity() || p.affinitySerial[s].empty()) continue;
    out.push_back(fmt::format("chain {} {}", table, affinityCheckName(setId)));
    for (const auto& [k, serial] : p.affinitySerial[s]) {
      out.push_back(
          fmt::format("chain {} {} ({})", table, affinityName(setId, serial), k.ip.str()));
    }
  }
  return out;
}

}  // namespace sliceproxy::backends::nft
