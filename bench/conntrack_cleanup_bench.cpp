// Conntrack stale-flow cleanup on the real kernel (issue 5). Targets: with 1,000,000 unrelated
// conntrack entries present plus 10,000 UDP flows to one service, removing one endpoint cleans
// its flows in <= 20 ms, and memory does not grow with the table size.
//
// The process forks a worker (the parent only raises nf_conntrack_max, which is writable in the
// initial namespace only, and restores it at the end). The worker forks a scratch process that
// unshares a network namespace and fills it with the unrelated entries (the kernel keeps one
// conntrack hash table for all namespaces, so every walk in the node's namespace goes over them
// too), then unshares its own "node" namespace, inserts the service's flows there and runs the
// cleanup exactly as the daemon does after a sync: StaleFlowCleanup::afterSync(diff).
//
//   bench_conntrack_cleanup [--unrelated N] [--flows M] [--endpoints K] [--removals R]
//                           [--same-netns]   (unrelated UDP entries in the node's own namespace)
//                           [--daemon PATH]  (then also run the real daemon there: its memory
//                                             and its cleanup time, from its own log)
//                           [--walk]         (no flow record: every removal walks the table)
//
// By default the nftables backend programs the node namespace and its flow record holds the
// service's flows (recorded here as the data plane records them from packets, since the flows
// are created through ctnetlink), so removals are answered by exact tuple, as in the daemon.

#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backends/nftables/nftables_backend.h"
#include "conntrack/ctnetlink.h"
#include "conntrack/netfilter_cleaner.h"
#include "conntrack/stale_flow_cleanup.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"
#include "tests/unit/builders.h"

namespace {

using namespace sliceproxy;
using conntrack::Flow;
using Clock = std::chrono::steady_clock;

struct Options {
  size_t unrelated = 1000000, flows = 10000, endpoints = 10, removals = 5;
  bool sameNetns = false, walk = false;
  std::string daemon;
};

template <typename D>
double ms(D d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

long statusKiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  }
  return -1;
}

std::string readFile(const char* path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

bool writeFile(const char* path, const std::string& v) {
  std::ofstream out(path);
  out << v;
  return static_cast<bool>(out.flush());
}

proxier::IpAddr v4(uint32_t a) {
  proxier::IpAddr ip;
  ip.bytes[0] = static_cast<uint8_t>(a >> 24);
  ip.bytes[1] = static_cast<uint8_t>(a >> 16);
  ip.bytes[2] = static_cast<uint8_t>(a >> 8);
  ip.bytes[3] = static_cast<uint8_t>(a);
  return ip;
}

// Inserts flows produced by make(i), 512 per netlink batch; returns the number inserted.
template <typename Make>
size_t fill(size_t n, Make make) {
  std::string error;
  auto sock = conntrack::CtSocket::open(error);
  if (!sock) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 0;
  }
  std::vector<Flow> batch;
  std::vector<const Flow*> ptrs;
  std::vector<int> res;
  size_t ok = 0, failed = 0;
  for (size_t i = 0; i < n;) {
    batch.clear();
    for (; i < n && batch.size() < conntrack::CtSocket::kMaxBatch; ++i) batch.push_back(make(i));
    ptrs.clear();
    for (const auto& f : batch) ptrs.push_back(&f);
    sock->insertFlows(ptrs, 3600, res);
    for (int r : res) {
      if (r == 0) {
        ++ok;
      } else if (failed++ < 3) {
        std::fprintf(stderr, "insert failed: %s\n", std::strerror(r));
      }
    }
  }
  return ok;
}

// Unrelated UDP flows: 10.x.y.z:p -> 100.64.y.z:443, untranslated.
Flow unrelatedFlow(size_t i) {
  Flow f;
  f.proto = IPPROTO_UDP;
  f.orig.src = v4(0x0A000000u + static_cast<uint32_t>(i));
  f.orig.dst = v4(0x64400000u + static_cast<uint32_t>(i & 0xffff));
  f.orig.sport = static_cast<uint16_t>(1024 + i % 50000);
  f.orig.dport = 443;
  f.reply = {f.orig.dst, f.orig.src, f.orig.dport, f.orig.sport};
  return f;
}

const proxier::IpAddr kVip = *proxier::IpAddr::parse("10.96.0.10");

// Client i of the service: 172.16.x.y:port -> 10.96.0.10:53, DNATed to endpoint i % k.
Flow serviceFlow(size_t i, size_t k) {
  Flow f;
  f.proto = IPPROTO_UDP;
  f.orig.src = v4(0xAC100000u + static_cast<uint32_t>(i));
  f.orig.dst = kVip;
  f.orig.sport = static_cast<uint16_t>(20000 + i % 40000);
  f.orig.dport = 53;
  f.reply.src = v4(0x0AF40001u + static_cast<uint32_t>(i % k));  // 10.244.0.1 + i % k
  f.reply.dst = f.orig.src;
  f.reply.sport = 5353;
  f.reply.dport = f.orig.sport;
  return f;
}

// The flows as the nftables data plane records them from their packets.
void recordServiceFlows(size_t n, size_t k) {
  std::vector<proxier::RecordedFlow> rec;
  for (size_t i = 0; i < n; ++i) {
    Flow f = serviceFlow(i, k);
    rec.push_back({f.family, f.proto, f.orig.src, f.orig.dst, f.reply.src, f.orig.sport,
                   f.orig.dport, f.reply.sport});
  }
  std::string error;
  backends::nft::FlowRecord().recordFlows(rec, error);
  if (!error.empty()) std::fprintf(stderr, "recording the service flows: %s\n", error.c_str());
}

std::string endpointAddr(size_t e) {
  return v4(0x0AF40001u + static_cast<uint32_t>(e)).str();
}

proxier::SlicePtr sliceWithout(size_t k, size_t removedCount) {
  std::vector<testing::Ep> eps;
  for (size_t e = removedCount; e < k; ++e) eps.push_back({endpointAddr(e)});
  return testing::slice("dns-1", "dns", eps, {{"dns", proxier::Protocol::UDP, 5353}});
}

// The real daemon in this namespace: its memory before and after one endpoint removal, and the
// cleanup time it logs.
struct DaemonLog {
  std::mutex mu;
  std::vector<std::string> lines;
  bool has(const std::string& text, std::string* line = nullptr) {
    std::lock_guard lock(mu);
    for (const auto& l : lines) {
      if (l.find(text) != std::string::npos) {
        if (line) *line = l;
        return true;
      }
    }
    return false;
  }
};

long pidStatusKiB(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  }
  return -1;
}

std::string sliceYaml(size_t k, size_t from) {
  std::string eps;
  for (size_t e = from; e < k; ++e) {
    eps += "  - addresses: [\"" + endpointAddr(e) + "\"]\n    conditions: {ready: true}\n";
  }
  return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: dns-1\n"
         "  namespace: default\n  labels: {kubernetes.io/service-name: dns}\naddressType: IPv4\n"
         "ports: [{name: dns, protocol: UDP, port: 5353}]\nendpoints:\n" +
         eps;
}

void writeAtomically(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string tmp = dir + "/." + name + ".tmp";
  std::ofstream(tmp) << text;
  std::rename(tmp.c_str(), (dir + "/" + name).c_str());
}

std::string runDaemon(const Options& o) {
  char tmpl[] = "/tmp/sliceproxy-ctbench-XXXXXX";
  if (!mkdtemp(tmpl)) return "  daemon: cannot create a manifest directory\n";
  const std::string dir = tmpl;
  writeAtomically(dir, "node.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n");
  const std::string svc =
      "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: default}\nspec:\n"
      "  clusterIP: 10.96.0.10\n  ports: [{name: dns, protocol: UDP, port: 53, targetPort: 5353}]\n"
      "---\n";
  writeAtomically(dir, "dns.yaml", svc + sliceYaml(o.endpoints, 0));
  int fds[2];
  if (pipe(fds) != 0) return "  daemon: pipe failed\n";
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    const char* argv[] = {o.daemon.c_str(),
                          "--backend",
                          "nftables",
                          "--source-dir",
                          dir.c_str(),
                          "--hostname-override",
                          "node-a",
                          "--min-sync-period",
                          "1s",
                          "--healthz-bind-address",
                          "",
                          "--metrics-bind-address",
                          "",
                          "--debug-port",
                          "0",
                          "-v",
                          "2",
                          nullptr};
    execv(argv[0], const_cast<char**>(argv));
    _exit(127);
  }
  close(fds[1]);
  DaemonLog log;
  std::thread reader([&] {
    FILE* in = fdopen(fds[0], "r");
    char buf[4096];
    while (in && fgets(buf, sizeof(buf), in)) {
      std::lock_guard lock(log.mu);
      log.lines.emplace_back(buf);
    }
    if (in) fclose(in);
  });
  auto waitFor = [&](const std::string& text, double seconds, std::string* line = nullptr) {
    const auto end = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < end) {
      if (log.has(text, line)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  std::string out;
  std::string sweepLine;
  const bool started =
      waitFor("full sync", 30) && waitFor("conntrack: sweep examined", 60, &sweepLine);
  if (!started) {
    out = "  daemon: did not start (see its log)\n";
  } else {
    // Put back the flows the in-process run deleted, so every endpoint has M/K flows again.
    fill(o.flows, [&](size_t i) { return serviceFlow(i, o.endpoints); });
    if (!o.walk) recordServiceFlows(o.flows, o.endpoints);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // past --min-sync-period
    const long rss0 = pidStatusKiB(pid, "VmRSS:"), hwm0 = pidStatusKiB(pid, "VmHWM:");
    writeAtomically(dir, "dns.yaml", svc + sliceYaml(o.endpoints, 1));
    std::string line;
    if (waitFor("stale flows deleted", 30, &line)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      const long rss1 = pidStatusKiB(pid, "VmRSS:"), hwm1 = pidStatusKiB(pid, "VmHWM:");
      auto trim = [](std::string l) {
        auto p = l.find("conntrack:");
        l = p == std::string::npos ? l : l.substr(p);
        while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
        return l;
      };
      out += "  daemon startup sweep: " + trim(sweepLine) + "\n";
      out += "  daemon, one endpoint removed: " + trim(line) + "\n";
      out += fmt::format(
          "  daemon memory: VmRSS {} KiB before the removal, {} KiB after; VmHWM {} "
          "-> {} KiB\n",
          rss0, rss1, hwm0, hwm1);
    } else {
      out += "  daemon: no cleanup logged within 30 s\n";
    }
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  reader.join();
  std::filesystem::remove_all(dir);
  return out;
}

int runWorker(const Options& o) {
  const pid_t self = getpid();
  pid_t scratch = 0;
  double fillMs = 0;
  if (o.unrelated > 0 && !o.sameNetns) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    const auto t0 = Clock::now();
    scratch = fork();
    if (scratch == 0) {
      if (unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare");
        _exit(1);
      }
      size_t n = fill(o.unrelated, unrelatedFlow);
      if (write(fds[1], &n, sizeof(n)) != sizeof(n)) _exit(1);
      for (;;) pause();
    }
    size_t n = 0;
    if (read(fds[0], &n, sizeof(n)) != sizeof(n) || n != o.unrelated) {
      std::fprintf(stderr, "scratch namespace holds %zu of %zu entries\n", n, o.unrelated);
      kill(scratch, SIGKILL);
      return 1;
    }
    fillMs = ms(Clock::now() - t0);
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  if (o.unrelated > 0 && o.sameNetns) {
    const auto t0 = Clock::now();
    if (fill(o.unrelated, unrelatedFlow) != o.unrelated) return 1;
    fillMs = ms(Clock::now() - t0);
  }
  if (fill(o.flows, [&](size_t i) { return serviceFlow(i, o.endpoints); }) != o.flows) return 1;

  // The proxier side: one UDP service with k endpoints, programmed (full sync), then one
  // endpoint removed per sync.
  proxier::ChangeTracker tracker("node-a", {});
  proxier::NodeState state("node-a");
  testing::SvcSpec spec;
  spec.name = "dns";
  spec.clusterIPs = {"10.96.0.10"};
  spec.ports = {{"dns", proxier::Protocol::UDP, 53, 0, {5353, ""}}};
  tracker.upsertService(testing::service(spec));
  tracker.upsertSlice(sliceWithout(o.endpoints, 0));
  state.apply(tracker.take(), false);
  conntrack::CleanupOptions copts;
  copts.worker = false;  // timed here, step by step
  copts.sweepAfterStart = false;
  // The data plane, for its flow record.
  backends::nft::NftablesBackend backend{proxier::NetworkConfig{}};
  auto cleaner = std::make_unique<conntrack::NetfilterCleaner>();
  if (!o.walk) {
    if (auto r = backend.fullSync(state.state()); !r.ok) {
      std::fprintf(stderr, "programming nftables: %s\n", r.error.c_str());
      return 1;
    }
    recordServiceFlows(o.flows, o.endpoints);
    backend.flowRecord().markSeeded(backend.flowRecord().generation());
    cleaner->setFlowIndex(backend.flowIndex());
  }
  conntrack::StaleFlowCleanup cleanup(std::move(cleaner), state, nullptr, copts);
  conntrack::NetfilterCleaner walker;  // no record: what a walk costs
  proxier::Diff none;
  cleanup.afterSync(none, true);
  cleanup.runPending();

  const size_t heap0 = mallinfo2().uordblks;
  const long rss0 = statusKiB("VmRSS:");
  std::vector<double> took;
  std::vector<uint64_t> deleted;
  for (size_t r = 1; r <= o.removals && r < o.endpoints; ++r) {
    tracker.upsertSlice(sliceWithout(o.endpoints, r));
    proxier::Diff diff = state.apply(tracker.take());
    const uint64_t before = cleanup.deletedTotal();
    const auto t0 = Clock::now();
    cleanup.afterSync(diff, false);
    cleanup.runPending();
    took.push_back(ms(Clock::now() - t0));
    deleted.push_back(cleanup.deletedTotal() - before);
  }
  // The kernel walk alone: an endpoint that answers no flow.
  conntrack::FlowSelector none1;
  none1.reason = conntrack::StaleReason::EndpointGone;
  none1.proto = IPPROTO_UDP;
  none1.dst = kVip;
  none1.dport = 53;
  none1.endpoint = *proxier::IpAddr::parse("10.244.99.99");
  none1.endpointPort = 5353;
  std::vector<double> walk;
  std::string phases;
  {
    // One removal again, timed by phase, through the cleaner directly.
    tracker.upsertSlice(sliceWithout(o.endpoints, o.removals + 1));
    proxier::Diff diff = state.apply(tracker.take());
    conntrack::FlowSelector gone = none1;
    gone.endpoint = *proxier::IpAddr::parse(endpointAddr(o.removals));
    auto res = cleanup.cleaner().deleteFlows({&gone, 1});
    phases = fmt::format(
        "  phases of one removal: total {:.2f} ms, of which {:.2f} ms in delete "
        "batches ({} deleted, {} examined, {} kernel walks, {} flow record lookups)\n",
        ms(res.took), ms(res.deleting), res.deleted, res.examined, res.dumps, res.recordLookups);
  }
  for (int i = 0; i < 5; ++i) {
    auto res = walker.deleteFlows({&none1, 1});
    walk.push_back(ms(res.took));
  }
  const auto s0 = Clock::now();
  auto sweep = cleanup.sweepNow();
  const double sweepMs = ms(Clock::now() - s0);
  const size_t heap1 = mallinfo2().uordblks;
  const long rss1 = statusKiB("VmRSS:");

  std::sort(took.begin(), took.end());
  std::sort(walk.begin(), walk.end());
  std::printf("conntrack cleanup bench (pid %d)\n", static_cast<int>(self));
  std::printf(
      "  unrelated entries: %zu (%s), fill %.0f ms; service flows: %zu over %zu endpoints\n",
      o.unrelated, o.sameNetns ? "same namespace, UDP" : "scratch namespace, UDP", fillMs, o.flows,
      o.endpoints);
  std::printf("  nf_conntrack_buckets %s, node namespace count %s\n",
              readFile("/proc/sys/net/netfilter/nf_conntrack_buckets").c_str(),
              readFile("/proc/sys/net/netfilter/nf_conntrack_count").c_str());
  for (size_t i = 0; i < deleted.size(); ++i) {
    std::printf("  removal %zu: %lu flows deleted\n", i + 1,
                static_cast<unsigned long>(deleted[i]));
  }
  std::printf("%s", phases.c_str());
  if (!took.empty()) {
    std::printf(
        "  remove one endpoint (afterSync + runPending: plan, kernel walk, deletes): median %.2f "
        "ms, "
        "min %.2f, max %.2f (n=%zu)\n",
        took[took.size() / 2], took.front(), took.back(), took.size());
  }
  std::printf("  kernel-filtered walk that matches nothing: median %.2f ms, min %.2f, max %.2f\n",
              walk[walk.size() / 2], walk.front(), walk.back());
  std::printf("  sweep (UDP+SCTP, both families): %.1f ms, %lu flows examined, %lu deleted\n",
              sweepMs, static_cast<unsigned long>(sweep.examined),
              static_cast<unsigned long>(sweep.deleted));
  std::printf(
      "  heap held across the removals and the sweep: %+ld bytes; VmRSS %ld -> %ld KiB, "
      "VmHWM %ld KiB\n",
      static_cast<long>(heap1) - static_cast<long>(heap0), rss0, rss1, statusKiB("VmHWM:"));
  if (!o.daemon.empty()) std::printf("%s", runDaemon(o).c_str());
  std::fflush(stdout);
  if (scratch) {
    kill(scratch, SIGKILL);
    waitpid(scratch, nullptr, 0);
  }
  const bool ok = !deleted.empty() && std::all_of(deleted.begin(), deleted.end(), [&](uint64_t d) {
    return d == o.flows / o.endpoints;
  });
  if (!ok) std::fprintf(stderr, "unexpected number of deleted flows\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> size_t {
      return i + 1 < argc ? std::strtoull(argv[++i], nullptr, 10) : 0;
    };
    if (a == "--unrelated")
      o.unrelated = next();
    else if (a == "--flows")
      o.flows = next();
    else if (a == "--endpoints")
      o.endpoints = next();
    else if (a == "--removals")
      o.removals = next();
    else if (a == "--same-netns")
      o.sameNetns = true;
    else if (a == "--walk")
      o.walk = true;
    else if (a == "--daemon" && i + 1 < argc)
      o.daemon = argv[++i];
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);
  const char* maxPath = "/proc/sys/net/netfilter/nf_conntrack_max";
  const std::string oldMax = readFile(maxPath);
  const size_t need = o.unrelated + o.flows + 100000;
  if (std::strtoull(oldMax.c_str(), nullptr, 10) < need &&
      !writeFile(maxPath, std::to_string(need))) {
    std::fprintf(stderr, "cannot raise %s to %zu (needs root in the initial namespace)\n", maxPath,
                 need);
    return 1;
  }
  pid_t worker = fork();
  if (worker == 0) _exit(runWorker(o));
  int status = 0;
  waitpid(worker, &status, 0);
  if (readFile(maxPath) != oldMax) writeFile(maxPath, oldMax);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
