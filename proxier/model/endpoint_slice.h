#pragma once
// The EndpointSlice fields a service proxy reads, in binary form.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"
#include "proxier/model/labels.h"
#include "proxier/model/object_key.h"
#include "proxier/model/service.h"

namespace sliceproxy::proxier {

enum class AddressType : uint8_t { IPv4, IPv6, FQDN };
std::optional<AddressType> parseAddressType(std::string_view s);

// Conditions keep their tri-state so a nil can be told from false; the accessors apply the API's
// documented nil defaults (ready and serving nil mean true, terminating nil means false).
struct EndpointConditions {
  std::optional<bool> ready, serving, terminating;
  bool isReady() const { return ready.value_or(true); }
  bool isServing() const { return serving.value_or(true); }
  bool isTerminating() const { return terminating.value_or(false); }
  friend bool operator==(const EndpointConditions&, const EndpointConditions&) = default;
};

struct Endpoint {
  // Consumers use only the first address (the API says all addresses are fungible and kube-proxy
  // programs addresses[0]); the rest are kept for display.
  std::vector<IpAddr> addresses;
  EndpointConditions conditions;
  std::string nodeName;
  std::string zone;
  std::vector<std::string> zoneHints;  // hints.forZones[].name
  std::vector<std::string> nodeHints;  // hints.forNodes[].name
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct EndpointPort {
  std::string name;  // nil and "" are the same port name
  Protocol protocol = Protocol::TCP;
  uint16_t port = 0;
  friend bool operator==(const EndpointPort&, const EndpointPort&) = default;
};

struct EndpointSlice {
  ObjectKey key;
  std::string resourceVersion;
  Labels labels;
  std::string serviceName;  // from label kubernetes.io/service-name; empty: not owned by a service
  AddressType addressType = AddressType::IPv4;
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  // Endpoints left out (no address, an address that does not parse or is of the other family),
  // each with why: kube-proxy skips such an endpoint and serves the rest of the slice.
  std::vector<SkippedValue> skipped;
  // When the change this version carries started (a pod became ready, went away, ...), from the
  // annotation endpoints.kubernetes.io/last-change-trigger-time: network programming latency is
  // measured from it, as kube-proxy does.
  std::optional<std::chrono::system_clock::time_point> triggerTime;

  ObjectKey serviceKey() const { return {key.ns, serviceName}; }
  friend bool operator==(const EndpointSlice&, const EndpointSlice&) = default;
};

inline constexpr size_t kMaxEndpointsPerSlice = 1000;
inline constexpr size_t kMaxPortsPerSlice = 100;

}  // namespace sliceproxy::proxier
