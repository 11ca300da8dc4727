// The Maglev lookup table's computation (issue 16), at the default table size and at the size
// the default policy gives a service of 100,000 endpoints (a prime >= 100 x backends, capped
// below 2^24): what a NodePort service's table costs to build from its backend set (a new
// service, a restart), what one backend coming or going costs in a table kept up to date (an
// endpoint change: the floor of its cost in the eBPF backend's packet path, before any map
// write), and the pass that finds the runner-ups again after a removal (after the change is in
// the kernel).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "backends/ebpf/maglev.h"

namespace sliceproxy::bench {
namespace {

using backends::ebpf::kMaglevDefaultTableSize;
using backends::ebpf::MaglevTable;
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

// One iteration = one change as the eBPF backend's writer makes it (update() with the backend
// that left or came): the middle backend leaves, or comes back (alternately).
void BM_MaglevOneBackendChange(benchmark::State& st) {
  const auto all = backendsOf(st.range(0));
  const std::vector<proxier::EndpointKey> one{all[all.size() / 2]}, none;
  const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, all.size());
  MaglevTable t(size);
  t.assign(all, nullptr);
  std::vector<uint32_t> moved;
  size_t movedTotal = 0;
  bool full = true;
  for (auto _ : st) {
    moved.clear();
    t.update(full ? one : none, full ? none : one, &moved);
    full = !full;
    movedTotal += moved.size();
    if (!full) {
      st.PauseTiming();
      t.settle();
      st.ResumeTiming();
    }
  }
  st.counters["table_entries"] = size;
  st.counters["entries_moved"] = static_cast<double>(movedTotal) / st.iterations();
  st.counters["depth"] = t.depth();
}
BENCHMARK(BM_MaglevOneBackendChange)
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMicrosecond);

// settle() after one backend left: off the change's path, but it holds the sync loop.
void BM_MaglevSettleAfterRemoval(benchmark::State& st) {
  const auto all = backendsOf(st.range(0));
  const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, all.size());
  MaglevTable t(size);
  t.assign(all, nullptr);
  const std::vector<proxier::EndpointKey> one{all[all.size() / 2]}, none;
  for (auto _ : st) {
    st.PauseTiming();
    t.update(one, none, nullptr);
    st.ResumeTiming();
    t.settle();
    st.PauseTiming();
    t.update(none, one, nullptr);
    st.ResumeTiming();
  }
}
BENCHMARK(BM_MaglevSettleAfterRemoval)
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sliceproxy::bench

BENCHMARK_MAIN();
