#pragma once
// The main table, `sliceproxy`: what the node does with service traffic apart from load
// balancing it. Masquerading (hairpin and the masquerade mark), loadBalancerSourceRanges
// firewalls, reject or drop for services without usable endpoints, reject for clusterIP ports a
// service does not define. Any backend that load-balances elsewhere (its own nftables tables,
// IPVS) shares it; see README.md in this directory for every chain and set.

#include <cstdint>
#include <optional>
#include <string>

#include "backends/nftnl/elements.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/family.h"
#include "proxier/core/diff.h"

namespace sliceproxy::backends::nft {

inline const std::string kMainTableName = "sliceproxy";
// The main table's id in Elem::table.
inline constexpr uint8_t kMainTable = 0xff;

// Where the no-endpoint verdict maps send a port that has no endpoints at all.
inline constexpr const char* kRejectChain = "reject-chain";

// The main table's named sets and maps, as Elem::set ids. Ids below kFirstMainSet are left to
// the backend's own sets.
enum MainSetId : uint8_t {
  kFirstMainSet = 0x80,
  kClusterIps = kFirstMainSet,  // daddr, to reject ports a service does not define
  kNodePortIps,          // local addresses that accept NodePorts (--nodeport-addresses primary)
  kNoEndpointServices,   // daddr . proto . dport : verdict (reject or drop)
  kNoEndpointNodePorts,  // proto . dport : verdict (reject or drop)
  kFirewallIps,          // daddr . proto . dport : verdict (goto fw- chain)
  kHairpin,              // addr . addr for local endpoints: a pod reaching itself
  kMainSetEnd
};
inline bool isMainSet(uint8_t id) {
  return id >= kFirstMainSet && id < kMainSetEnd;
}
const char* mainSetName(uint8_t id);

// Elements of the reference-counted sets: a backend adds one while any service port uses it.
inline Bytes clusterIpKey(const proxier::IpAddr& a) {
  return Bytes().addr(a);
}
inline Bytes hairpinKey(const proxier::IpAddr& endpoint) {
  return Bytes().addr(endpoint).addr(endpoint);
}

// Which parts of the table a backend needs. The defaults are the nftables backend's table.
struct MainTableParts {
  // The masquerading chains and the hairpin set: their tests rely on conntrack's DNAT status,
  // which an IPVS translation does not set, so IPVS masquerades in a table of its own.
  bool masquerading = true;
  // A backend that load-balances in the input path after the filter hook (IPVS, at priority
  // 98) gets a base chain `filter-input-late` at this priority, after it: a new connection still
  // aimed at a clusterIP there was claimed by no service port, and cluster-ips-check rejects it.
  std::optional<int32_t> lateInputPriority;
};

// Creates the main table's sets, base chains and static chains with their rules, in a table
// `kMainTableName` that exists and is empty. `node` supplies the addresses for
// --nodeport-addresses=primary and the pod CIDR for NodeCIDR detection.
void buildMainTable(Transaction& tx, const NodeFamily& fam, const proxier::NodeContext* node,
                    const MainTableParts& parts = {});

}  // namespace sliceproxy::backends::nft
