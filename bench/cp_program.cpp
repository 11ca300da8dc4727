#include "bench/cp_program.h"

#include <cstdio>
#include <stdexcept>

#include "backends/ebpf/ebpf_backend.h"
#include "backends/registry.h"
#include "bench/timed_backend.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::bench {

using namespace proxier;

NetworkConfig harnessNetwork() {
  NetworkConfig n;
  n.detectLocal = LocalDetectMode::ClusterCIDR;
  n.clusterCIDRs = {*Cidr::parse("10.0.0.0/8")};
  return n;
}

std::string runCapture(const std::string& cmd) {
  std::string out;
  if (cmd.empty()) return out;
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

namespace {

struct Samples {
  std::vector<double> total, backend;
  void add(double t, double b) {
    total.push_back(t);
    backend.push_back(b);
  }
  void report(JsonObject& j, const std::string& prefix) const {
    j.num(prefix + "_ms", percentile(total, 50))
        .num(prefix + "_p90_ms", percentile(total, 90))
        .num(prefix + "_max_ms", percentile(total, 100))
        .num(prefix + "_backend_ms", percentile(backend, 50));
  }
};

}  // namespace

JsonObject measureProgram(const HarnessWorkload& hw, const ProgramOptions& o,
                          const NetworkConfig& net) {
  std::string error;
  auto backend = proxier::makeBackend(backends::registry(), o.backend, net, error);
  if (!backend) throw std::runtime_error("backend " + o.backend + ": " + error);
  // The eBPF backend also reports its map-update time alone (without the stale-socket walk
  // that follows a removal), and loads and attaches its programs once, before the cold sync,
  // so its cold row is the maps' fill (the load is reported beside it).
  auto* ebpf = dynamic_cast<backends::ebpf::EbpfBackend*>(backend.get());
  double loadMs = -1;
  if (ebpf) {
    const auto t = Clock::now();
    if (auto r = ebpf->apply(Diff{}); !r.ok) throw std::runtime_error("ebpf load: " + r.error);
    loadMs = msSince(t, Clock::now());
  }
  TimedBackend timed(*backend);
  ChangeTracker tracker(kBenchNode, {});
  Proxier proxy(tracker, timed, kBenchNode);
  auto sync = [&](const char* what) {
    if (!proxy.syncOnce()) throw std::runtime_error(std::string("sync failed: ") + what);
  };

  JsonObject j;
  j.str("system", "sliceproxy-" + o.backend)
      .str("workload", hw.name)
      .num("services", static_cast<double>(hw.w.services.size()))
      .num("endpoints", static_cast<double>(hw.w.endpoints))
      .num("slices", static_cast<double>(hw.w.slices.size()));

  // Cold: every event tracked, merged, node view, and the backend's full sync, as a daemon
  // starting on this cluster does it (decoding is the source's cost, measured in issue 4).
  const double cpu0 = cpuSeconds();
  const auto t0 = Clock::now();
  auto node = std::make_shared<Node>();
  node->key = {"", kBenchNode};
  tracker.upsertNode(node);
  for (const auto& s : hw.w.services) tracker.upsertService(s);
  for (const auto& s : hw.w.slices) tracker.upsertSlice(s);
  tracker.synced();
  sync("cold program");
  const auto t1 = Clock::now();
  j.num("cold_ms", msSince(t0, t1))
      .num("cold_backend_ms", timed.lastMs())
      .num("cold_cpu_s", cpuSeconds() - cpu0)
      .num("cold_kernel_ops", static_cast<double>(timed.lastOperations()))
      .num("rss_after_cold_mb", procStatusMB("VmRSS"));
  j.raw("kernel_objects", runCapture(o.countCmd));
  if (ebpf) j.num("ebpf_load_ms", loadMs);

  Samples change, added;
  std::vector<double> mapUs, socketUs;
  for (uint32_t k = 1; k <= o.repeat; ++k) {
    auto t = Clock::now();
    tracker.upsertSlice(changedSlice(hw, k));
    sync("one endpoint change");
    change.add(msSince(t, Clock::now()), timed.lastMs());
    if (ebpf) {
      mapUs.push_back(ebpf->lastApply().mapMicros);
      socketUs.push_back(ebpf->lastApply().socketMicros);
    }
  }
  change.report(j, "one_change");
  if (ebpf) {
    j.num("one_change_map_us", percentile(mapUs, 50))
        .num("one_change_map_p90_us", percentile(mapUs, 90))
        .num("one_change_socket_walk_us", percentile(socketUs, 50));
  }
  for (uint32_t k = 1; k <= o.repeat; ++k) {
    auto [svc, slice] = extraService(k);
    auto t = Clock::now();
    tracker.upsertService(svc);
    tracker.upsertSlice(slice);
    sync("one service added");
    added.add(msSince(t, Clock::now()), timed.lastMs());
  }
  added.report(j, "one_service");
  j.num("repeat", o.repeat)
      .num("cpu_s", cpuSeconds() - cpu0)
      .num("peak_rss_mb", procStatusMB("VmHWM"));
  // Pinned programs outlive the process: detach and unpin them (nftables tables go with the
  // network namespace).
  if (ebpf) {
    if (auto r = ebpf->cleanup(); !r.ok) throw std::runtime_error("ebpf cleanup: " + r.error);
  }
  return j;
}

}  // namespace sliceproxy::bench
