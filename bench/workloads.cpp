#include "bench/workloads.h"

#include <fmt/format.h>

namespace sliceproxy::bench {

using namespace proxier;

IpAddr endpointAddress(uint32_t n) {
  IpAddr a;
  a.family = IpFamily::V4;
  uint32_t v = (10u << 24) | (1u << 23) | (n & 0x7fffff);
  a.bytes[0] = static_cast<uint8_t>(v >> 24);
  a.bytes[1] = static_cast<uint8_t>(v >> 16);
  a.bytes[2] = static_cast<uint8_t>(v >> 8);
  a.bytes[3] = static_cast<uint8_t>(v);
  return a;
}

namespace {

IpAddr serviceAddress(uint32_t n) {
  IpAddr a;
  a.bytes = {10, 96, static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n & 0xff)};
  return a;
}

std::shared_ptr<Service> makeService(const std::string& name, uint32_t index, ServiceType type) {
  auto svc = std::make_shared<Service>();
  svc->key = {"bench", name};
  svc->type = type;
  svc->clusterIPs = {serviceAddress(index + 1)};
  svc->ports = {{"http",
                 Protocol::TCP,
                 80,
                 static_cast<uint16_t>(type == ServiceType::NodePort ? 30080 : 0),
                 {8080, ""}}};
  return svc;
}

std::shared_ptr<EndpointSlice> makeSlice(const std::string& service, const std::string& name,
                                         uint32_t firstEndpoint, size_t count, size_t nodes) {
  auto s = std::make_shared<EndpointSlice>();
  s->key = {"bench", name};
  s->serviceName = service;
  s->labels.set(std::string(kLabelServiceName), service);
  s->ports = {{"http", Protocol::TCP, 8080}};
  s->endpoints.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t n = firstEndpoint + static_cast<uint32_t>(i);
    Endpoint ep;
    ep.addresses = {endpointAddress(n)};
    ep.conditions = {true, true, false};
    ep.nodeName = fmt::format("node-{}", n % nodes);
    ep.zone = fmt::format("zone-{}", n % 3);
    s->endpoints.push_back(std::move(ep));
  }
  return s;
}

}  // namespace

Workload seedWorkload(size_t endpoints, size_t slices) {
  Workload w;
  w.services.push_back(makeService("seed", 0, ServiceType::NodePort));
  size_t base = endpoints / slices, extra = endpoints % slices;
  uint32_t next = 0;
  for (size_t i = 0; i < slices; ++i) {
    size_t count = base + (i < extra ? 1 : 0);
    w.slices.push_back(makeSlice("seed", fmt::format("seed-{:05}", i), next, count, 5000));
    next += static_cast<uint32_t>(count);
  }
  w.endpoints = endpoints;
  return w;
}

Workload wideWorkload(size_t services, size_t perService) {
  Workload w;
  uint32_t next = 0;
  for (size_t i = 0; i < services; ++i) {
    std::string name = fmt::format("svc-{:05}", i);
    w.services.push_back(makeService(name, static_cast<uint32_t>(i), ServiceType::ClusterIP));
    w.slices.push_back(makeSlice(name, name + "-abcde", next, perService, 1000));
    next += static_cast<uint32_t>(perService);
  }
  w.endpoints = services * perService;
  return w;
}

SlicePtr withReplacedEndpoint(const EndpointSlice& slice, uint32_t generation) {
  auto s = std::make_shared<EndpointSlice>(slice);
  s->endpoints.front().addresses = {endpointAddress((1u << 22) + generation)};
  return s;
}

}  // namespace sliceproxy::bench
