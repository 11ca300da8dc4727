#pragma once
// Deterministic cluster shapes shared by every benchmark.
//  seed: one NodePort service whose 100,000 endpoints arrive in 1006 slices of at most 100, the
//        shape the EndpointSlice controller produced in the published 100k-endpoint test.
//  wide: 10,000 services with 10 endpoints each, one slice per service.

#include <string>
#include <vector>

#include "proxier/core/events.h"

namespace sliceproxy::bench {

struct Workload {
  std::vector<proxier::ServicePtr> services;
  std::vector<proxier::SlicePtr> slices;
  std::vector<proxier::NodePtr> nodes;
  size_t endpoints = 0;
};

inline constexpr const char* kBenchNode = "node-0";

// One service with `endpoints` endpoints spread over `slices` slices (sizes as equal as the
// 100-per-slice cap allows, like a controller that has seen churn).
Workload seedWorkload(size_t endpoints = 100000, size_t slices = 1006);
Workload wideWorkload(size_t services = 10000, size_t endpointsPerService = 10);

// A copy of `slice` with one endpoint replaced by a fresh address: the one-change update.
proxier::SlicePtr withReplacedEndpoint(const proxier::EndpointSlice& slice, uint32_t generation);

// Endpoint address number n in 10.128.0.0/9 (distinct for n < 2^23).
proxier::IpAddr endpointAddress(uint32_t n);

}  // namespace sliceproxy::bench
