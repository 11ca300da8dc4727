#pragma once
// The fixed shape of sliceproxy's table, one per address family. The number of chains grows
// with service ports only (one or two each, plus one per firewalled LoadBalancer port), never
// with endpoints: endpoints live in one map, so the kernel's validation of the jump graph does
// not grow with them.

#include <cstdint>
#include <string>

#include "backends/nftables/transaction.h"
#include "proxier/diff.h"
#include "proxier/network_config.h"

namespace sliceproxy::backends::nft {

inline const std::string kTable = "sliceproxy";

// Named sets and maps; Elem::set indexes this list.
enum SetId : uint8_t {
  kServiceIps,           // daddr . proto . dport : verdict (goto svc-/ext- chain)
  kServiceNodePorts,     // proto . dport : verdict (goto ext- chain)
  kClusterIps,           // daddr, to reject ports a service does not define
  kNodePortIps,          // local addresses that accept NodePorts (only with --nodeport-addresses)
  kNoEndpointServices,   // daddr . proto . dport : verdict (reject or drop)
  kNoEndpointNodePorts,  // proto . dport : verdict (reject or drop)
  kFirewallIps,          // daddr . proto . dport : verdict (goto fw- chain)
  kEndpoints,            // endpoint set id . slot : addr . port, sharded (see below)
  kHairpin,              // addr . addr for local endpoints: a pod reaching itself
  kSetCount
};

const char* setName(uint8_t id);

// The kernel validates a map's every element each time a rule binds it, and every binding each
// time an element is added, so one endpoints map shared by 10,000 service rules costs
// bindings x elements. Sharding by endpoint set keeps both factors small.
inline constexpr uint32_t kEndpointShards = 256;
inline uint8_t endpointShard(uint32_t endpointSetId) {
  return static_cast<uint8_t>(endpointSetId % kEndpointShards);
}
std::string elemSetName(uint8_t set, uint8_t shard);

struct FamilyContext {
  proxier::IpFamily family;
  uint16_t nfproto;  // NFPROTO_IPV4 / NFPROTO_IPV6
  const proxier::NetworkConfig* net;
  uint32_t addrLen() const { return family == proxier::IpFamily::V4 ? 4 : 16; }
  uint32_t addrWords() const { return addrLen() / 4; }
};

// Creates the table's sets, base chains and static chains with their rules. `node` supplies
// the addresses for --nodeport-addresses=primary and the pod CIDR for NodeCIDR detection.
void buildSkeleton(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node);

}  // namespace sliceproxy::backends::nft
