#include "proxier/model/endpoint_slice.h"
#include "proxier/model/service.h"

namespace sliceproxy::proxier {

const char* protocolName(Protocol p) {
  switch (p) {
    case Protocol::TCP:
      return "TCP";
    case Protocol::UDP:
      return "UDP";
    case Protocol::SCTP:
      return "SCTP";
  }
  return "?";
}

const char* serviceTypeName(ServiceType t) {
  switch (t) {
    case ServiceType::ClusterIP:
      return "ClusterIP";
    case ServiceType::NodePort:
      return "NodePort";
    case ServiceType::LoadBalancer:
      return "LoadBalancer";
    case ServiceType::ExternalName:
      return "ExternalName";
  }
  return "?";
}

const char* trafficPolicyName(TrafficPolicy p) {
  return p == TrafficPolicy::Local ? "Local" : "Cluster";
}

std::optional<Protocol> parseProtocol(std::string_view s) {
  if (s == "TCP") return Protocol::TCP;
  if (s == "UDP") return Protocol::UDP;
  if (s == "SCTP") return Protocol::SCTP;
  return std::nullopt;
}

std::optional<ServiceType> parseServiceType(std::string_view s) {
  if (s == "ClusterIP") return ServiceType::ClusterIP;
  if (s == "NodePort") return ServiceType::NodePort;
  if (s == "LoadBalancer") return ServiceType::LoadBalancer;
  if (s == "ExternalName") return ServiceType::ExternalName;
  return std::nullopt;
}

std::optional<TrafficPolicy> parseTrafficPolicy(std::string_view s) {
  if (s == "Cluster") return TrafficPolicy::Cluster;
  if (s == "Local") return TrafficPolicy::Local;
  return std::nullopt;
}

std::optional<SessionAffinity> parseSessionAffinity(std::string_view s) {
  if (s == "None") return SessionAffinity::None;
  if (s == "ClientIP") return SessionAffinity::ClientIP;
  return std::nullopt;
}

std::optional<LoadBalancerIpMode> parseIpMode(std::string_view s) {
  if (s == "VIP") return LoadBalancerIpMode::VIP;
  if (s == "Proxy") return LoadBalancerIpMode::Proxy;
  return std::nullopt;
}

std::optional<AddressType> parseAddressType(std::string_view s) {
  if (s == "IPv4") return AddressType::IPv4;
  if (s == "IPv6") return AddressType::IPv6;
  if (s == "FQDN") return AddressType::FQDN;
  return std::nullopt;
}

}  // namespace sliceproxy::proxier
