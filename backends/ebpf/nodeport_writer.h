#pragma once
// Keeps the packet-path load balancer's maps equal to the proxier's view, one service port at a
// time: a mirror of what it wrote, so an unchanged frontend or table costs nothing and a change
// touches only its own entries. Write order keeps every reader consistent: backend entries
// before the table that names them, the table (the port's idle one of two, written through
// mmap, replaced only when its size changes) before the frontends that switch to it, frontends
// removed before the tables and backends they used. A reader that still walks the idle table
// when the next sync rewrites it would have to outlive a whole sync interval.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backends/ebpf/maglev.h"
#include "backends/ebpf/nodeport_loader.h"
#include "backends/ebpf/nodeport_plan.h"
#include "proxier/core/diff.h"

namespace sliceproxy::backends::ebpf {

class NodePortWriter {
 public:
  NodePortWriter(NodePortPrograms& progs, std::vector<proxier::IpAddr> nodeAddresses,
                 uint32_t maglevTableSize, bool directServerReturn = false,
                 bool masqueradeAll = false);
  // Upserts the port; returns "" or an error naming the service port and the map.
  std::string sync(const proxier::ServicePortView& v);
  // The same for a sync's upsert: when only endpoints changed (frontends and policy as they
  // were), a group's table follows the endpoints that entered or left its set in u.endpoints,
  // without a pass over the rest (one change at 100,000 endpoints: no plan of 100,000 keys).
  std::string sync(const proxier::ServicePortView& v, const proxier::ServicePortUpsert& u);
  std::string remove(const proxier::ServicePortKey& key);
  // Between begin() and commit(), tables that need a new inner map are installed together at
  // commit (one RCU wait for all instead of ~10 ms each: a cold load of 1000 NodePorts took
  // 20 s), and what must follow each install -- the frontends switching to it, then the
  // removal of what the old table named -- waits for it; until then the group's frontends keep
  // their old table. Without begin(), each sync installs at once.
  void begin() { batching_ = true; }
  std::string commit();
  // The maps were pinned by a previous run: reads what its frontends use, so that each port's
  // first sync here keeps its backend ids (established UDP flows stay on their backend, ClientIP
  // affinity entries stay valid) and affinity scope, and numbers new tables, backend ids and
  // source ranges above the old ones. Until finishAdoption() the old entries serve as they are.
  // Throws naming the map.
  void adopt();
  bool adopting() const { return leftovers_ != nullptr; }
  // After the first full sync (its batch committed): deletes what the previous run wrote and
  // this one did not take over (frontends no longer planned, its tables, backend ids and
  // source ranges). "" or the error.
  std::string finishAdoption();
  // The addresses NodePorts answer on from now on; ports are re-planned at their next sync.
  void setNodeAddresses(std::vector<proxier::IpAddr> a) { nodeAddresses_ = std::move(a); }

  // For tests: the table id and size a port's frontends use (0, 0 when none).
  std::pair<uint32_t, uint32_t> tableOf(const proxier::ServicePortKey& key) const;
  size_t backendEntries() const;
  // For tests: the port's two groups compute one Maglev table.
  bool sharesTable(const proxier::ServicePortKey& key) const;

 private:
  struct Port {
    // Two tables (ids base, base + 1): the frontends point at tables[active]; a change is
    // written into the other one, which the frontends then point at.
    uint32_t baseTableId = 0;
    int active = -1;  // none yet
    std::unique_ptr<MaglevTableMap> tables[2];
    // The lookup table as computed (kept up to date entry by entry), and the entries the last
    // change moved: the other table is one change behind, so a change writes those and its own.
    // Shared with the port's other group while both serve the same set of the same table
    // size (eTP and iTP alike: NodePort and ClusterIP from outside pick among the same
    // backends), so a change computes the table once: half the time and memory at 100,000.
    std::shared_ptr<MaglevTable> maglev;
    std::vector<uint32_t> lastMoved;
    bool lastWhole = false;            // the last change rewrote every entry (lastMoved left empty)
    std::vector<uint32_t> idOfMember;  // backend id by MaglevTable member index
    std::vector<np_fe_key> frontends;
    std::vector<np_fe_key> ranged;  // those of the frontends guarded by source ranges
    np_frontend value{};
    // The port's own backend ids: the program tells a UDP flow's backend has left this port
    // by its id missing, so ids are per port and never reused. Its keys are the backend set
    // (no sorted copy beside it: at 100,000 each change moved half of one in memory).
    std::map<proxier::EndpointKey, uint32_t> ids;
    uint32_t rangesId = 0;  // non-zero while the port has source ranges
    std::vector<proxier::Cidr> ranges;
  };

  // What a previous run left in the pinned maps (adopt()).
  struct Leftovers {
    std::map<np_fe_key, np_frontend> frontends;
    std::map<uint32_t, np_backend> backends;
    std::vector<uint32_t> tables;
    std::vector<np_range_key> ranges;
    std::set<uint32_t> claimed, claimedScopes;  // backend ids and svc_ids taken over
  };
  // A group new to this run whose frontends a previous run served: its backend ids (by
  // address and port) and affinity scope.
  void takeOver(Port& p, np_frontend& value, const NodePortPlan& plan);

  NodePortPrograms& progs_;
  std::vector<proxier::IpAddr> nodeAddresses_;
  uint32_t maglevTableSize_;
  bool directServerReturn_;
  bool podsKeepSource_;  // not --masquerade-all: NP_F_POD_KEEPS_SOURCE on ClusterIP frontends
  // Each service port has up to two groups of frontends, each with its own tables: 0, reached
  // from outside (the external set); 1, its ClusterIP reached from outside (the internal set).
  using GroupKey = std::pair<proxier::ServicePortKey, int>;
  std::string syncGroup(const GroupKey& key, NodePortPlan plan);
  // False when the change needs the plan (see sync(v, u)); err set when it failed.
  bool syncGroupDelta(const GroupKey& key, uint8_t set, const proxier::ServicePortUpsert& u,
                      std::string& err);
  // Points the frontends at value's table; those in `ranged` get the port's source ranges.
  void setFrontends(const std::vector<np_fe_key>& frontends, const std::vector<np_fe_key>& ranged,
                    const np_frontend& value, uint32_t rangesId);
  bool applyBackends(const GroupKey& key, Port& p, bool created, uint32_t size,
                     const std::vector<proxier::EndpointKey>* all,
                     const std::vector<proxier::EndpointKey>& removed,
                     const std::vector<proxier::EndpointKey>& added, np_frontend& value);
  std::string removeGroup(const GroupKey& key);
  static GroupKey sibling(const GroupKey& k) { return {k.first, 1 - k.second}; }
  Port* find(const GroupKey& k);
  // Before a sync touches group 0: a table shared with group 1 is copied for group 1 when the
  // two groups' sets no longer agree (the traffic policies differ now).
  void unshareIfDiverging(const proxier::ServicePortView& v);
  // After a sync: group 1 that did not take the shared table's last update (it failed) has
  // maps that no longer follow the table: it starts afresh at its next sync.
  void endSharedUpdate(const proxier::ServicePortKey& key);
  // The table group 1 takes over instead of building its own: group 0's, when it holds the
  // same set at the same size (group 0 is synced first, so it is already this sync's).
  std::shared_ptr<MaglevTable> sharedTable(const GroupKey& key, uint32_t size,
                                           const std::vector<proxier::EndpointKey>& all);
  // After group 1's full sync: takes group 0's table again when the sets agree once more
  // (a traffic policy back as it was), so the next change is computed once.
  void reshare(const GroupKey& key, Port& p);
  // Forgets a group's computed table (after a failure: it may be ahead of the maps) and, when
  // group 1 shared it, group 1's too.
  void dropTable(const GroupKey& key);
  std::map<GroupKey, Port> ports_;
  bool batching_ = false;
  std::vector<GroupKey> toSettle_;  // ports whose Maglev tables settle() at commit()
  // Group 0's last update of a table it shares: group 1 applies the same change to its own
  // maps from this instead of updating the table a second time.
  struct SharedUpdate {
    const MaglevTable* table = nullptr;
    std::vector<uint32_t> moved;
    bool renumbered = false, whole = false;
  };
  SharedUpdate shared_;
  std::vector<std::pair<uint32_t, int>> pendingInstalls_;  // table id, inner map fd
  static constexpr size_t kInstallChunk = 512;
  // Installs the pending tables, parks every open one, then runs the frontends' tails.
  void flushPending();
  std::vector<std::function<void()>> pendingTails_;
  uint32_t nextTableId_ = 1, nextBackendId_ = 1, nextRangesId_ = 1;
  std::unique_ptr<Leftovers> leftovers_;
};

}  // namespace sliceproxy::backends::ebpf
