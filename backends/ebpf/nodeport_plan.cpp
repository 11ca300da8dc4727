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

NodePortPlan planNodePort(const proxier::ServicePortView& v,
                          const std::vector<IpAddr>& nodeAddresses) {
  NodePortPlan plan;
  if (!v.active()) return plan;
  const proxier::ServicePortInfo& info = *v.info();
  uint8_t proto = 0;
  if (info.key.port.protocol == Protocol::TCP) proto = IPPROTO_TCP;
  if (info.key.port.protocol == Protocol::UDP) proto = IPPROTO_UDP;
  if (proto == 0) return plan;
  const proxier::IpFamily family = info.key.port.family;
  auto add = [&](const IpAddr& ip, uint16_t port) {
    if (ip.family != family || port == 0) return;
    np_fe_key k{};
    std::memcpy(k.addr, ip.bytes.data(), ip.size());
    k.port = htons(port);
    k.proto = proto;
    k.family = ip.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
    plan.frontends.push_back(k);
  };
  if (info.nodePort != 0) {
    for (const IpAddr& ip : nodeAddresses) add(ip, info.nodePort);
  }
  for (const IpAddr& ip : info.externalIPs) add(ip, info.port);
  for (const IpAddr& ip : info.loadBalancerIPs) add(ip, info.port);
  std::sort(plan.frontends.begin(), plan.frontends.end());
  plan.frontends.erase(std::unique(plan.frontends.begin(), plan.frontends.end()),
                       plan.frontends.end());

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
  }
  return plan;
}

}  // namespace sliceproxy::backends::ebpf
