// The eBPF backend's sockmap shortcut, with and without (issue 15): same-node TCP through a
// ClusterIP, request/response latency (64-byte request, 64-byte answer, one connection) and
// stream throughput (one connection, one direction). Rounds alternate shortcut on / off so the
// noise of a shared machine falls on both. Needs root: it moves itself into its own network
// and mount namespaces, a private bpf filesystem and a child cgroup (the only one hooked).
// Usage: bench_sockmap [rounds=6] [rr_per_round=3000] [stream_mib=256]

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "backends/ebpf/ebpf_backend.h"
#include "backends/ebpf/sock_lb_loader.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"
#include "tests/unit/builders.h"

using namespace sliceproxy;
using Clock = std::chrono::steady_clock;

namespace {

std::string gCgroup, gPinDir;

sockaddr_in addr(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// A blocking read of a socket in the sockhash can fail with EAGAIN when something else than
// data wakes it (tcp_bpf_recvmsg, seen on 6.18: the ACKs freeing send-buffer space do): count
// them and read again, as an application would have to.
std::atomic<uint64_t> gEagain{0};

bool full(int fd, char* p, size_t n, bool rd) {
  while (n > 0) {
    ssize_t r = rd ? read(fd, p, n) : write(fd, p, n);
    if (r < 0 && errno == EAGAIN) {
      ++gEagain;
      continue;
    }
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

struct Round {
  std::vector<double> rttUs;
  double mibPerSec = 0;
  uint64_t eagain = 0;
};

// In a child that entered the cgroup: a server on the endpoint, a client through the ClusterIP.
// Writes the round-trip times (us) then the throughput into `out`.
void enterCgroup() {
  int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
  if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
  close(cg);
}

// topo 0: lo; 1: veth; 2: veth with the server outside the cgroup, the cost side: the client
// joins the sockhash and pays for its send path, but finds no peer (as with a remote server).
void measure(int out, int rr, size_t streamBytes, int topo) {
  const bool veth = topo > 0;
  // Sockets belong to the cgroup of the process that creates them (accepted ones to the
  // listener's).
  if (topo != 2) enterCgroup();
  int one = 1;
  const char* epIp = veth ? "10.244.2.1" : "10.244.1.1";
  sockaddr_in ep = addr(epIp, 8080), svc = addr(veth ? "10.96.0.11" : "10.96.0.10", 80);
  std::promise<void> listening;
  std::thread server([&] {
    // veth: the server is a pod, in its own network namespace behind a veth pair.
    if (veth) {
      int ns = open("/run/netns/smpod", O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) _exit(9);
      close(ns);
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, reinterpret_cast<sockaddr*>(&ep), sizeof(ep)) != 0 || listen(lfd, 4) != 0) {
      _exit(4);
    }
    listening.set_value();
    for (int conn = 0; conn < 2; ++conn) {
      int c = accept(lfd, nullptr, nullptr);
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::vector<char> buf(1 << 16);
      if (conn == 0) {
        while (full(c, buf.data(), 64, true) && full(c, buf.data(), 64, false)) {
        }
      } else {
        while (read(c, buf.data(), buf.size()) > 0) {
        }
        (void)!write(c, "k", 1);
      }
      close(c);
    }
    close(lfd);
  });
  listening.get_future().wait();
  if (topo == 2) enterCgroup();
  std::vector<double> us;
  for (int conn = 0; conn < 2; ++conn) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, reinterpret_cast<sockaddr*>(&svc), sizeof(svc)) != 0) _exit(5);
    std::vector<char> buf(1 << 16, 'x');
    if (conn == 0) {
      for (int i = 0; i < rr + 100; ++i) {
        auto t0 = Clock::now();
        if (!full(fd, buf.data(), 64, false) || !full(fd, buf.data(), 64, true)) _exit(6);
        if (i >= 100)
          us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      close(fd);
    } else {
      auto t0 = Clock::now();
      for (size_t sent = 0; sent < streamBytes; sent += buf.size()) {
        if (!full(fd, buf.data(), buf.size(), false)) _exit(7);
      }
      shutdown(fd, SHUT_WR);
      char k;
      if (!full(fd, &k, 1, true)) _exit(8);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      close(fd);
      us.push_back(static_cast<double>(gEagain.load()));
      us.push_back(-static_cast<double>(streamBytes) / (1 << 20) / s);  // negative: throughput
    }
  }
  server.join();
  (void)!write(out, us.data(), us.size() * sizeof(double));
}

Round runRound(int rr, size_t streamBytes, int topo) {
  int p[2];
  if (pipe(p) != 0) std::exit(1);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    measure(p[1], rr, streamBytes, topo);
    _exit(0);
  }
  close(p[1]);
  std::vector<double> v;
  double x;
  while (read(p[0], &x, sizeof(x)) == sizeof(x)) v.push_back(x);
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || v.empty()) {
    std::fprintf(stderr, "round failed: status %d\n", st);
    std::exit(1);
  }
  Round r;
  r.mibPerSec = -v.back();
  v.pop_back();
  r.eagain = static_cast<uint64_t>(v.back());
  v.pop_back();
  r.rttUs = std::move(v);
  return r;
}

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 6;
  const int rr = argc > 2 ? std::atoi(argv[2]) : 3000;
  const size_t streamBytes = (argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 256) << 20;
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0 ||
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("bench_sockmap needs root: unshare");
    return 1;
  }
  char dir[] = "/tmp/sliceproxy-sockmap-bench-XXXXXX";
  if (!mkdtemp(dir) || mount("bpf", dir, "bpf", 0, nullptr) != 0) {
    std::perror("mounting a private bpf filesystem");
    return 1;
  }
  gPinDir = std::string(dir) + "/sliceproxy";
  gCgroup =
      fmt::format("{}/sliceproxy-sockmap-bench-{}", backends::ebpf::defaultCgroupRoot(), getpid());
  if (mkdir(gCgroup.c_str(), 0755) != 0) {
    std::perror(gCgroup.c_str());
    return 1;
  }
  // Also on a failed round's exit: the children are gone by then, so the cgroup is empty.
  std::atexit([] { rmdir(gCgroup.c_str()); });
  // lo: client and server in one network namespace (host processes, or containers sharing
  // one); veth: the server is a pod in its own namespace behind a veth pair.
  int rc = std::system(
      "ip link set lo up && ip addr add 10.244.1.1/32 dev lo && mkdir -p /run/netns && "
      "mount -t tmpfs none /run/netns && ip netns add smpod && "
      "ip link add smh type veth peer name smp netns smpod && "
      "ip addr add 10.244.2.254/24 dev smh && ip link set smh up && "
      "ip -n smpod addr add 10.244.2.1/24 dev smp && ip -n smpod link set smp up && "
      "ip -n smpod link set lo up && ip -n smpod route add default via 10.244.2.254");
  proxier::ChangeTracker tracker{"node-a", {}};
  proxier::NodeState state{"node-a"};
  // Two ClusterIP services with an endpoint on this node each: 10.96.0.10:80 ->
  // 10.244.1.1:8080 (lo), 10.96.0.11:80 -> 10.244.2.1:8080 (veth).
  for (auto [name, vip, ep] : {std::tuple{"lo", "10.96.0.10", "10.244.1.1"},
                               std::tuple{"veth", "10.96.0.11", "10.244.2.1"}}) {
    testing::SvcSpec s;
    s.name = name;
    s.clusterIPs = {vip};
    s.ports = {{"p", proxier::Protocol::TCP, 80, 0, {8080, ""}}};
    tracker.upsertService(testing::service(s));
    tracker.upsertSlice(
        testing::slice(name, name, {{ep, "node-a"}}, {{"p", proxier::Protocol::TCP, 8080}}));
  }
  state.apply(tracker.take(), false);
  for (int topo : {0, 1, 2}) {
    if (rc != 0) break;
    const char* topoName = topo == 0 ? "lo" : topo == 1 ? "veth" : "out";
    std::vector<double> rtt[2], tput[2];
    uint64_t eagain[2] = {0, 0};
    for (int i = 0; rc == 0 && i < 2 * rounds; ++i) {
      const bool on = (i % 2 == 0) == ((i / 2) % 2 == 0);  // on,off,off,on,on,off,...
      proxier::NetworkConfig net;
      net.cgroupRoot = gCgroup;
      net.bpfPinDir = gPinDir;
      net.sockmapShortcut = on;
      backends::ebpf::EbpfBackend backend(net);
      auto res = backend.fullSync(state.state());
      if (!res.ok) {
        std::fprintf(stderr, "%s\n", res.error.c_str());
        rc = 1;
        break;
      }
      Round r = runRound(rr, streamBytes, topo);
      if (on && (backend.sockmapPrograms()->counters().redirects == 0) != (topo == 2)) {
        std::fprintf(stderr, "shortcut on: redirects where none belong, or none\n");
        rc = 1;
      }
      rtt[on].insert(rtt[on].end(), r.rttUs.begin(), r.rttUs.end());
      tput[on].push_back(r.mibPerSec);
      eagain[on] += r.eagain;
      std::printf(
          "%-4s round %2d shortcut %-3s rr p50 %6.1f us p99 %6.1f us  stream %7.0f MiB/s  EAGAIN "
          "%llu\n",
          topoName, i, on ? "on" : "off", pct(r.rttUs, 0.5), pct(r.rttUs, 0.99), r.mibPerSec,
          static_cast<unsigned long long>(r.eagain));
      std::fflush(stdout);
      if (topo == 2 && i == 2 * rounds - 1) backend.cleanup();
    }
    if (rc == 0) {
      for (int on : {0, 1}) {
        std::printf(
            "%-4s shortcut %-3s: rr p50 %.1f us, p99 %.1f us (%zu round trips); stream median %.0f "
            "MiB/s (min %.0f, max %.0f); blocking reads failed with EAGAIN: %llu\n",
            topoName, on ? "on" : "off", pct(rtt[on], 0.5), pct(rtt[on], 0.99), rtt[on].size(),
            pct(tput[on], 0.5), *std::min_element(tput[on].begin(), tput[on].end()),
            *std::max_element(tput[on].begin(), tput[on].end()),
            static_cast<unsigned long long>(eagain[on]));
      }
    }
  }
  if (rc == 0) {
    std::ifstream la("/proc/loadavg");
    std::string load;
    std::getline(la, load);
    std::printf("load average at the end: %s\n", load.c_str());
  }
  rmdir(gCgroup.c_str());
  umount2(dir, MNT_DETACH);
  rmdir(dir);
  return rc;
}
