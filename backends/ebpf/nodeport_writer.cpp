#include "backends/ebpf/nodeport_writer.h"

#include <fmt/format.h>
#include <netinet/in.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <stdexcept>

#include "backends/ebpf/maglev.h"

namespace sliceproxy::backends::ebpf {

using proxier::EndpointKey;

NodePortWriter::NodePortWriter(NodePortPrograms& progs, std::vector<proxier::IpAddr> nodeAddresses,
                               uint32_t maglevTableSize, bool directServerReturn,
                               bool masqueradeAll)
    : progs_(progs),
      nodeAddresses_(std::move(nodeAddresses)),
      maglevTableSize_(maglevTableSize),
      directServerReturn_(directServerReturn),
      podsKeepSource_(!masqueradeAll) {}

bool NodePortWriter::sharesTable(const proxier::ServicePortKey& key) const {
  auto a = ports_.find({key, 0}), b = ports_.find({key, 1});
  return a != ports_.end() && b != ports_.end() && a->second.maglev &&
         a->second.maglev == b->second.maglev;
}

size_t NodePortWriter::backendEntries() const {
  size_t n = 0;
  for (const auto& [k, p] : ports_) n += p.ids.size();
  return n;
}

std::string NodePortWriter::sync(const proxier::ServicePortView& v) {
  unshareIfDiverging(v);
  std::string err = syncGroup({v.key(), 0}, planNodePort(v, nodeAddresses_, directServerReturn_));
  if (!err.empty()) {
    err = fmt::format("{}: {}", v.key().str(), err);
  } else if (err = syncGroup({v.key(), 1}, planClusterIpFromOutside(v, podsKeepSource_));
             !err.empty()) {
    err = fmt::format("{} (ClusterIP from outside): {}", v.key().str(), err);
  }
  endSharedUpdate(v.key());
  return err;
}

std::string NodePortWriter::sync(const proxier::ServicePortView& v,
                                 const proxier::ServicePortUpsert& u) {
  const bool endpointsOnly =
      v.active() && !u.created && !u.infoChanged && !u.modesChanged && !u.anyEndpointsChanged;
  unshareIfDiverging(v);
  std::string err;
  for (int g : {0, 1}) {
    const GroupKey key{v.key(), g};
    if (endpointsOnly && syncGroupDelta(key, g == 0 ? v.externalSet() : v.internalSet(), u, err)) {
      if (err.empty()) continue;
    } else {
      err = syncGroup(key, g == 0 ? planNodePort(v, nodeAddresses_, directServerReturn_)
                                  : planClusterIpFromOutside(v, podsKeepSource_));
    }
    if (!err.empty()) {
      err = fmt::format("{}{}: {}", v.key().str(), g == 0 ? "" : " (ClusterIP from outside)", err);
      break;
    }
  }
  endSharedUpdate(v.key());
  return err;
}

namespace {

bool sameKeys(const std::map<EndpointKey, uint32_t>& ids, const std::vector<EndpointKey>& keys) {
  return std::equal(ids.begin(), ids.end(), keys.begin(), keys.end(),
                    [](const auto& a, const EndpointKey& b) { return a.first == b; });
}

}  // namespace

NodePortWriter::Port* NodePortWriter::find(const GroupKey& k) {
  auto it = ports_.find(k);
  return it == ports_.end() ? nullptr : &it->second;
}

void NodePortWriter::unshareIfDiverging(const proxier::ServicePortView& v) {
  if (v.active() && v.internalSet() == v.externalSet()) return;
  Port* p0 = find({v.key(), 0});
  Port* p1 = find({v.key(), 1});
  if (p0 && p1 && p0->maglev && p0->maglev == p1->maglev) {
    // Rare (a traffic policy changed) and O(table): a copy, not a rebuild.
    p1->maglev = std::make_shared<MaglevTable>(*p0->maglev);
  }
}

void NodePortWriter::endSharedUpdate(const proxier::ServicePortKey& key) {
  if (shared_.table) {
    if (Port* p1 = find({key, 1}); p1 && p1->maglev.get() == shared_.table) p1->maglev.reset();
  }
  shared_ = {};
}

std::shared_ptr<MaglevTable> NodePortWriter::sharedTable(const GroupKey& key, uint32_t size,
                                                         const std::vector<EndpointKey>& all) {
  if (key.second != 1) return nullptr;
  const Port* p0 = find(sibling(key));
  if (!p0 || !p0->maglev || p0->maglev->size() != size || !sameKeys(p0->ids, all)) return nullptr;
  return p0->maglev;
}

void NodePortWriter::reshare(const GroupKey& key, Port& p) {
  if (key.second != 1 || !p.maglev) return;
  const Port* p0 = find(sibling(key));
  if (!p0 || !p0->maglev || p0->maglev == p.maglev || p0->maglev->size() != p.maglev->size() ||
      !std::equal(p0->ids.begin(), p0->ids.end(), p.ids.begin(), p.ids.end(),
                  [](const auto& a, const auto& b) { return a.first == b.first; }))
    return;
  // Owners are a function of the set and the size: this group's maps already hold what the
  // other table says; only the member indices differ.
  p.maglev = p0->maglev;
  const MaglevTable& m = *p.maglev;
  p.idOfMember.assign(m.memberSlots(), 0);
  for (uint32_t i = 0; i < m.memberSlots(); ++i) {
    if (auto at = p.ids.find(m.member(i)); at != p.ids.end()) p.idOfMember[i] = at->second;
  }
}

void NodePortWriter::dropTable(const GroupKey& key) {
  Port* p = find(key);
  if (!p || !p->maglev) return;
  if (Port* s = find(sibling(key)); s && s->maglev == p->maglev) s->maglev.reset();
  p->maglev.reset();
}

bool NodePortWriter::syncGroupDelta(const GroupKey& key, uint8_t set,
                                    const proxier::ServicePortUpsert& u, std::string& err) {
  auto it = ports_.find(key);
  if (it == ports_.end() || leftovers_) return false;
  Port& p = it->second;
  if (!p.maglev || p.active < 0) return false;
  std::vector<EndpointKey> removed, added;  // sorted, as u.endpoints is
  for (const auto& c : u.endpoints) {
    const bool was = c.oldSets & set, is = c.newSets & set;
    if (was && !is) removed.push_back(c.key);
    if (!was && is) added.push_back(c.key);
  }
  if (removed.empty() && added.empty()) return true;
  // The plan's cases: no backends left (reject or drop), a table size step, a small table's
  // refill (it renumbers every member), a change of most of the set (a rebuild).
  if (removed.size() >= p.ids.size()) return false;
  const size_t count = p.ids.size() - removed.size() + added.size();
  const uint32_t size = maglevTableSizeFor(maglevTableSize_, count);
  if (size != p.maglev->size() || size < kMaglevIncrementalMinSize ||
      p.maglev->backends() < 2 * removed.size() + added.size() + 1)
    return false;
  for (const EndpointKey& k : removed) {
    if (!p.ids.contains(k)) return false;
  }
  for (const EndpointKey& k : added) {
    if (p.ids.contains(k)) return false;
  }
  try {
    np_frontend value = p.value;
    // Same size, kept up to date, a minority changing: member indices stay (no full set needed).
    const bool deferred = applyBackends(key, p, false, size, nullptr, removed, added, value);
    std::vector<uint32_t> leaving;
    for (const EndpointKey& k : removed) leaving.push_back(p.ids.at(k));
    auto finish = [this, frontends = p.frontends, ranged = p.ranged, value, rangesId = p.rangesId,
                   gone = std::move(leaving)]() {
      setFrontends(frontends, ranged, value, rangesId);
      for (uint32_t id : gone) progs_.removeBackend(id);
    };
    if (deferred) {
      pendingTails_.push_back(std::move(finish));
    } else {
      finish();
    }
    // The mirror last, as in syncGroup: after a failure it still describes the old set, and the
    // next sync finds the same difference.
    for (const EndpointKey& k : removed) p.ids.erase(k);
    p.value = value;
  } catch (const std::exception& e) {
    // As in syncGroup: the next attempt starts the table afresh and writes it whole.
    dropTable(key);
    err = e.what();
  }
  return true;
}

void NodePortWriter::setFrontends(const std::vector<np_fe_key>& frontends,
                                  const std::vector<np_fe_key>& ranged, const np_frontend& value,
                                  uint32_t rangesId) {
  for (const np_fe_key& k : frontends) {
    np_frontend fv = value;
    if (std::binary_search(ranged.begin(), ranged.end(), k)) {
      fv.flags |= NP_F_SOURCE_RANGES;
      fv.ranges_id = rangesId;
    }
    progs_.setFrontend(k, fv);
  }
}

std::string NodePortWriter::remove(const proxier::ServicePortKey& key) {
  for (int g : {0, 1}) {
    if (auto err = removeGroup({key, g}); !err.empty())
      return fmt::format("{}: {}", key.str(), err);
  }
  return "";
}

// The group's Maglev table (of `size` entries; 0: no backends) and its idle map brought to the
// backend set that differs from the group's by `removed` and `added`; `all` is that set (sorted),
// needed only when the table starts afresh or renumbers its members (null: the caller knows it
// does not). value gets the table the frontends switch to. True when the switch waits for the
// batch's install (the frontends' tail must wait too).
bool NodePortWriter::applyBackends(const GroupKey& key, Port& p, bool created, uint32_t size,
                                   const std::vector<EndpointKey>* all,
                                   const std::vector<EndpointKey>& removed,
                                   const std::vector<EndpointKey>& added, np_frontend& value) {
  bool deferred = false;
  if (created || !removed.empty() || !added.empty()) {
    if (size == 0) {
      value.size = 0;    // no lookup: the tables stay for the next backends
      p.maglev.reset();  // and the next backends start a table afresh
    } else {
      std::vector<uint32_t> moved;
      bool renumbered;     // member indices all new: the id of each is looked up again
      bool whole = false;  // the idle table is written whole
      if (!p.maglev || p.maglev->size() != size) {
        if (!all) throw std::logic_error("a new Maglev table needs the whole backend set");
        p.lastMoved.clear();
        if (auto t = sharedTable(key, size, *all)) {
          p.maglev = std::move(t);
          renumbered = whole = true;
        } else {
          p.maglev = std::make_shared<MaglevTable>(size);
          renumbered = p.maglev->update({}, *all, &moved);
        }
      } else if (shared_.table == p.maglev.get() && key.second == 1) {
        // Group 0 made this very change to the table both use: its outcome, for these maps.
        moved = std::move(shared_.moved);
        renumbered = shared_.renumbered;
        whole = shared_.whole;
        shared_ = {};
      } else {
        // Only group 0 changes a shared table (group 1 follows it): group 1 changing alone
        // would put group 0's table ahead of its maps, so it takes a copy first.
        if (key.second == 1 && p.maglev.use_count() > 1) {
          p.maglev = std::make_shared<MaglevTable>(*p.maglev);
        }
        renumbered = p.maglev->update(removed, added, &moved);
        if (p.maglev.use_count() > 1) {
          const bool everything = moved.size() >= size;
          shared_ = {p.maglev.get(), everything ? std::vector<uint32_t>{} : moved, renumbered,
                     everything};
        }
      }
      for (const EndpointKey& k : added) {
        if (p.ids.contains(k)) continue;
        nextBackendId_ = progs_.freeBackendId(nextBackendId_);
        auto at = p.ids.emplace(k, nextBackendId_++).first;
        np_backend b{};
        std::memcpy(b.addr, k.ip.bytes.data(), k.ip.size());
        b.port = htons(k.port);
        b.family = k.ip.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
        progs_.setBackend(at->second, b);
      }
      const MaglevTable& m = *p.maglev;
      p.idOfMember.resize(m.memberSlots());
      if (renumbered) {
        // Every member, by its index in m (freed indices own no entry: skipped).
        for (uint32_t i = 0; i < m.memberSlots(); ++i) {
          if (auto at = p.ids.find(m.member(i)); at != p.ids.end()) p.idOfMember[i] = at->second;
        }
      } else {
        for (const EndpointKey& k : added) p.idOfMember[m.indexOf(k)] = p.ids.at(k);
      }
      const int idle = p.active == 0 ? 1 : 0;
      auto& t = p.tables[idle];
      const bool fresh = !t || t->size() != size;
      if (fresh) {
        t = std::make_unique<MaglevTableMap>(size);
      } else {
        t->open();
      }
      if (fresh || whole || p.lastWhole || moved.size() + p.lastMoved.size() >= size) {
        for (uint32_t i = 0; i < size; ++i) t->set(i, p.idOfMember[m.owner(i)]);
      } else {
        // The idle table is one change behind: what moved then and what moves now.
        for (const auto* entries : {&p.lastMoved, &moved}) {
          for (uint32_t e : *entries) t->set(e, p.idOfMember[m.owner(e)]);
        }
      }
      p.lastMoved = std::move(moved);
      p.lastWhole = whole;
      toSettle_.push_back(key);
      if (fresh && batching_) {
        pendingInstalls_.emplace_back(p.baseTableId + idle, t->fd());
        deferred = true;  // parked by commit(), once installed
      } else {
        if (fresh) progs_.installMaglevTable(p.baseTableId + idle, *t);
        t->park();
      }
      p.active = idle;
      value.table_id = p.baseTableId + idle;
      value.size = size;
    }
  }
  return deferred;
}

std::string NodePortWriter::syncGroup(const GroupKey& key, NodePortPlan plan) {
  if (plan.frontends.empty()) return removeGroup(key);
  try {
    auto [it, created] = ports_.try_emplace(key);
    Port& p = it->second;
    np_frontend value = p.value;
    bool deferred = false;  // the tail below waits for this group's table install
    value.flags = plan.flags;
    value.affinity_timeout = plan.affinityTimeout;
    if (created) {
      p.baseTableId = nextTableId_;
      nextTableId_ += 2;
      value.svc_id = p.baseTableId;  // stable for the group's life: the affinity scope
      if (leftovers_) takeOver(p, value, plan);
    }
    // What came and went, by one pass over both sorted lists: a change costs the backends it
    // touches, not a lookup of each of 100,000.
    std::vector<EndpointKey> removed, added;
    if (created) {
      added = plan.backends;  // ids taken over from a previous run are no change here
    } else {
      auto have = p.ids.begin();
      auto want = plan.backends.begin();
      while (have != p.ids.end() || want != plan.backends.end()) {
        if (want == plan.backends.end() || (have != p.ids.end() && have->first < *want)) {
          removed.push_back((have++)->first);
        } else if (have == p.ids.end() || *want < have->first) {
          added.push_back(*want++);
        } else {
          ++have;
          ++want;
        }
      }
    }
    const uint32_t size =
        plan.backends.empty() ? 0 : maglevTableSizeFor(maglevTableSize_, plan.backends.size());
    deferred = applyBackends(key, p, created, size, &plan.backends, removed, added, value);
    // Source ranges before the frontends that consult them; stale ones after.
    const std::vector<proxier::Cidr> oldRanges = p.ranges;
    if (!plan.sourceRanges.empty()) {
      if (p.rangesId == 0) p.rangesId = nextRangesId_++;
      for (const auto& c : plan.sourceRanges)
        progs_.addSourceRange(p.rangesId, rangeKey(p.rangesId, c));
    }
    // The ids of the backends that left: out of the mirror now, out of the map in the tail.
    // A group new to this run may hold ids taken over for backends the plan no longer has.
    std::vector<uint32_t> leaving;
    if (created) {
      for (auto at = p.ids.begin(); at != p.ids.end();) {
        if (std::binary_search(plan.backends.begin(), plan.backends.end(), at->first)) {
          ++at;
          continue;
        }
        leaving.push_back(at->second);
        at = p.ids.erase(at);
      }
    }
    for (const EndpointKey& k : removed) {
      if (auto at = p.ids.find(k); at != p.ids.end()) {
        leaving.push_back(at->second);
        p.ids.erase(at);
      }
    }
    // After the table they switch to is installed: the frontends, then what the old table or
    // the old plan named and the new one does not.
    auto finish = [this, frontends = plan.frontends, ranged = plan.rangedFrontends,
                   ranges = plan.sourceRanges, oldRanges, oldFrontends = p.frontends, value,
                   rangesId = p.rangesId, gone = std::move(leaving)]() {
      setFrontends(frontends, ranged, value, rangesId);
      for (const auto& c : oldRanges) {
        if (std::find(ranges.begin(), ranges.end(), c) == ranges.end()) {
          progs_.removeSourceRange(rangeKey(rangesId, c));
        }
      }
      for (const np_fe_key& k : oldFrontends) {
        if (!std::binary_search(frontends.begin(), frontends.end(), k)) progs_.removeFrontend(k);
      }
      for (uint32_t id : gone) progs_.removeBackend(id);
    };
    p.ranges = plan.sourceRanges;
    if (p.ranges.empty()) p.rangesId = 0;
    if (deferred) {
      pendingTails_.push_back(std::move(finish));
    } else {
      finish();
    }
    p.frontends = std::move(plan.frontends);
    p.ranged = std::move(plan.rangedFrontends);
    // A new table holds a descriptor until it is installed: a full sync of thousands of
    // frontends installs them in chunks, each chunk's frontends right after it.
    if (pendingInstalls_.size() >= kInstallChunk) flushPending();
    p.value = value;
    reshare(key, p);
    return "";
  } catch (const std::exception& e) {
    // The computed table may be ahead of p.ids and of the maps: the next attempt starts
    // it afresh and writes it whole.
    dropTable(key);
    return e.what();
  }
}

std::string NodePortWriter::removeGroup(const GroupKey& key) {
  auto it = ports_.find(key);
  if (it == ports_.end()) return "";
  try {
    for (const np_fe_key& k : it->second.frontends) progs_.removeFrontend(k);
    progs_.removeMaglevTable(it->second.baseTableId);
    progs_.removeMaglevTable(it->second.baseTableId + 1);
    for (const auto& [e, id] : it->second.ids) progs_.removeBackend(id);
    for (const auto& c : it->second.ranges)
      progs_.removeSourceRange(rangeKey(it->second.rangesId, c));
    ports_.erase(it);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

void NodePortWriter::flushPending() {
  auto installs = std::move(pendingInstalls_);
  auto tails = std::move(pendingTails_);
  pendingInstalls_.clear();
  pendingTails_.clear();
  progs_.installMaglevTables(installs);
  for (auto& [key, port] : ports_) {
    for (auto& t : port.tables) {
      if (t) t->park();
    }
  }
  for (auto& t : tails) t();
}

std::string NodePortWriter::commit() {
  batching_ = false;
  try {
    flushPending();
    // Once the batch is in the kernel: the changes reach the data plane before the runner-ups
    // of the entries they touched are found again (a pass over the backends per entry).
    std::set<const MaglevTable*> settled;  // a table both groups share settles once
    for (const GroupKey& k : toSettle_) {
      if (Port* p = find(k); p && p->maglev && settled.insert(p->maglev.get()).second) {
        p->maglev->settle();
      }
    }
    toSettle_.clear();
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

namespace {

// Every entry of a map, read from userspace (once, at adoption).
template <typename K, typename V, typename F>
void forEachEntry(int fd, F&& f) {
  K key{}, next{};
  for (const K* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0; prev = &key) {
    key = next;
    V value{};
    if (bpf_map_lookup_elem(fd, &key, &value) == 0) f(key, value);
  }
}

}  // namespace

void NodePortWriter::adopt() {
  auto l = std::make_unique<Leftovers>();
  uint32_t maxTable = 0, maxBackend = 0, maxRanges = 0;
  forEachEntry<np_fe_key, np_frontend>(progs_.frontendsFd(),
                                       [&](const np_fe_key& k, const np_frontend& v) {
                                         l->frontends[k] = v;
                                         maxTable = std::max({maxTable, v.table_id, v.svc_id});
                                         maxRanges = std::max(maxRanges, v.ranges_id);
                                       });
  forEachEntry<uint32_t, np_backend>(progs_.backendsFd(), [&](uint32_t id, const np_backend& b) {
    l->backends[id] = b;
    maxBackend = std::max(maxBackend, id);
  });
  forEachEntry<uint32_t, uint32_t>(progs_.maglevFd(), [&](uint32_t id, uint32_t) {
    l->tables.push_back(id);
    maxTable = std::max(maxTable, id);
  });
  forEachEntry<np_range_key, uint8_t>(progs_.srcRangesFd(), [&](const np_range_key& k, uint8_t) {
    if (k.ranges_id == NP_RANGES_LOCAL_PODS) return;  // NodePortPath's, not a service's
    l->ranges.push_back(k);
    maxRanges = std::max(maxRanges, k.ranges_id);
  });
  nextTableId_ = std::max(nextTableId_, maxTable + 1);
  nextBackendId_ = std::max(nextBackendId_, maxBackend + 1);
  nextRangesId_ = std::max(nextRangesId_, maxRanges + 1);
  leftovers_ = std::move(l);
}

void NodePortWriter::takeOver(Port& p, np_frontend& value, const NodePortPlan& plan) {
  for (const np_fe_key& k : plan.frontends) {
    auto it = leftovers_->frontends.find(k);
    if (it == leftovers_->frontends.end()) continue;
    const np_frontend& old = it->second;
    if (leftovers_->claimedScopes.insert(old.svc_id).second) value.svc_id = old.svc_id;
    if (old.size == 0) return;
    // Walked until every backend of the plan has its old id: an unchanged set is found in a
    // few dozen entries, not the table's thousands.
    const std::vector<uint32_t> table = progs_.readMaglevTable(old.table_id);
    std::set<uint32_t> seen;
    size_t matched = 0;
    for (uint32_t id : table) {
      if (matched == plan.backends.size()) break;
      if (!seen.insert(id).second) continue;
      auto b = leftovers_->backends.find(id);
      if (b == leftovers_->backends.end() || leftovers_->claimed.contains(id)) continue;
      EndpointKey e;
      e.ip.family =
          b->second.family == NP_FAMILY_V4 ? proxier::IpFamily::V4 : proxier::IpFamily::V6;
      std::memcpy(e.ip.bytes.data(), b->second.addr, e.ip.size());
      e.port = ntohs(b->second.port);
      if (!std::binary_search(plan.backends.begin(), plan.backends.end(), e) || p.ids.contains(e))
        continue;
      p.ids.emplace(e, id);  // its np_backends entry already holds e
      leftovers_->claimed.insert(id);
      ++matched;
    }
    return;
  }
}

std::string NodePortWriter::finishAdoption() {
  if (!leftovers_) return "";
  try {
    std::set<np_fe_key> now;
    for (const auto& [k, p] : ports_) now.insert(p.frontends.begin(), p.frontends.end());
    // Frontends first: no frontend names a table or backend id once they go.
    for (const auto& [k, v] : leftovers_->frontends) {
      if (!now.contains(k)) progs_.removeFrontend(k);
    }
    progs_.removeMaglevTables(leftovers_->tables);
    for (const auto& [id, b] : leftovers_->backends) {
      if (!leftovers_->claimed.contains(id)) progs_.removeBackend(id);
    }
    for (const auto& r : leftovers_->ranges) progs_.removeSourceRange(r);
    leftovers_.reset();
    return "";
  } catch (const std::exception& e) {
    return std::string("removing what the previous run left: ") + e.what();
  }
}

std::pair<uint32_t, uint32_t> NodePortWriter::tableOf(const proxier::ServicePortKey& key) const {
  auto it = ports_.find({key, 0});
  if (it == ports_.end()) return {0, 0};
  return {it->second.value.table_id, it->second.value.size};
}

}  // namespace sliceproxy::backends::ebpf
