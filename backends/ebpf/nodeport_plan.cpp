#include "backends/ebpf/nodeport_plan.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

bool operator==(const np_fe_key& a, const np_fe_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}
bool operator<(const np_fe_key& a, const np_fe_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) < 0;
}

namespace sliceproxy::backends::ebpf {

using proxier::IpAddr;
using proxier::Protocol;

np_range_key rangeKey(uint32_t rangesId, const proxier::Cidr& cidr) {
  np_range_key k{};
  k.prefixlen = NP_RANGE_FIXED_BITS + cidr.prefixLen;
  k.ranges_id = rangesId;
  k.family = cidr.addr.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
  std::memcpy(k.addr, cidr.addr.bytes.data(), cidr.addr.size());
  return k;
}

NodePortPlan planNodePort(const proxier::ServicePortView& v,
                          const std::vector<IpAddr>& nodeAddresses, bool dsr) {
  NodePortPlan plan;
  if (!v.active()) return plan;
  const proxier::ServicePortInfo& info = *v.info();
  uint8_t proto = 0;
  if (info.key.port.protocol == Protocol::TCP) proto = IPPROTO_TCP;
  if (info.key.port.protocol == Protocol::UDP) proto = IPPROTO_UDP;
  if (proto == 0) return plan;
  const proxier::IpFamily family = info.key.port.family;
  auto add = [&](const IpAddr& ip, uint16_t port, bool ranged = false) {
    if (ip.family != family || port == 0) return;
    np_fe_key k{};
    std::memcpy(k.addr, ip.bytes.data(), ip.size());
    k.port = htons(port);
    k.proto = proto;
    k.family = ip.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
    plan.frontends.push_back(k);
    if (ranged) plan.rangedFrontends.push_back(k);
  };
  for (const auto& c : info.loadBalancerSourceRanges) {
    if (c.addr.family == family) plan.sourceRanges.push_back(c);
  }
  if (info.nodePort != 0) {
    for (const IpAddr& ip : nodeAddresses) add(ip, info.nodePort);
  }
  for (const IpAddr& ip : info.externalIPs) add(ip, info.port);
  for (const IpAddr& ip : info.loadBalancerIPs) add(ip, info.port, !plan.sourceRanges.empty());
  std::sort(plan.rangedFrontends.begin(), plan.rangedFrontends.end());
  plan.rangedFrontends.erase(std::unique(plan.rangedFrontends.begin(), plan.rangedFrontends.end()),
                             plan.rangedFrontends.end());
  std::sort(plan.frontends.begin(), plan.frontends.end());
  plan.frontends.erase(std::unique(plan.frontends.begin(), plan.frontends.end()),
                       plan.frontends.end());
  // A ClusterIP-only port has nothing here: no pass over (and sort of) its endpoints, which at
  // 100,000 took ~35 ms of every change.
  if (plan.frontends.empty()) return {};

  if (info.sessionAffinity == proxier::SessionAffinity::ClientIP) {
    plan.affinityTimeout = info.affinityTimeoutSeconds;
  }
  const uint8_t set = v.externalSet();
  for (const proxier::MergedEndpoint* e : v.sortedEndpoints()) {
    if (e->sets & set) plan.backends.push_back(e->key);
  }
  if (!v.hasAnyEndpoints()) {
    plan.flags = NP_F_REJECT;  // no endpoints anywhere: kube-proxy rejects
    plan.backends.clear();
  } else if (plan.backends.empty()) {
    plan.flags = NP_F_DROP;  // eTP Local with endpoints on other nodes only: kube-proxy drops
  } else if (set == proxier::epset::kCluster) {
    plan.flags = NP_F_SNAT;  // eTP Cluster: masqueraded, so the reply returns through this node
    if (dsr) plan.flags |= NP_F_DSR;  // ... unless the backend's node answers the client itself
  }
  return plan;
}

NodePortPlan planClusterIpFromOutside(const proxier::ServicePortView& v, bool podsKeepSource) {
  NodePortPlan plan;
  if (!v.active()) return plan;
  const proxier::ServicePortInfo& info = *v.info();
  uint8_t proto = 0;
  if (info.key.port.protocol == Protocol::TCP) proto = IPPROTO_TCP;
  if (info.key.port.protocol == Protocol::UDP) proto = IPPROTO_UDP;
  if (proto == 0 || info.clusterIP.family != info.key.port.family) return plan;
  np_fe_key k{};
  std::memcpy(k.addr, info.clusterIP.bytes.data(), info.clusterIP.size());
  k.port = htons(info.port);
  k.proto = proto;
  k.family = info.clusterIP.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
  plan.frontends.push_back(k);
  if (info.sessionAffinity == proxier::SessionAffinity::ClientIP) {
    plan.affinityTimeout = info.affinityTimeoutSeconds;
  }
  const uint8_t set = v.internalSet();
  for (const proxier::MergedEndpoint* e : v.sortedEndpoints()) {
    if (e->sets & set) plan.backends.push_back(e->key);
  }
  if (!v.hasAnyEndpoints()) {
    plan.flags = NP_F_REJECT;
    plan.backends.clear();
  } else if (plan.backends.empty()) {
    plan.flags = NP_F_DROP;
  } else {
    plan.flags = NP_F_SNAT | (podsKeepSource ? NP_F_POD_KEEPS_SOURCE : 0);
  }
  return plan;
}

}  // namespace sliceproxy::backends::ebpf
