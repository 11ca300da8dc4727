#pragma once
// A client and a backend network namespace wired by veth pairs to the calling process's own
// (private) namespace, which plays the node: client 203.0.113.2 -- n0 203.0.113.1 [node]
// n1 10.244.0.1 -- backends 10.244.0.2 and 10.244.0.3; in IPv6 client 2001:db8:c::2 -- n0
// 2001:db8:c::1 [node] n1 fd00:244::1 -- backends fd00:244::2 and fd00:244::3. Named namespaces
// carry the test's pid, so parallel runs do not meet and a killed run's leftovers are found and
// removed. Helpers run servers and clients inside them in forked children (setns), never through a
// shell.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace sliceproxy::testing::topo {

inline int sh(const std::string& cmd) {
  return std::system(cmd.c_str());
}

struct Topology {
  std::string client, backend;  // namespace names
  bool up = false;

  bool create() {
    const int pid = getpid();
    // A killed run's namespaces: their pid is gone.
    // No /run/netns yet (no namespace named since boot): nothing left over.
    std::error_code none;
    for (const auto& e : std::filesystem::directory_iterator(
             "/run/netns", std::filesystem::directory_options::skip_permission_denied, none)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("spnp-", 0) != 0) continue;
      const std::string owner = n.substr(n.rfind('-') + 1);
      if (!std::filesystem::exists("/proc/" + owner)) sh("ip netns del " + n + " 2>/dev/null");
    }
    client = fmt::format("spnp-c-{}", pid);
    backend = fmt::format("spnp-b-{}", pid);
    up = sh(fmt::format(
             "set -e; ip netns add {c}; ip netns add {b};"
             // No duplicate address detection anywhere: the tests start at once.
             "for n in '' 'ip netns exec {c}' 'ip netns exec {b}'; do"
             "  $n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0;"
             "done;"
             "ip link set lo up;"
             "ip link add n0 type veth peer name c0 netns {c};"
             "ip link add n1 type veth peer name b0 netns {b};"
             "ip addr add 203.0.113.1/24 dev n0; ip link set n0 up;"
             "ip addr add 10.244.0.1/24 dev n1; ip link set n1 up;"
             "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0;"
             "ip -n {c} link set lo up; ip -n {c} addr add 203.0.113.2/24 dev c0;"
             "ip -n {c} link set c0 up; ip -n {c} route add default via 203.0.113.1;"
             "ip -n {b} link set lo up; ip -n {b} addr add 10.244.0.2/24 dev b0;"
             "ip -n {b} addr add 10.244.0.3/24 dev b0;"
             "ip -n {b} link set b0 up; ip -n {b} route add default via 10.244.0.1;"
             "sysctl -qw net.ipv6.conf.all.forwarding=1;"
             "ip addr add 2001:db8:c::1/64 dev n0 nodad; ip addr add fd00:244::1/64 dev n1 nodad;"
             "ip -n {c} addr add 2001:db8:c::2/64 dev c0 nodad;"
             "ip -n {c} -6 route add default via 2001:db8:c::1;"
             "ip -n {b} addr add fd00:244::2/64 dev b0 nodad;"
             "ip -n {b} addr add fd00:244::3/64 dev b0 nodad;"
             "ip -n {b} -6 route add default via fd00:244::1",
             fmt::arg("c", client), fmt::arg("b", backend))) == 0;
    // A veth sends frames that XDP on its own side redirected or bounced (XDP_TX) only when its
    // peer runs XDP too (or GRO): the namespaces' ends get a program that passes everything, so
    // the node's n0 and n1 can run the load balancer at native XDP.
    up = up && passXdp(client, "c0") && passXdp(backend, "b0");
    return up;
  }

  // In namespace ns: dev gets an XDP program that passes everything and no TX checksum offload.
  static bool passXdp(const std::string& ns, const char* dev) {
    bpf_insn insns[2] = {};
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = XDP_PASS
    insns[0].dst_reg = BPF_REG_0;
    insns[0].imm = XDP_PASS;
    insns[1].code = BPF_JMP | BPF_EXIT;
    const int prog = bpf_prog_load(BPF_PROG_TYPE_XDP, "xdp_pass", "GPL", insns, 2, nullptr);
    if (prog < 0) return false;
    const int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    const int there = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    bool ok = self >= 0 && there >= 0 && setns(there, CLONE_NEWNET) == 0;
    if (ok) {
      const int ifindex = static_cast<int>(if_nametoindex(dev));
      ok = ifindex > 0 && bpf_xdp_attach(ifindex, prog, XDP_FLAGS_DRV_MODE, nullptr) == 0;
      // And full checksums, as a wire delivers them: a veth hands its peer's XDP a partial
      // (offloaded) checksum, which a frame forwarded at XDP would keep.
      ethtool_value off{ETHTOOL_STXCSUM, 0};
      ifreq req{};
      std::strncpy(req.ifr_name, dev, IFNAMSIZ - 1);
      req.ifr_data = reinterpret_cast<char*>(&off);
      const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ok = ok && fd >= 0 && ioctl(fd, SIOCETHTOOL, &req) == 0;
      if (fd >= 0) close(fd);
      ok = setns(self, CLONE_NEWNET) == 0 && ok;
    }
    if (self >= 0) close(self);
    if (there >= 0) close(there);
    close(prog);  // the attachment holds the program
    return ok;
  }

  void destroy() {
    if (client.empty()) return;
    sh(fmt::format("ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null", client, backend));
    client.clear();
  }
};

// Moves the calling (forked) process into the named namespace.
inline bool enter(const std::string& ns) {
  int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

inline std::string sockStr(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    return fmt::format("[{}]:{}", buf, ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
  return fmt::format("{}:{}", buf, ntohs(a->sin_port));
}

inline sockaddr_storage sockAddr(const std::string& ip, uint16_t port, socklen_t* len = nullptr) {
  sockaddr_storage ss{};
  if (ip.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    if (len) *len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    if (len) *len = sizeof(sockaddr_in);
  }
  return ss;
}

// Forks a server in ns that answers every TCP connection and UDP datagram on each address with
// "<its address> <the peer's address>". Returns the child's pid (kill it with stopServer).
inline pid_t startServer(const std::string& ns, const std::vector<std::string>& addrs,
                         uint16_t port) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  pid_t pid = fork();
  if (pid != 0) {
    close(ready[1]);
    char c = 0;
    (void)!read(ready[0], &c, 1);
    close(ready[0]);
    return c == 'k' ? pid : -1;
  }
  close(ready[0]);
  if (!enter(ns)) _exit(1);
  std::vector<pollfd> fds;
  std::vector<int> types;
  for (const auto& ip : addrs) {
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
      socklen_t alen = 0;
      sockaddr_storage a = sockAddr(ip, port, &alen);
      int fd = socket(a.ss_family, type, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (bind(fd, reinterpret_cast<sockaddr*>(&a), alen) != 0) _exit(2);
      if (type == SOCK_STREAM) listen(fd, 64);
      fds.push_back({fd, POLLIN, 0});
      types.push_back(type);
    }
  }
  (void)!write(ready[1], "k", 1);
  close(ready[1]);
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      sockaddr_storage self{}, peer{};
      socklen_t sl = sizeof(self), pl = sizeof(peer);
      getsockname(fds[i].fd, reinterpret_cast<sockaddr*>(&self), &sl);
      if (types[i] == SOCK_STREAM) {
        int c = accept(fds[i].fd, reinterpret_cast<sockaddr*>(&peer), &pl);
        if (c < 0) continue;
        const std::string msg = sockStr(self) + " " + sockStr(peer);
        (void)!write(c, msg.data(), msg.size());
        close(c);
      } else {
        char buf[512];
        if (recvfrom(fds[i].fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &pl) < 0)
          continue;
        const std::string msg = sockStr(self) + " " + sockStr(peer);
        sendto(fds[i].fd, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&peer), pl);
      }
    }
  }
}

inline void stopServer(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// What a client saw: the answer, who it came from (UDP), or the error (errno name).
struct Answer {
  std::string text, from, error;
};

// One request from ns to ip:port over TCP or UDP (1 s timeout), from a forked child.
inline Answer request(const std::string& ns, const std::string& ip, uint16_t port, int type,
                      uint16_t localPort = 0) {
  int out[2];
  if (pipe(out) != 0) return {"", "", "pipe"};
  pid_t pid = fork();
  if (pid == 0) {
    close(out[0]);
    std::string result;
    auto finish = [&](const std::string& r) {
      (void)!write(out[1], r.data(), r.size());
      _exit(0);
    };
    if (!ns.empty() && !enter(ns)) finish("E|setns");  // "": the node itself
    socklen_t tolen = 0;
    sockaddr_storage to = sockAddr(ip, port, &tolen);
    int fd = socket(to.ss_family, type, 0);
    timeval tv{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (localPort) {
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      socklen_t llen = 0;
      sockaddr_storage l = sockAddr(to.ss_family == AF_INET6 ? "::" : "0.0.0.0", localPort, &llen);
      bind(fd, reinterpret_cast<sockaddr*>(&l), llen);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&to), tolen) != 0) {
      finish(std::string("E|") + strerrorname_np(errno));
    }
    if (type == SOCK_DGRAM) (void)!send(fd, "q", 1, 0);
    char buf[512];
    sockaddr_storage from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    if (n < 0) finish(std::string("E|") + strerrorname_np(errno));
    if (type == SOCK_STREAM) {
      socklen_t pl = sizeof(from);
      getpeername(fd, reinterpret_cast<sockaddr*>(&from), &pl);
    }
    finish("A|" + sockStr(from) + "|" + std::string(buf, static_cast<size_t>(n)));
  }
  close(out[1]);
  std::string r;
  char buf[512];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) r.append(buf, static_cast<size_t>(n));
  close(out[0]);
  waitpid(pid, nullptr, 0);
  Answer a;
  if (r.rfind("E|", 0) == 0) {
    a.error = r.substr(2);
  } else if (r.rfind("A|", 0) == 0) {
    const auto bar = r.find('|', 2);
    a.from = r.substr(2, bar - 2);
    a.text = r.substr(bar + 1);
  } else {
    a.error = "no result";
  }
  return a;
}

}  // namespace sliceproxy::testing::topo
