#pragma once
// A service port as one address family's data plane sees it: kube-proxy runs one proxier per
// family, and so does every decision here, so a dual-stack service yields two service ports.

#include <memory>
#include <string>
#include <vector>

#include "proxier/model/service.h"

namespace sliceproxy::proxier {

// Identifies the endpoints of one port within a service: the slice port name + protocol, and the
// slice address family. A Service port with the same name and protocol uses exactly these.
struct PortGroupKey {
  std::string portName;
  Protocol protocol = Protocol::TCP;
  IpFamily family = IpFamily::V4;
  friend bool operator==(const PortGroupKey&, const PortGroupKey&) = default;
  friend auto operator<=>(const PortGroupKey&, const PortGroupKey&) = default;
};

struct ServicePortKey {
  ObjectKey service;
  PortGroupKey port;
  // ns/name:port/TCP/IPv4, the spelling used in logs, JSON output and explain.
  std::string str() const;
  friend bool operator==(const ServicePortKey&, const ServicePortKey&) = default;
  friend auto operator<=>(const ServicePortKey&, const ServicePortKey&) = default;
};

// Everything about a service port except its endpoints; rebuilt only when the Service changes.
struct ServicePortInfo {
  ServicePortKey key;
  ServiceType type = ServiceType::ClusterIP;
  IpAddr clusterIP;
  uint16_t port = 0;
  uint16_t nodePort = 0;
  IntOrString targetPort;
  std::vector<IpAddr> externalIPs;             // this family only
  std::vector<IpAddr> loadBalancerIPs;         // status ingress IPs of this family with ipMode VIP
  std::vector<Cidr> loadBalancerSourceRanges;  // this family only
  bool internalPolicyLocal = false;
  // Local only when the service is of a type that accepts external traffic, as kube-proxy's
  // ExternalPolicyLocal: eTP on a ClusterIP service without externalIPs means nothing.
  bool externalPolicyLocal = false;
  SessionAffinity sessionAffinity = SessionAffinity::None;
  uint32_t affinityTimeoutSeconds = kDefaultAffinityTimeoutSeconds;
  uint16_t healthCheckNodePort = 0;
  std::string trafficDistribution;

  bool externallyAccessible() const {
    return nodePort != 0 || !loadBalancerIPs.empty() || !externalIPs.empty();
  }
  // Cluster endpoints are needed for internal traffic under iTP=Cluster, and for any externally
  // accessible service even with eTP=Local, because traffic from pods and the node itself to an
  // external address is short-circuited to the cluster-wide set.
  bool usesClusterEndpoints() const { return !internalPolicyLocal || externallyAccessible(); }
  bool usesLocalEndpoints() const {
    return internalPolicyLocal || (externalPolicyLocal && externallyAccessible());
  }

  friend bool operator==(const ServicePortInfo&, const ServicePortInfo&) = default;
};

using ServicePortInfoPtr = std::shared_ptr<const ServicePortInfo>;

// The service ports of one Service in every family it has a clusterIP for. Ports repeating a
// name+protocol pair already seen are dropped (the API server forbids them).
std::vector<ServicePortInfoPtr> buildServicePortInfos(const Service& svc);

}  // namespace sliceproxy::proxier
