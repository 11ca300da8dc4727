#include "proxier/core/service_port.h"

#include <fmt/format.h>

#include <algorithm>

namespace sliceproxy::proxier {

std::string ServicePortKey::str() const {
  return fmt::format("{}:{}/{}/{}", service.str(), port.portName, protocolName(port.protocol),
                     familyName(port.family));
}

namespace {

template <typename T, typename Addr>
std::vector<T> ofFamily(const std::vector<T>& in, IpFamily family, Addr addr) {
  std::vector<T> out;
  for (const auto& v : in) {
    if (addr(v).family == family) out.push_back(v);
  }
  return out;
}

}  // namespace

std::vector<ServicePortInfoPtr> buildServicePortInfos(const Service& svc) {
  std::vector<ServicePortInfoPtr> out;
  const bool exposesNodePorts =
      svc.type == ServiceType::NodePort || svc.type == ServiceType::LoadBalancer;
  for (IpFamily family : {IpFamily::V4, IpFamily::V6}) {
    const IpAddr* clusterIP = nullptr;
    for (const auto& ip : svc.clusterIPs) {
      if (ip.family == family) {
        clusterIP = &ip;
        break;
      }
    }
    // Like kube-proxy's per-family proxier, a family without a clusterIP has no service here.
    if (!clusterIP) continue;

    auto externalIPs = ofFamily(svc.externalIPs, family, [](const IpAddr& a) { return a; });
    std::vector<IpAddr> lbIPs;
    if (svc.type == ServiceType::LoadBalancer) {
      for (const auto& ing : svc.loadBalancerIngress) {
        if (ing.ip && ing.ip->family == family && ing.ipMode == LoadBalancerIpMode::VIP) {
          lbIPs.push_back(*ing.ip);
        }
      }
    }
    auto ranges = svc.type == ServiceType::LoadBalancer
                      ? ofFamily(svc.loadBalancerSourceRanges, family,
                                 [](const Cidr& c) -> const IpAddr& { return c.addr; })
                      : std::vector<Cidr>{};
    const bool externalLocal = svc.externalTrafficPolicy == TrafficPolicy::Local &&
                               (exposesNodePorts || !svc.externalIPs.empty());

    std::vector<PortGroupKey> seen;
    for (const auto& p : svc.ports) {
      PortGroupKey group{p.name, p.protocol, family};
      if (std::find(seen.begin(), seen.end(), group) != seen.end()) continue;
      seen.push_back(group);
      auto info = std::make_shared<ServicePortInfo>();
      info->key = {svc.key, std::move(group)};
      info->type = svc.type;
      info->clusterIP = *clusterIP;
      info->port = p.port;
      info->nodePort = exposesNodePorts ? p.nodePort : 0;
      info->targetPort = p.targetPort;
      info->externalIPs = externalIPs;
      info->loadBalancerIPs = lbIPs;
      info->loadBalancerSourceRanges = ranges;
      info->internalPolicyLocal = svc.internalTrafficPolicy == TrafficPolicy::Local;
      info->externalPolicyLocal = externalLocal;
      info->sessionAffinity = svc.sessionAffinity;
      info->affinityTimeoutSeconds = svc.affinityTimeoutSeconds;
      info->healthCheckNodePort = externalLocal ? svc.healthCheckNodePort : 0;
      info->trafficDistribution = svc.trafficDistribution;
      out.push_back(std::move(info));
    }
  }
  return out;
}

}  // namespace sliceproxy::proxier
