// Control-plane cost: tracking events, merging slices, the node-local view and the Diff.
// Targets (issue 2): cold sync <= 150 ms for seed or wide; one slice update + sync at 100k
// endpoints <= 0.5 ms; tracker + state memory <= 80 MB at 100k endpoints.

#include <benchmark/benchmark.h>
#include <malloc.h>

#include "bench/workloads.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::bench {
namespace {

using namespace proxier;

const Workload& workload(int which) {
  static const Workload seed = seedWorkload();
  static const Workload wide = wideWorkload();
  return which == 0 ? seed : wide;
}

void feed(ChangeTracker& t, const Workload& w) {
  auto node = std::make_shared<Node>();
  node->key = {"", kBenchNode};
  node->labels.set(std::string(kLabelTopologyZone), "zone-0");
  t.upsertNode(std::move(node));
  for (const auto& s : w.services) t.upsertService(s);
  for (const auto& s : w.slices) t.upsertSlice(s);
}

// Everything a cold start does before the backend: track every event, merge, node view, diff.
void BM_ColdSync(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  const bool wantDiff = st.range(1) != 0;
  size_t changes = 0;
  for (auto _ : st) {
    ChangeTracker tracker(kBenchNode, {});
    tracker.synced();
    NodeState state(kBenchNode);
    feed(tracker, w);
    Diff d = state.apply(tracker.take(), wantDiff);
    changes = d.endpointChanges();
    benchmark::DoNotOptimize(d);
    st.PauseTiming();
    {
      // Tearing the model down is not part of a cold start.
      Diff gone = std::move(d);
    }
    st.ResumeTiming();
  }
  st.counters["endpoints"] = static_cast<double>(w.endpoints);
  st.counters["endpoint_changes"] = static_cast<double>(changes);
}
BENCHMARK(BM_ColdSync)
    ->ArgNames({"wide", "diff"})
    ->Args({0, 1})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({1, 0})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

// One slice of the already-synced cluster changes (one endpoint replaced), then a sync.
void BM_OneSliceUpdate(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  ChangeTracker tracker(kBenchNode, {});
  tracker.synced();
  NodeState state(kBenchNode);
  feed(tracker, w);
  state.apply(tracker.take(), false);
  const EndpointSlice& target = *w.slices[w.slices.size() / 2];
  uint32_t generation = 0;
  size_t upserts = 0, changes = 0;
  for (auto _ : st) {
    st.PauseTiming();
    // Building the new object is the decoder's cost, measured elsewhere.
    SlicePtr next = withReplacedEndpoint(target, ++generation);
    st.ResumeTiming();
    tracker.upsertSlice(std::move(next));
    Diff d = state.apply(tracker.take());
    upserts = d.upserts.size();
    changes = d.endpointChanges();
    benchmark::DoNotOptimize(d);
  }
  st.counters["diff_ports"] = static_cast<double>(upserts);
  st.counters["diff_endpoint_changes"] = static_cast<double>(changes);
}
BENCHMARK(BM_OneSliceUpdate)->ArgName("wide")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// Heap held by the raw objects, the tracker and the node-local state at full size.
void BM_Memory(benchmark::State& st) {
  const int which = static_cast<int>(st.range(0));
  size_t bytes = 0;
  for (auto _ : st) {
    malloc_trim(0);
    const size_t before = mallinfo2().uordblks;
    {
      // Built inside the measurement so the objects themselves are counted.
      Workload w = which == 0 ? seedWorkload() : wideWorkload();
      ChangeTracker tracker(kBenchNode, {});
      tracker.synced();
      NodeState state(kBenchNode);
      feed(tracker, w);
      state.apply(tracker.take(), false);
      w = Workload{};  // the model now holds the only references
      bytes = mallinfo2().uordblks - before;
    }
  }
  st.counters["heap_MB"] = static_cast<double>(bytes) / 1e6;
}
BENCHMARK(BM_Memory)->ArgName("wide")->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sliceproxy::bench

BENCHMARK_MAIN();
