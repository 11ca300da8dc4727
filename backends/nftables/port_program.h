#pragma once
// What one service port looks like in the kernel: its chains' rules and its frontend elements,
// derived from the node-local view. Pure functions of their inputs, so the backend can tell
// whether anything changed by comparing results.

#include <string>
#include <vector>

#include "backends/nftables/layout.h"
#include "backends/nftnl/elements.h"
#include "backends/nftnl/transaction.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::nft {

// A chain or set in one of the family's tables.
struct ObjRef {
  uint8_t table;  // kMainTable or a service table
  std::string name;
  friend bool operator==(const ObjRef&, const ObjRef&) = default;
};

struct PortChains {
  uint8_t shard = 0;         // the service table holding svc and ext (fw is in the main table)
  std::string svc, ext, fw;  // chain names; ext/fw empty when the port has none
  void appendTo(std::vector<ObjRef>& out) const {
    out.push_back({shard, svc});
    if (!ext.empty()) out.push_back({shard, ext});
    if (!fw.empty()) out.push_back({kMainTable, fw});
  }
};

PortChains chainNames(uint32_t id, uint8_t shard, const proxier::ServicePortInfo& info);

// Endpoint set ids in the endpoints map: two per port, cluster-wide and node-local.
inline uint32_t endpointSetId(uint32_t portId, uint8_t set) {
  return portId * 2 + (set == proxier::epset::kLocal ? 1 : 0);
}

struct ChainInputs {
  uint32_t clusterCount = 0, localCount = 0;
  bool hasAnyEndpoints = false;
  const proxier::Cidr* nodePodCIDR = nullptr;  // for NodeCIDR local detection
  friend bool operator==(const ChainInputs&, const ChainInputs&) = default;
};

// ClientIP affinity, kube-proxy's way, so that `nft list ruleset` can print every rule: each
// endpoint of an affinity port has a chain that records the client in a per-endpoint timeout
// set and DNATs to it, and a map from slot to that chain replaces the endpoints map. The checks
// "was this client sent to endpoint E" live in a chain of their own per endpoint set
// (`affck-<set>`), one rule per endpoint added and deleted by handle, so that an endpoint
// change touches only that endpoint's objects and the slots that moved.
std::string affinityName(uint32_t setId, uint32_t serial);
std::string affinityMapName(uint32_t setId);
std::string affinityCheckName(uint32_t setId);
// Appends "client in set `name` -> goto `name`" to the set's check chain; `handle` receives the
// rule's handle after the commit.
void addAffinityCheckRule(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                          uint32_t setId, const std::string& name, uint64_t* handle);
void addAffinityEndpointRules(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                              const std::string& name, const proxier::EndpointKey& ep,
                              uint32_t timeoutSeconds);
// `userdata`: the set's owner (affinity_carry.h), so a full sync can hand its clients on.
nftnl_set* affinitySet(const FamilyContext& ctx, const std::string& name, uint32_t timeoutSeconds,
                       const std::vector<uint8_t>& userdata);
nftnl_set* affinityMap(const std::string& name);

// Adds the rules of the port's chains (which must exist and be empty) to the transaction.
void addPortRules(Transaction& tx, const FamilyContext& ctx, uint32_t id,
                  const proxier::ServicePortInfo& info, const PortChains& chains,
                  const ChainInputs& in, bool affinity);

// The port's elements in the frontend maps (everything except endpoints), each in its table:
// its service table's dispatch maps, then the main table's policy maps (portPolicyElems()).
std::vector<Elem> frontendElems(const proxier::ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet);

}  // namespace sliceproxy::backends::nft
