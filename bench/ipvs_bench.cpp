// IPVS backend cost beside the nftables backend and kube-proxy's IPVS mechanism, on one kernel,
// in a network namespace of its own (run in Debian's kernel under qemu: bench/ipvs_vm_bench.sh;
// this host's kernel has no IPVS). Workload: the seed (one service, 100,000 endpoints, or the
// count given as the second argument).
//   cold:   programming the workload into empty state
//   change: one endpoint replaced in one slice (one removed, one added), median of --changes
// kube-proxy's mechanism, as its IPVS proxier makes the requests on every sync for the changed
// service: get the virtual service, list its real servers, then one request per real server
// to add (and, for graceful termination, one weight-0 update per removed one); cold, one
// request per virtual service and per real server. Prints one line per measurement.

// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include <linux/ip_vs.h>
#include <sched.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backends/ipvs/ipvs_backend.h"
#include "backends/ipvs/ipvs_netlink.h"
#include "backends/nftables/nftables_backend.h"
#include "bench/workloads.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::bench {
namespace {

using namespace proxier;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

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

NetworkConfig benchNet() {
  NetworkConfig n;
  n.detectLocal = LocalDetectMode::ClusterCIDR;
  n.clusterCIDRs = {*Cidr::parse("10.0.0.0/8")};
  return n;
}

void must(const BackendResult& r, const char* what) {
  if (!r.ok) {
    std::fprintf(stderr, "%s: %s\n", what, r.error.c_str());
    std::exit(1);
  }
}
void must(const std::string& err, const char* what) {
  if (!err.empty()) {
    std::fprintf(stderr, "%s: %s\n", what, err.c_str());
    std::exit(1);
  }
}

// CPU time of this process, user and system (the kernel's IPVS work is system time), in ms.
struct Cpu {
  double user = 0, sys = 0;
  static Cpu now() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
    return {ms(u.ru_utime), ms(u.ru_stime)};
  }
  Cpu since() const {
    Cpu n = now();
    return {n.user - user, n.sys - sys};
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Replaces one endpoint of the middle slice `changes` times, timing backend.apply() only.
template <typename Backend, typename Requests>
double changeMedian(Cluster& c, const Workload& w, Backend& backend, int changes, Requests requests,
                    uint64_t* perChange) {
  const EndpointSlice& target = *w.slices[w.slices.size() / 2];
  std::vector<double> times;
  for (int i = 1; i <= changes; ++i) {
    c.tracker.upsertSlice(withReplacedEndpoint(target, static_cast<uint32_t>(i)));
    Diff d = c.state.apply(c.tracker.take());
    const uint64_t before = requests();
    auto t0 = Clock::now();
    must(backend.apply(d), "apply");
    times.push_back(msSince(t0));
    *perChange = requests() - before;
  }
  return median(times);
}

// Each system in a network namespace of its own: IPVS state is per namespace, and the kernel
// keeps deleted real servers in a per-namespace trash list for a while (searched linearly on
// every real server added), so the system measured after another one's cleanup would pay for
// its 100,000 deleted real servers too. Loopback up: until some address exists the namespace
// has no local routing table, and IPVS then takes every real server's address for a broadcast
// one (EINVAL).
void freshNamespace() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "bench_ipvs: cannot create a network namespace: %s\n",
                 std::strerror(errno));
    std::exit(1);
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strcpy(ifr.ifr_name, "lo");
  if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0 ||
      (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr)) != 0) {
    std::fprintf(stderr, "bench_ipvs: cannot bring lo up: %s\n", std::strerror(errno));
    std::exit(1);
  }
  close(fd);
}

int run(int changes, size_t endpoints) {
  const Workload w = seedWorkload(endpoints, std::max<size_t>(1, endpoints / 100));
  std::printf("workload: seed, %zu endpoints, %zu slices, %d changes\n", w.endpoints,
              w.slices.size(), changes);

  {  // sliceproxy's IPVS backend
    freshNamespace();
    Cluster c(w);
    backends::ipvs::IpvsBackend backend(benchNet());
    const Cpu cpu0 = Cpu::now();
    auto t0 = Clock::now();
    must(backend.fullSync(c.state.state()), "ipvs cold");
    const double cold = msSince(t0);
    const Cpu cpu = cpu0.since();
    const uint64_t coldReq = backend.ipvsRequests();
    std::printf("ipvs backend cold: cpu user %.0f ms, system %.0f ms\n", cpu.user, cpu.sys);
    uint64_t perChange = 0;
    const double change = changeMedian(
        c, w, backend, changes, [&] { return backend.ipvsRequests(); }, &perChange);
    std::printf(
        "ipvs backend: cold %.1f ms (%llu IPVS requests); one endpoint change %.3f ms "
        "(%llu IPVS requests)\n",
        cold, static_cast<unsigned long long>(coldReq), change,
        static_cast<unsigned long long>(perChange));
    must(backend.cleanup(), "ipvs cleanup");
  }
  {  // kube-proxy's mechanism over the same client
    freshNamespace();
    backends::ipvs::IpvsNetlink nl;
    must(nl.open(), "ipvs open");
    Cluster c(w);
    backends::ipvs::VirtualService svc;
    const ServicePortView* view = c.state.state().ports.front();
    svc.key = {view->info()->clusterIP, IPPROTO_TCP, view->info()->port};
    std::vector<backends::ipvs::RealServer> dests;
    view->forEachEndpoint([&](const MergedEndpoint& e) {
      if (e.sets & epset::kCluster) dests.push_back({{e.key.ip, e.key.port}, 1});
    });
    const Cpu cpu0 = Cpu::now();
    auto t0 = Clock::now();
    std::vector<backends::ipvs::VirtualService> list;
    must(nl.listServices(list), "list");
    must(nl.addService(svc), "add service");
    std::vector<backends::ipvs::RealServer> cur;
    must(nl.listRealServers(svc.key, cur), "list dests");
    // The cost of one add as the service grows: the first and the last tenth of the adds.
    const size_t tenth = std::max<size_t>(1, dests.size() / 10);
    std::vector<double> tenths;
    auto tt = Clock::now();
    for (size_t i = 0; i < dests.size(); ++i) {
      if (std::string err = nl.addRealServer(svc.key, dests[i]); !err.empty()) {
        std::fprintf(stderr, "add dest %zu of %zu: %s\n", i, dests.size(), err.c_str());
        std::exit(1);
      }
      if ((i + 1) % tenth == 0) {
        tenths.push_back(msSince(tt) * 1000 / static_cast<double>(tenth));
        tt = Clock::now();
      }
    }
    const double cold = msSince(t0);
    const Cpu cpu = cpu0.since();
    std::printf("kube-proxy mechanism cold: cpu user %.0f ms, system %.0f ms; one add: %.0f us "
                "in the first tenth, %.0f us in the last\n",
                cpu.user, cpu.sys, tenths.front(), tenths.back());
    std::vector<double> times;
    uint64_t perChange = 0;
    for (int i = 1; i <= changes; ++i) {
      // The endpoint that goes and the one that comes, as in changeMedian().
      const backends::ipvs::RealServer gone = dests[static_cast<size_t>(i) * 997 % dests.size()];
      backends::ipvs::RealServer came{{*IpAddr::parse("10.250.0." + std::to_string(i)), 8080}, 1};
      const uint64_t before = nl.requests();
      auto t1 = Clock::now();
      list.clear();
      must(nl.listServices(list), "get service");
      cur.clear();
      must(nl.listRealServers(svc.key, cur), "list dests");
      must(nl.addRealServer(svc.key, came), "add dest");
      must(nl.editRealServer(svc.key, {gone.key, 0}), "weight 0");
      times.push_back(msSince(t1));
      perChange = nl.requests() - before;
    }
    std::printf(
        "kube-proxy mechanism: cold %.1f ms (%zu IPVS requests); one endpoint change "
        "%.3f ms (%llu requests, the list of %zu real servers included)\n",
        cold, dests.size() + 3, median(times), static_cast<unsigned long long>(perChange),
        cur.size());
    must(nl.deleteService(svc.key), "delete service");
  }
  {  // the nftables backend, same kernel
    freshNamespace();
    Cluster c(w);
    backends::nft::NftablesBackend backend(benchNet());
    auto t0 = Clock::now();
    must(backend.fullSync(c.state.state()), "nftables cold");
    const double cold = msSince(t0);
    uint64_t unused = 0;
    const double change = changeMedian(
        c, w, backend, changes, [] { return uint64_t{0}; }, &unused);
    std::printf("nftables backend: cold %.1f ms; one endpoint change %.3f ms (%zu netlink bytes)\n",
                cold, change, backend.lastStats().lastBytes);
    must(backend.cleanup(), "nftables cleanup");
  }
  return 0;
}

}  // namespace
}  // namespace sliceproxy::bench

int main(int argc, char** argv) {
  const int changes = argc > 1 ? std::max(1, std::atoi(argv[1])) : 9;
  // IPVS looks a new real server up in a list of the service's real servers, so a cold load is
  // quadratic in them: under software emulation 100,000 takes longer than a VM run may.
  const size_t endpoints = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 100000;
  return sliceproxy::bench::run(changes, endpoints);
}
