#pragma once
// The main table, `sliceproxy`: what the node does with service traffic apart from load
// balancing it. Masquerading (hairpin and the masquerade mark), loadBalancerSourceRanges
// firewalls, reject or drop for services without usable endpoints, reject for clusterIP ports a
// service does not define. Any backend that load-balances elsewhere (its own nftables tables,
// IPVS) shares it; see README.md in this directory for every chain and set.

#include <cstdint>
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

// Creates the main table's sets, base chains and static chains with their rules, in a table
// `kMainTableName` that exists and is empty. `node` supplies the addresses for
// --nodeport-addresses=primary and the pod CIDR for NodeCIDR detection.
void buildMainTable(Transaction& tx, const NodeFamily& fam, const proxier::NodeContext* node);

}  // namespace sliceproxy::backends::nft
