#pragma once
// The fixed shape of sliceproxy's tables, per address family: the node policy's main table
// (backends/node_policy/main_table.h) and K service tables, each
// holding the frontend maps and chains of a share of the service ports with their endpoints.
// The number of chains never grows with endpoints (endpoints live in maps), and only ports with
// ClientIP affinity or externalTrafficPolicy Local have chains of their own (port_program.h).
// Services are spread over tables because the kernel validates a table's whole jump graph whenever
// a transaction adds a jump, a goto or a NAT rule to it (about 2 us per chain): with one table,
// adding one service to 10,000 cost 20 ms.

#include <cstdint>
#include <string>

#include "backends/nftnl/transaction.h"
#include "backends/node_policy/family.h"
#include "backends/node_policy/main_table.h"
#include "proxier/config/network_config.h"
#include "proxier/core/diff.h"

namespace sliceproxy::backends::nft {

// Which table an object lives in: the main table (kMainTable), or service table `shard`.
inline constexpr uint32_t kMaxServiceTables = 64;
std::string serviceTableName(uint32_t shard);
inline std::string tableName(uint8_t table) {
  return table == kMainTable ? kMainTableName : serviceTableName(table);
}
// Tables a full sync replaces: the main table and every service table of a previous run, of any
// layout. (The flow record, sliceproxy-flows, survives full syncs; cleanup removes it too.)
bool isOwnTable(const std::string& name);

// Service tables for `ports` service ports at a full sync: about kPortsPerServiceTable ports
// each, a power of two. Fewer tables cost the control plane (adding a service validates its
// table's whole graph: ~1.5 ms at 4,000 ports); more cost every new connection (each service
// table hooks nat prerouting and output).
inline constexpr size_t kPortsPerServiceTable = 4096;
uint32_t serviceTablesFor(size_t ports);
// Beyond this many ports per service table on average, the next sync should be a full one that
// spreads the ports over more tables.
inline constexpr size_t kPortsPerServiceTableLimit = 2 * kPortsPerServiceTable;

// The service tables' named sets and maps, as Elem::set ids; the main table's follow from
// kFirstMainSet (main_table.h). A service table also has the main table's kNodePortIps.
enum SetId : uint8_t {
  kServiceIps,        // daddr . proto . dport : verdict (goto svc-/ext- chain)
  kServiceNodePorts,  // proto . dport : verdict (goto ext- chain)
  kEndpoints,         // endpoint set id . slot : addr . port, sharded (see below)
  // proto . dport: service-nodeports' keys as a plain set, for the membership test that comes
  // before the NodePort address checks. Linux 6.1 (Debian 12) refuses a lookup in a map that
  // does not take the value (EINVAL); newer kernels accept it.
  kServiceNodePortKeys,
  // The endpoints of ports on the shared DNAT chains (usesSharedDnat, port_program.h), keyed by
  // frontend and slot, one copy per frontend: the frontend is all a shared chain knows.
  kFrontendEndpoints,  // daddr . proto . dport . slot : addr . port
  kNodePortEndpoints,  // proto . dport . slot : addr . port
  kServiceSetCount
};
static_assert(static_cast<uint8_t>(kServiceSetCount) <= static_cast<uint8_t>(kFirstMainSet));

// The name of any set: a service table's or the main table's.
const char* setName(uint8_t id);

// The kernel validates a map's every element each time a rule binds it, and every binding each
// time an element is added, so one endpoints map shared by 10,000 service rules costs
// bindings x elements. Sharding by endpoint set keeps both factors small: 256 endpoints maps in
// each service table (the most a one-byte map index names; 10,000 services bind about ten
// rules to each).
inline constexpr uint32_t kEndpointMapsPerTable = 256;
std::string elemSetName(uint8_t set, uint8_t part);

struct FamilyContext : NodeFamily {
  uint32_t serviceTables = 1;  // chosen at each full sync
  uint32_t endpointMaps() const { return kEndpointMapsPerTable; }
  // Endpoints maps per table for sizing and accounting: the sharded ones, then
  // frontend-endpoints and nodeport-endpoints.
  uint32_t mapsPerTable() const { return endpointMaps() + 2; }
  uint32_t mapSlot(uint8_t set, uint8_t part) const {
    return set == kFrontendEndpoints   ? endpointMaps()
           : set == kNodePortEndpoints ? endpointMaps() + 1
                                       : part;
  }
  uint32_t allEndpointMaps() const { return serviceTables * mapsPerTable(); }
  // Which of its table's endpoints maps holds endpoint set `setId`. Hashed: the ids that land
  // in one service table follow the tables' round-robin, so their low bits are not spread.
  uint8_t endpointMap(uint32_t setId) const {
    return static_cast<uint8_t>(((setId * 2654435761u) >> 16) % endpointMaps());
  }
};

// An endpoints map that a full sync fills with many elements is created with a size: the kernel
// then picks a hash table of fixed width instead of one that keeps resizing while the elements
// go in (a third of a 100,000-endpoint cold sync went into resizing). The size is also a hard
// limit, so it leaves room to double; a change that would overflow it asks for a full sync.
// Smaller maps stay unsized: they grow without limit and cost little to fill, and a rule that
// binds a map makes the kernel walk it, which for a sized map means every bucket of its size.
inline constexpr uint32_t kSizedEndpointMapMin = 2048;
uint32_t endpointMapSize(size_t elements);  // 0: unsized

// Creates service table `shard` (which must not exist) with its maps and dispatch chains.
// `mapSizes`: per endpoints map of this table (mapsPerTable() of them), its size (0: unsized).
void buildServiceTable(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node,
                       uint8_t shard, const uint32_t* mapSizes);

}  // namespace sliceproxy::backends::nft
