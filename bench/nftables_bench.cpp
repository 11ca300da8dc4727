// nftables backend cost on the real kernel, in a network namespace of its own (the process
// unshares one at start, so nothing touches the host's ruleset).
// Targets (issue 3): seed cold program <= 1 s; wide cold program <= 2 s; one endpoint added or
// removed <= 5 ms of backend time; one service added to wide <= 5 ms; netlink bytes per
// one-endpoint change independent of cluster size.

#include <benchmark/benchmark.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backends/nftables/nftables_backend.h"
#include "bench/workloads.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::bench {
namespace {

using namespace proxier;

struct Cluster {
  ChangeTracker tracker{kBenchNode, {}};
  NodeState state{kBenchNode};
  explicit Cluster(const Workload& w) {
    tracker.synced();
    auto node = std::make_shared<Node>();
    node->key = {"", kBenchNode};
    tracker.upsertNode(node);
    for (const auto& s : w.services) tracker.upsertService(s);
    for (const auto& s : w.slices) tracker.upsertSlice(s);
    state.apply(tracker.take(), false);
  }
};

const Workload& workload(int which) {
  static const Workload seed = seedWorkload();
  static const Workload wide = wideWorkload();
  return which == 0 ? seed : wide;
}

NetworkConfig benchNet() {
  NetworkConfig n;
  n.detectLocal = LocalDetectMode::ClusterCIDR;
  n.clusterCIDRs = {*Cidr::parse("10.0.0.0/8")};
  return n;
}

void check(const BackendResult& r, benchmark::State& st) {
  if (!r.ok) st.SkipWithError(r.error.c_str());
}

void BM_NftColdProgram(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  Cluster c(w);
  State s = c.state.state();
  backends::nft::NftablesBackend backend(benchNet());
  size_t bytes = 0;
  for (auto _ : st) {
    st.PauseTiming();
    check(backend.cleanup(), st);
    st.ResumeTiming();
    check(backend.fullSync(s), st);
    bytes = backend.lastStats().lastBytes;
  }
  st.counters["netlink_MB"] = static_cast<double>(bytes) / 1e6;
  st.counters["endpoints"] = static_cast<double>(w.endpoints);
}
BENCHMARK(BM_NftColdProgram)->ArgName("wide")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(3);

// Restart over a table a previous run left: one transaction replaces it.
void BM_NftRestartProgram(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  Cluster c(w);
  State s = c.state.state();
  backends::nft::NftablesBackend backend(benchNet());
  check(backend.fullSync(s), st);
  for (auto _ : st) check(backend.fullSync(s), st);
}
BENCHMARK(BM_NftRestartProgram)->ArgName("wide")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(3);

// One endpoint replaced in one slice (one removed + one added), backend time only.
void BM_NftOneEndpointChange(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  Cluster c(w);
  backends::nft::NftablesBackend backend(benchNet());
  check(backend.fullSync(c.state.state()), st);
  const EndpointSlice& target = *w.slices[w.slices.size() / 2];
  uint32_t gen = 0;
  size_t bytes = 0;
  for (auto _ : st) {
    st.PauseTiming();
    c.tracker.upsertSlice(withReplacedEndpoint(target, ++gen));
    Diff d = c.state.apply(c.tracker.take());
    st.ResumeTiming();
    check(backend.apply(d), st);
    bytes = backend.lastStats().lastBytes;
  }
  st.counters["netlink_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_NftOneEndpointChange)->ArgName("wide")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// One new service with 10 endpoints added to the programmed cluster.
void BM_NftOneServiceAdded(benchmark::State& st) {
  const Workload& w = workload(static_cast<int>(st.range(0)));
  Cluster c(w);
  backends::nft::NftablesBackend backend(benchNet());
  check(backend.fullSync(c.state.state()), st);
  Workload extra = wideWorkload(1, 10);
  uint32_t n = 0;
  size_t bytes = 0;
  for (auto _ : st) {
    st.PauseTiming();
    auto svc = std::make_shared<Service>(*extra.services[0]);
    svc->key.name = "extra-" + std::to_string(++n);
    svc->clusterIPs = {*IpAddr::parse("10.100." + std::to_string(n / 250) + "." + std::to_string(n % 250 + 1))};
    auto slice = std::make_shared<EndpointSlice>(*extra.slices[0]);
    slice->key.name = svc->key.name + "-x";
    slice->serviceName = svc->key.name;
    c.tracker.upsertService(svc);
    c.tracker.upsertSlice(slice);
    Diff d = c.state.apply(c.tracker.take());
    st.ResumeTiming();
    check(backend.apply(d), st);
    bytes = backend.lastStats().lastBytes;
  }
  st.counters["netlink_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_NftOneServiceAdded)->ArgName("wide")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sliceproxy::bench

int main(int argc, char** argv) {
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "bench_nftables: cannot create a network namespace (need root): %s\n",
                 std::strerror(errno));
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
