#pragma once
// The issue-7 harness's workloads and the exact changes it times, in one place so that
// sliceproxy and the kube-proxy peers (bench/harness/, fed by `dump`) program the same thing:
//  seed:  one NodePort service, N endpoints in slices of at most 100 (1006 slices at 100k, the
//         published test's shape); the sweep is seed at 1k..200k endpoints.
//  wide:  S ClusterIP services x M endpoints, one slice each.
// One endpoint change k (k = 1, 2, ...) replaces the first endpoint of the middle slice with a
// fresh address; one service added k is a new 10-endpoint ClusterIP service "extra-k".

#include <cstdio>
#include <string>
#include <utility>

#include "bench/workloads.h"

namespace sliceproxy::bench {

struct HarnessWorkload {
  std::string name;
  Workload w;
  size_t changeSlice = 0;  // index of the slice whose first endpoint the changes replace
};

// Slices for a seed-shaped service of n endpoints: 1006 per 100k, never more than 100 each.
size_t seedSlices(size_t endpoints);

// kind: "seed" (endpoints) or "wide" (services x perService).
HarnessWorkload makeHarnessWorkload(const std::string& kind, size_t endpoints, size_t services,
                                    size_t perService);

// The k-th one-endpoint change of the workload (k >= 1).
proxier::SlicePtr changedSlice(const HarnessWorkload& hw, uint32_t k);

// The k-th added service (k >= 1) and its one slice.
std::pair<proxier::ServicePtr, proxier::SlicePtr> extraService(uint32_t k);

// Prints the workload as the peers need it, one JSON object per line: every service port with
// its ready endpoints, then `changes` one-endpoint changes and `changes` added services.
void dumpWorkload(const HarnessWorkload& hw, uint32_t changes, std::FILE* out);

}  // namespace sliceproxy::bench
