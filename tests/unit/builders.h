#pragma once
// Compact constructors for model objects, so each test states only what it is about.

#include <fmt/format.h>

#include <memory>
#include <string>
#include <vector>

#include "proxier/core/events.h"
#include "proxier/core/service_port_view.h"

namespace sliceproxy::testing {

using namespace proxier;

inline IpAddr ip(std::string_view s) {
  return *IpAddr::parse(s);
}

// The i-th of many distinct pod endpoints (10.244.x.y:8080), for tests of large sets.
inline EndpointKey podEndpoint(int i) {
  return {ip(fmt::format("10.244.{}.{}", i / 250, i % 250 + 1)), 8080};
}

struct SvcSpec {
  std::string ns = "default", name = "svc";
  ServiceType type = ServiceType::ClusterIP;
  std::vector<std::string> clusterIPs = {"10.96.0.1"};
  std::vector<ServicePortSpec> ports = {{"http", Protocol::TCP, 80, 0, {8080, ""}}};
  TrafficPolicy etp = TrafficPolicy::Cluster, itp = TrafficPolicy::Cluster;
  std::vector<std::string> externalIPs = {}, lbIPs = {};
  std::vector<std::pair<std::string, std::string>> labels = {};
};

inline ServicePtr service(const SvcSpec& s) {
  auto svc = std::make_shared<Service>();
  svc->key = {s.ns, s.name};
  svc->type = s.type;
  for (auto& c : s.clusterIPs) svc->clusterIPs.push_back(ip(c));
  svc->ports = s.ports;
  svc->externalTrafficPolicy = s.etp;
  svc->internalTrafficPolicy = s.itp;
  for (auto& e : s.externalIPs) svc->externalIPs.push_back(ip(e));
  for (auto& l : s.lbIPs) svc->loadBalancerIngress.push_back({ip(l), "", LoadBalancerIpMode::VIP});
  for (auto& [k, v] : s.labels) svc->labels.set(k, v);
  return svc;
}

struct Ep {
  std::string addr;
  std::string node = "node-b";
  std::optional<bool> ready = true, serving = std::nullopt, terminating = std::nullopt;
  std::vector<std::string> zoneHints = {}, nodeHints = {};
};

inline Endpoint endpoint(const Ep& e) {
  Endpoint out;
  out.addresses.push_back(ip(e.addr));
  out.nodeName = e.node;
  out.conditions = {e.ready, e.serving, e.terminating};
  out.zoneHints = e.zoneHints;
  out.nodeHints = e.nodeHints;
  return out;
}

inline SlicePtr slice(std::string name, std::string serviceName, std::vector<Ep> eps,
                      std::vector<EndpointPort> ports = {{"http", Protocol::TCP, 8080}},
                      std::string ns = "default") {
  auto s = std::make_shared<EndpointSlice>();
  s->key = {ns, std::move(name)};
  s->serviceName = serviceName;
  s->labels.set(std::string(kLabelServiceName), serviceName);
  s->addressType = eps.empty() || eps.front().addr.find(':') == std::string::npos
                       ? AddressType::IPv4
                       : AddressType::IPv6;
  for (auto& e : eps) s->endpoints.push_back(endpoint(e));
  s->ports = std::move(ports);
  return s;
}

inline NodePtr node(std::string name, std::string zone = "") {
  auto n = std::make_shared<Node>();
  n->key = {"", std::move(name)};
  if (!zone.empty()) n->labels.set(std::string(kLabelTopologyZone), zone);
  return n;
}

}  // namespace sliceproxy::testing
