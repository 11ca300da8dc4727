#pragma once
// What one service port looks like in the kernel: its chains' rules and its frontend elements,
// derived from the node-local view. Pure functions of their inputs, so the backend can tell
// whether anything changed by comparing results.

#include <optional>
#include <string>
#include <utility>
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

// Most ports need nothing of their own to be load-balanced: no ClientIP affinity, and
// externalTrafficPolicy Cluster (or no external frontends). Such ports have no chains: their
// frontends go to DNAT chains shared by every such port of the table with the same number of
// endpoints (`dnat-<N>`), which pick the endpoint by frontend and random slot in
// frontend-endpoints / nodeport-endpoints. A cold sync of 10,000 services then adds map
// elements only, instead of 10,000 chains and rules (each rule costs the kernel a parse of every
// expression and a search of the table's sets by name: a third of the cold sync). The other
// ports keep chains of their own. The price is a copy of the endpoint set per frontend that uses
// it (a NodePort service: two), so a port whose extra copies would cost more than a chain and a
// rule (about kSharedDnatMaxExtraCopies elements; 100,000 endpoints behind a NodePort: far more)
// keeps chains of its own too. Decided when the port is created, with its endpoint counts then.
// (An endpoint set id looked up by frontend would avoid the copies, but nft 1.0.6 cannot print a
// map's result inside a concatenation: `nft list ruleset` would abort.)
inline constexpr uint64_t kSharedDnatMaxExtraCopies = 16;
bool usesSharedDnat(const proxier::ServicePortInfo& info, uint32_t clusterCount,
                    uint32_t localCount);

enum class SharedDnat : uint8_t {
  Internal,  // clusterIP: DNAT to the internal set
  External,  // externalIPs and load-balancer IPs: masquerade mark, DNAT to the cluster-wide set
  NodePort,  // NodePorts: the same, the set id found by protocol and port
};
std::string sharedDnatChain(SharedDnat kind, uint32_t endpoints);
// The kind and endpoint count of a shared DNAT chain's name; nullopt for any other chain.
std::optional<std::pair<SharedDnat, uint32_t>> parseSharedDnatChain(const std::string& name);
// Where a shared-DNAT port's endpoint set is, slot by slot: (map, key without the slot) per
// frontend that uses the set (`set`: epset::kCluster or kLocal).
std::vector<std::pair<uint8_t, Bytes>> sharedSlotKeys(const proxier::ServicePortInfo& info,
                                                      uint8_t set);
// The one rule of a shared DNAT chain (which must exist and be empty).
void addSharedDnatRule(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                       SharedDnat kind, uint32_t endpoints);

struct PortChains {
  uint8_t shard = 0;         // the service table holding svc and ext (fw is in the main table)
  bool shared = false;       // usesSharedDnat(): no svc or ext chain
  std::string svc, ext, fw;  // chain names; empty when the port has none
  void appendTo(std::vector<ObjRef>& out) const {
    if (!svc.empty()) out.push_back({shard, svc});
    if (!ext.empty()) out.push_back({shard, ext});
    if (!fw.empty()) out.push_back({kMainTable, fw});
  }
};

PortChains chainNames(uint32_t id, uint8_t shard, const proxier::ServicePortInfo& info,
                      bool shared);

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
// its service table's dispatch maps (and, on the shared DNAT chains, the set id maps), then
// the main table's policy maps (portPolicyElems()).
std::vector<Elem> frontendElems(const proxier::ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet);

}  // namespace sliceproxy::backends::nft
