// The Maglev lookup table's computation (issue 16): what a NodePort service's table costs to
// build from its backend set, at the default table size and at the size the default policy
// gives a service of 100,000 endpoints (a prime >= 100 x backends, capped below 2^24). An
// endpoint change rebuilds the table of its service, so this is the floor of that change's cost
// in the eBPF backend's packet path, before any map write.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "backends/ebpf/maglev.h"

namespace sliceproxy::bench {
namespace {

using backends::ebpf::kMaglevDefaultTableSize;
using backends::ebpf::maglevTable;
using backends::ebpf::maglevTableSizeFor;

std::vector<proxier::EndpointKey> backendsOf(int64_t n) {
  std::vector<proxier::EndpointKey> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    proxier::EndpointKey e;
    e.ip = *proxier::IpAddr::parse(
        fmt::format("10.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 255, i & 255));
    e.port = 8080;
    out.push_back(e);
  }
  return out;
}

void BM_MaglevTable(benchmark::State& st) {
  const auto backends = backendsOf(st.range(0));
  const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, backends.size());
  for (auto _ : st) {
    auto copy = backends;
    benchmark::DoNotOptimize(maglevTable(copy, size));
  }
  st.counters["table_entries"] = size;
}
BENCHMARK(BM_MaglevTable)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sliceproxy::bench

BENCHMARK_MAIN();
