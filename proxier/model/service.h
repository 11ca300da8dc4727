#pragma once
// The Service fields a service proxy reads, in binary form.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"
#include "proxier/model/labels.h"
#include "proxier/model/object_key.h"
#include "proxier/model/skipped_value.h"

namespace sliceproxy::proxier {

enum class Protocol : uint8_t { TCP, UDP, SCTP };
enum class ServiceType : uint8_t { ClusterIP, NodePort, LoadBalancer, ExternalName };
enum class TrafficPolicy : uint8_t { Cluster, Local };
enum class SessionAffinity : uint8_t { None, ClientIP };
enum class LoadBalancerIpMode : uint8_t { VIP, Proxy };

const char* protocolName(Protocol p);
const char* serviceTypeName(ServiceType t);
const char* trafficPolicyName(TrafficPolicy p);
std::optional<Protocol> parseProtocol(std::string_view s);
std::optional<ServiceType> parseServiceType(std::string_view s);
std::optional<TrafficPolicy> parseTrafficPolicy(std::string_view s);
std::optional<SessionAffinity> parseSessionAffinity(std::string_view s);
std::optional<LoadBalancerIpMode> parseIpMode(std::string_view s);

inline constexpr uint32_t kDefaultAffinityTimeoutSeconds = 10800;

struct IntOrString {
  std::optional<int32_t> number;
  std::string name;  // a named container port; used only when number is empty
  friend bool operator==(const IntOrString&, const IntOrString&) = default;
};

struct ServicePortSpec {
  std::string name;
  Protocol protocol = Protocol::TCP;
  uint16_t port = 0;
  uint16_t nodePort = 0;  // 0: none allocated
  IntOrString targetPort;
  friend bool operator==(const ServicePortSpec&, const ServicePortSpec&) = default;
};

struct LoadBalancerIngress {
  std::optional<IpAddr> ip;  // hostname-only ingress entries carry no address
  std::string hostname;
  LoadBalancerIpMode ipMode = LoadBalancerIpMode::VIP;
  friend bool operator==(const LoadBalancerIngress&, const LoadBalancerIngress&) = default;
};

struct Service {
  ObjectKey key;
  std::string resourceVersion;
  // metadata.creationTimestamp (the epoch when absent): of two Services claiming one frontend,
  // the older keeps it, as the API server's allocators would have it.
  std::chrono::system_clock::time_point created{};
  Labels labels;
  ServiceType type = ServiceType::ClusterIP;
  bool headless = false;           // clusterIP "None"
  std::vector<IpAddr> clusterIPs;  // primary first; dual-stack services have one per family
  std::vector<ServicePortSpec> ports;
  std::vector<IpAddr> externalIPs;
  std::vector<LoadBalancerIngress> loadBalancerIngress;
  std::vector<Cidr> loadBalancerSourceRanges;
  TrafficPolicy externalTrafficPolicy = TrafficPolicy::Cluster;
  TrafficPolicy internalTrafficPolicy = TrafficPolicy::Cluster;
  SessionAffinity sessionAffinity = SessionAffinity::None;
  uint32_t affinityTimeoutSeconds = kDefaultAffinityTimeoutSeconds;
  uint16_t healthCheckNodePort = 0;
  std::string trafficDistribution;
  std::string externalName;
  std::vector<SkippedValue> skipped;

  friend bool operator==(const Service&, const Service&) = default;
};

}  // namespace sliceproxy::proxier
