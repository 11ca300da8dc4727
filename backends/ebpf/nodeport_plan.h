#pragma once
// What the packet-path load balancer must hold for one service port, translated from the
// proxier's node-local view (a pure function, no kernel): its frontends reached from outside
// the node (each node address x nodePort, each externalIP and LoadBalancer address x port),
// what to do with them (SNAT for eTP Cluster, reject with no endpoints anywhere, drop with none
// in the external set), and which endpoints its Maglev table spreads new flows over. Every one
// of these choices was made by the proxier (traffic policy, topology, terminating fallback);
// this only encodes them.

#include <vector>

#include "nodeport_lb_maps.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::ebpf {

struct NodePortPlan {
  std::vector<np_fe_key> frontends;            // sorted bytewise, no duplicates
  uint32_t flags = 0;                          // NP_F_*, the same for every frontend
  uint32_t affinityTimeout = 0;                // seconds of ClientIP affinity; 0: none
  std::vector<proxier::EndpointKey> backends;  // the external set, sorted
  // loadBalancerSourceRanges of this family, and the frontends they guard (the LB addresses).
  std::vector<proxier::Cidr> sourceRanges;
  std::vector<np_fe_key> rangedFrontends;  // sorted
};

// The service's ClusterIP x port reached in the packet path (a packet that arrives on a
// --devices interface: no socket of this node sent it, or the socket programs left it, see
// sp_hairpin): the internal set, SNATed so the reply comes back through this node (kube-proxy
// masquerades traffic to a ClusterIP from outside the cluster); no endpoints anywhere: reject;
// none in the internal set: drop. podsKeepSource (all but --masquerade-all): a pod of this
// node keeps its address unless it lands on itself (NP_F_POD_KEEPS_SOURCE).
NodePortPlan planClusterIpFromOutside(const proxier::ServicePortView& v,
                                      bool podsKeepSource = true);

// The trie key that admits cidr's clients to the frontends of rangesId.
np_range_key rangeKey(uint32_t rangesId, const proxier::Cidr& cidr);

// nodeAddresses: this node's addresses that accept NodePorts (other families are ignored).
// SCTP ports and inactive views get an empty plan: the program translates TCP and UDP only.
// dsr (--enable-dsr): eTP Cluster frontends get NP_F_DSR besides NP_F_SNAT.
NodePortPlan planNodePort(const proxier::ServicePortView& v,
                          const std::vector<proxier::IpAddr>& nodeAddresses, bool dsr = false);

}  // namespace sliceproxy::backends::ebpf

// Bytewise, as the kernel compares keys; global so the standard algorithms find them.
bool operator==(const np_fe_key& a, const np_fe_key& b);
bool operator<(const np_fe_key& a, const np_fe_key& b);
