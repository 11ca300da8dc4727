// The eBPF backend's socket programs against the real kernel, observed by real applications.
// main() moves this process into its own network and mount namespaces, mounts a private bpf
// filesystem for the pins and creates a child cgroup under the cgroup2 mount: the programs are
// attached there only, and only the forked clients of these tests enter it. Backend servers run
// in this (unhooked) process on addresses added to the namespace's loopback.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../unit/builders.h"
#include "backends/ebpf/ebpf_backend.h"
#include "backends/ebpf/pod_hairpin.h"
#include "backends/ebpf/sock_lb_loader.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::testing {
namespace {

std::string gPinDir, gCgroup;

int shell(const std::string& cmd) {
  return std::system(cmd.c_str());
}

// --- addresses ---------------------------------------------------------------------------

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  static Addr of(const std::string& ip, uint16_t port) {
    Addr a;
    if (ip.find(':') == std::string::npos) {
      auto* s = reinterpret_cast<sockaddr_in*>(&a.ss);
      s->sin_family = AF_INET;
      s->sin_port = htons(port);
      inet_pton(AF_INET, ip.c_str(), &s->sin_addr);
      a.len = sizeof(sockaddr_in);
    } else {
      auto* s = reinterpret_cast<sockaddr_in6*>(&a.ss);
      s->sin6_family = AF_INET6;
      s->sin6_port = htons(port);
      inet_pton(AF_INET6, ip.c_str(), &s->sin6_addr);
      a.len = sizeof(sockaddr_in6);
    }
    return a;
  }
  int family() const { return ss.ss_family; }
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

std::string str(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &s->sin_addr, buf, sizeof(buf));
    return fmt::format("{}:{}", buf, ntohs(s->sin_port));
  }
  auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof(buf));
  return fmt::format("[{}]:{}", buf, ntohs(s->sin6_port));
}

// --- backend servers (in this process, outside the cgroup) -------------------------------

// Answers every TCP connection and UDP datagram with the address it was reached at.
class Servers {
 public:
  void listen(const std::string& ip, uint16_t port) {
    for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
      Addr a = Addr::of(ip, port);
      int fd = socket(a.family(), type | SOCK_CLOEXEC, 0);
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (bind(fd, a.sa(), a.len) != 0) {
        ADD_FAILURE() << "bind " << ip << ": " << std::strerror(errno);
        close(fd);
        continue;
      }
      if (type == SOCK_STREAM) ::listen(fd, 64);
      // Wakes up every 50 ms to notice stop_ (shutdown() does not wake a UDP recvfrom).
      timeval tv{0, 50000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      const std::string name = str(a.ss);
      fds_.push_back(fd);
      threads_.emplace_back([this, fd, type, name] {
        char buf[64];
        while (!stop_) {
          if (type == SOCK_STREAM) {
            int c = accept(fd, nullptr, nullptr);
            if (c < 0) continue;
            (void)!write(c, name.data(), name.size());
            close(c);
          } else {
            sockaddr_storage from{};
            socklen_t len = sizeof(from);
            if (recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len) < 0) {
              continue;
            }
            sendto(fd, name.data(), name.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
          }
        }
      });
    }
  }
  ~Servers() {
    stop_ = true;
    for (auto& t : threads_) t.join();
    for (int fd : fds_) close(fd);
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

// --- clients -----------------------------------------------------------------------------

// What a client saw: the reply (the backend's address), the peer (getpeername) or the source
// of the reply (recvfrom), or the errno that failed it.
struct Seen {
  std::string reply, peer, error;
};

enum class Mode { Tcp, UdpConnected, UdpUnconnected };

Seen dial(Mode mode, const Addr& to) {
  Seen s;
  const int type = mode == Mode::Tcp ? SOCK_STREAM : SOCK_DGRAM;
  int fd = socket(to.family(), type | SOCK_CLOEXEC, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  auto failed = [&](const char* what) {
    s.error = fmt::format("{}: {}", what, std::strerror(errno));
    close(fd);
    return s;
  };
  char buf[128] = {};
  sockaddr_storage peer{};
  socklen_t len = sizeof(peer);
  if (mode == Mode::UdpUnconnected) {
    if (sendto(fd, "?", 1, 0, to.sa(), to.len) < 0) return failed("sendto");
    ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&peer), &len);
    if (n < 0) return failed("recvfrom");
    s.reply.assign(buf, n);
    s.peer = str(peer);
  } else {
    if (connect(fd, to.sa(), to.len) != 0) return failed("connect");
    if (mode == Mode::UdpConnected && send(fd, "?", 1, 0) < 0) return failed("send");
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
      return failed("getpeername");
    }
    s.peer = str(peer);
    if (mode == Mode::UdpConnected) {
      // recvfrom on a connected socket still reports the source: recvmsg's hook rewrites it.
      sockaddr_storage src{};
      socklen_t slen = sizeof(src);
      ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&src), &slen);
      if (n < 0) return failed("recv");
      s.reply.assign(buf, n);
      if (str(src) != s.peer) s.error = "recvfrom source " + str(src) + " != peer " + s.peer;
    } else {
      ssize_t n = read(fd, buf, sizeof(buf) - 1);
      if (n < 0) return failed("read");
      s.reply.assign(buf, n);
    }
  }
  close(fd);
  return s;
}

// Runs `n` dials in a child process that first moves itself into the test cgroup (sockets
// belong to the cgroup of the process that creates them).
std::vector<Seen> dialFromCgroup(Mode mode, const Addr& to, int n = 1) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    std::string out;
    for (int i = 0; i < n; ++i) {
      Seen s = dial(mode, to);
      out += s.reply + "\t" + s.peer + "\t" + s.error + "\n";
    }
    (void)!write(pipefd[1], out.data(), out.size());
    _exit(0);
  }
  close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t r;
  while ((r = read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, r);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "client status " << status;
  std::vector<Seen> seen;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t eol = out.find('\n', pos);
    std::string line = out.substr(pos, eol - pos);
    pos = eol + 1;
    Seen s;
    size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    s.reply = line.substr(0, t1);
    s.peer = line.substr(t1 + 1, t2 - t1 - 1);
    s.error = line.substr(t2 + 1);
    seen.push_back(s);
  }
  return seen;
}

std::set<std::string> replies(const std::vector<Seen>& seen) {
  std::set<std::string> out;
  for (const auto& s : seen) {
    EXPECT_EQ(s.error, "");
    out.insert(s.reply);
  }
  return out;
}

// --- fixture -----------------------------------------------------------------------------

NetworkConfig net() {
  NetworkConfig n;
  n.cgroupRoot = gCgroup;
  n.bpfPinDir = gPinDir;
  return n;
}

class EbpfSockLbTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(backend->cleanup().ok); }
  void TearDown() override {
    auto r = backend->cleanup();
    EXPECT_TRUE(r.ok) << r.error;
  }
  Diff sync() { return state.apply(tracker.take()); }
  void addService(const std::string& name, std::vector<std::string> clusterIPs,
                  Protocol proto = Protocol::TCP,
                  SessionAffinity affinity = SessionAffinity::None) {
    SvcSpec s;
    s.name = name;
    s.clusterIPs = std::move(clusterIPs);
    s.ports = {{"p", proto, 80, 0, {8080, ""}}};
    auto svc = std::const_pointer_cast<Service>(service(s));
    svc->sessionAffinity = affinity;
    tracker.upsertService(svc);
  }
  void setEndpoints(const std::string& slice, const std::string& svc, std::vector<Ep> eps,
                    Protocol proto = Protocol::TCP) {
    tracker.upsertSlice(testing::slice(slice, svc, std::move(eps), {{"p", proto, 8080}}));
  }
  void fullSync() {
    state.apply(tracker.take(), false);
    auto r = backend->fullSync(state.state());
    ASSERT_TRUE(r.ok) << r.error;
  }
  void applyChanges() {
    auto r = backend->apply(sync());
    ASSERT_TRUE(r.ok) << r.error;
  }
  void staleUdpClient(bool podNetns);

  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  std::unique_ptr<backends::ebpf::EbpfBackend> backend =
      std::make_unique<backends::ebpf::EbpfBackend>(net());
};

struct FamilyCase {
  const char* name;
  std::string svcIP, ep1, ep2, svcText, ep1Text, ep2Text;
};

const FamilyCase kV4{"IPv4",          "10.96.0.10",      "10.244.1.1",     "10.244.1.2",
                     "10.96.0.10:80", "10.244.1.1:8080", "10.244.1.2:8080"};
const FamilyCase kV6{"IPv6",
                     "fd00:96::10",
                     "fd00:244::1",
                     "fd00:244::2",
                     "[fd00:96::10]:80",
                     "[fd00:244::1]:8080",
                     "[fd00:244::2]:8080"};

class EbpfFamilyTest : public EbpfSockLbTest, public ::testing::WithParamInterface<FamilyCase> {};

TEST_P(EbpfFamilyTest, TcpAndUdpClientsReachTheBackendAndSeeTheServiceAddress) {
  const FamilyCase& f = GetParam();
  Servers servers;
  servers.listen(f.ep1, 8080);
  addService("tcp", {f.svcIP}, Protocol::TCP);
  setEndpoints("tcp", "tcp", {{f.ep1}}, Protocol::TCP);
  addService("udp", {f.svcIP}, Protocol::UDP);
  setEndpoints("udp", "udp", {{f.ep1}}, Protocol::UDP);
  fullSync();
  const Addr to = Addr::of(f.svcIP, 80);
  for (Mode m : {Mode::Tcp, Mode::UdpConnected, Mode::UdpUnconnected}) {
    auto seen = dialFromCgroup(m, to);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].error, "") << "mode " << static_cast<int>(m);
    EXPECT_EQ(seen[0].reply, f.ep1Text) << "mode " << static_cast<int>(m);
    // getpeername (TCP, connected UDP) and recvfrom's source (UDP) show what was dialled.
    EXPECT_EQ(seen[0].peer, f.svcText) << "mode " << static_cast<int>(m);
  }
}

// A dual-stack IPv6 socket dialling an IPv4 service (::ffff:10.96.0.10, what Java and other
// runtimes do by default) meets the IPv4 frontend, and sees it IPv4-mapped.
TEST_F(EbpfSockLbTest, IpV4MappedAddressesOfAnIpv6SocketAreTranslated) {
  Servers servers;
  servers.listen("10.244.1.1", 8080);
  addService("tcp", {"10.96.0.10"}, Protocol::TCP);
  setEndpoints("tcp", "tcp", {{"10.244.1.1"}}, Protocol::TCP);
  addService("udp", {"10.96.0.10"}, Protocol::UDP);
  setEndpoints("udp", "udp", {{"10.244.1.1"}}, Protocol::UDP);
  fullSync();
  const Addr to = Addr::of("::ffff:10.96.0.10", 80);
  for (Mode m : {Mode::Tcp, Mode::UdpConnected, Mode::UdpUnconnected}) {
    auto seen = dialFromCgroup(m, to);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].error, "") << "mode " << static_cast<int>(m);
    EXPECT_EQ(seen[0].reply, "10.244.1.1:8080") << "mode " << static_cast<int>(m);
    EXPECT_EQ(seen[0].peer, "[::ffff:10.96.0.10]:80") << "mode " << static_cast<int>(m);
  }
}

TEST_P(EbpfFamilyTest, ProcessesOutsideTheCgroupAreNotRewritten) {
  const FamilyCase& f = GetParam();
  Servers servers;
  servers.listen(f.ep1, 8080);
  addService("tcp", {f.svcIP});
  setEndpoints("tcp", "tcp", {{f.ep1}});
  fullSync();
  ASSERT_EQ(dialFromCgroup(Mode::Tcp, Addr::of(f.svcIP, 80))[0].reply, f.ep1Text);
  // This process is not in the cgroup: the service address goes to routing untouched, and the
  // namespace has no route to it.
  Seen s = dial(Mode::Tcp, Addr::of(f.svcIP, 80));
  EXPECT_EQ(s.reply, "");
  EXPECT_EQ(s.error, "connect: Network is unreachable");
}

TEST_P(EbpfFamilyTest, ServiceWithoutEndpointsRefusesTheConnection) {
  const FamilyCase& f = GetParam();
  addService("tcp", {f.svcIP});
  addService("udp", {f.svcIP}, Protocol::UDP);
  fullSync();
  const Addr to = Addr::of(f.svcIP, 80);
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, to)[0].error, "connect: Connection refused");
  EXPECT_EQ(dialFromCgroup(Mode::UdpConnected, to)[0].error, "connect: Connection refused");
  EXPECT_EQ(dialFromCgroup(Mode::UdpUnconnected, to)[0].error, "sendto: Connection refused");
}

TEST_P(EbpfFamilyTest, PortTheServiceDoesNotDefineIsRefused) {
  const FamilyCase& f = GetParam();
  Servers servers;
  servers.listen(f.ep1, 8080);
  addService("tcp", {f.svcIP});
  setEndpoints("tcp", "tcp", {{f.ep1}});
  fullSync();
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, Addr::of(f.svcIP, 80))[0].reply, f.ep1Text);
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, Addr::of(f.svcIP, 81))[0].error,
            "connect: Connection refused");
  EXPECT_EQ(dialFromCgroup(Mode::UdpUnconnected, Addr::of(f.svcIP, 80))[0].error,
            "sendto: Connection refused");
  // The last port of the ClusterIP gone: the address is nobody's, traffic goes to routing.
  tracker.deleteService({"default", "tcp"});
  applyChanges();
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, Addr::of(f.svcIP, 81))[0].error,
            "connect: Network is unreachable");
}

TEST_P(EbpfFamilyTest, EndpointChangesReachNewConnections) {
  const FamilyCase& f = GetParam();
  Servers servers;
  servers.listen(f.ep1, 8080);
  servers.listen(f.ep2, 8080);
  addService("tcp", {f.svcIP});
  setEndpoints("tcp", "tcp", {{f.ep1}});
  fullSync();
  const Addr to = Addr::of(f.svcIP, 80);
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 10)), std::set<std::string>{f.ep1Text});
  setEndpoints("tcp", "tcp", {{f.ep1}, {f.ep2}});
  applyChanges();
  // 40 random picks over two slots: both answer (chance of missing one: 2^-39).
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 40)),
            (std::set<std::string>{f.ep1Text, f.ep2Text}));
  setEndpoints("tcp", "tcp", {{f.ep2}});
  applyChanges();
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 10)), std::set<std::string>{f.ep2Text});
  setEndpoints("tcp", "tcp", {});
  applyChanges();
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, to)[0].error, "connect: Connection refused");
  tracker.deleteService({"default", "tcp"});
  tracker.deleteSlice({"default", "tcp"});
  applyChanges();
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, to)[0].error, "connect: Network is unreachable");
}

INSTANTIATE_TEST_SUITE_P(Families, EbpfFamilyTest, ::testing::Values(kV4, kV6),
                         [](const auto& info) { return std::string(info.param.name); });

// One unconnected UDP socket talking to four services at once (as a resolver asking several
// name servers) sees every reply come from the service it asked, whichever order they arrive
// in; a socket of the same process sending to a pod directly sees the pod's own address: the
// reverse table matches socket and backend, never the backend alone.
TEST_F(EbpfSockLbTest, OneUdpSocketToSeveralServicesSeesEachReplyFromItsService) {
  Servers servers;
  for (int i = 1; i <= 4; ++i) {
    servers.listen(fmt::format("10.244.1.{}", i), 8080);
    addService(fmt::format("dns{}", i), {fmt::format("10.96.0.{}", 10 + i)}, Protocol::UDP);
    setEndpoints(fmt::format("dns{}", i), fmt::format("dns{}", i),
                 {{fmt::format("10.244.1.{}", i)}}, Protocol::UDP);
  }
  fullSync();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    std::string out;
    auto receive = [&](int fd, int n) {
      std::set<std::string> got;  // "reply from source", in any order
      for (int i = 0; i < n; ++i) {
        char buf[64] = {};
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        ssize_t r = recvfrom(fd, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
        got.insert(r < 0 ? std::string("recvfrom: ") + std::strerror(errno)
                         : std::string(buf, r) + " from " + str(from));
      }
      for (const auto& g : got) out += g + "\n";
    };
    timeval tv{2, 0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (int i = 1; i <= 4; ++i) {
      Addr to = Addr::of(fmt::format("10.96.0.{}", 10 + i), 80);
      if (sendto(fd, "?", 1, 0, to.sa(), to.len) != 1) _exit(4);
    }
    receive(fd, 4);
    int direct = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    setsockopt(direct, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    Addr pod = Addr::of("10.244.1.2", 8080);
    if (sendto(direct, "?", 1, 0, pod.sa(), pod.len) != 1) _exit(5);
    receive(direct, 1);
    close(direct);
    close(fd);
    (void)!write(pipefd[1], out.data(), out.size());
    _exit(0);
  }
  close(pipefd[1]);
  std::string out;
  char buf[1024];
  ssize_t r;
  while ((r = read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, r);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(out,
            "10.244.1.1:8080 from 10.96.0.11:80\n10.244.1.2:8080 from 10.96.0.12:80\n"
            "10.244.1.3:8080 from 10.96.0.13:80\n10.244.1.4:8080 from 10.96.0.14:80\n"
            "10.244.1.2:8080 from 10.244.1.2:8080\n");
}

// An unconnected UDP socket sending again and again to one service keeps one backend, as
// conntrack keeps a 5-tuple on one endpoint (and its replies keep showing the service), until
// that backend leaves; then it moves to a live one.
TEST_F(EbpfSockLbTest, OneUdpSocketKeepsItsBackendUntilItLeaves) {
  Servers servers;
  const std::vector<std::string> eps = {"10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4"};
  for (const auto& e : eps) servers.listen(e, 8080);
  addService("dns", {"10.96.0.10"}, Protocol::UDP);
  setEndpoints("dns", "dns", {{eps[0]}, {eps[1]}, {eps[2]}, {eps[3]}}, Protocol::UDP);
  fullSync();
  int results[2], go[2];
  ASSERT_EQ(pipe(results), 0);
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(results[0]);
    close(go[1]);
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    timeval tv{2, 0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    Addr to = Addr::of("10.96.0.10", 80);
    auto ask = [&](int n) {
      std::set<std::string> got;
      for (int i = 0; i < n; ++i) {
        if (sendto(fd, "?", 1, 0, to.sa(), to.len) != 1) _exit(4);
        char buf[64] = {};
        sockaddr_storage from{};
        socklen_t len = sizeof(from);
        ssize_t r = recvfrom(fd, buf, sizeof(buf) - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
        got.insert(r < 0 ? std::string("recvfrom: ") + std::strerror(errno)
                         : std::string(buf, r) + " from " + str(from));
      }
      std::string out;
      for (const auto& g : got) out += g + "\n";
      out += "--\n";
      (void)!write(results[1], out.data(), out.size());
    };
    ask(20);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(5);
    ask(20);
    close(fd);
    _exit(0);
  }
  close(results[1]);
  close(go[0]);
  auto readPhase = [&] {
    std::string out;
    char c;
    while (out.size() < 3 || out.compare(out.size() - 3, 3, "--\n") != 0) {
      if (read(results[0], &c, 1) != 1) break;
      out += c;
    }
    return out;
  };
  const std::string first = readPhase();
  // 20 datagrams, one backend: with a random pick each, all on one of four has chance 4^-19.
  ASSERT_EQ(std::count(first.begin(), first.end(), '\n'), 2) << first;
  const std::string kept = first.substr(0, first.find(':'));
  EXPECT_NE(std::find(eps.begin(), eps.end(), kept), eps.end()) << first;
  EXPECT_NE(first.find("from 10.96.0.10:80"), std::string::npos) << first;
  std::vector<Ep> rest;
  for (const auto& e : eps) {
    if (e != kept) rest.push_back({e});
  }
  setEndpoints("dns", "dns", rest, Protocol::UDP);
  applyChanges();
  ASSERT_EQ(write(go[1], "g", 1), 1);
  const std::string second = readPhase();
  close(results[0]);
  close(go[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_EQ(std::count(second.begin(), second.end(), '\n'), 2) << second;
  EXPECT_NE(second.substr(0, second.find(':')), kept) << second;
  EXPECT_NE(second.find("from 10.96.0.10:80"), std::string::npos) << second;
}

TEST_F(EbpfSockLbTest, ClientIpAffinityKeepsTheClientOnOneBackend) {
  Servers servers;
  for (int i = 1; i <= 4; ++i) servers.listen(fmt::format("10.244.1.{}", i), 8080);
  addService("tcp", {"10.96.0.10"}, Protocol::TCP, SessionAffinity::ClientIP);
  setEndpoints("tcp", "tcp", {{"10.244.1.1"}, {"10.244.1.2"}, {"10.244.1.3"}, {"10.244.1.4"}});
  fullSync();
  const Addr to = Addr::of("10.96.0.10", 80);
  auto first = replies(dialFromCgroup(Mode::Tcp, to, 20));
  ASSERT_EQ(first.size(), 1u);
  // Another endpoint going away leaves the affinity alone.
  std::vector<Ep> rest;
  for (int i = 1; i <= 4; ++i) {
    const std::string ip = fmt::format("10.244.1.{}", i);
    if (ip + ":8080" != *first.begin() && rest.size() < 2) rest.push_back({ip});
  }
  rest.push_back({first.begin()->substr(0, first.begin()->find(':'))});
  setEndpoints("tcp", "tcp", rest);
  applyChanges();
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 20)), first);
}

// A client holding a connected UDP socket to an endpoint that leaves the service gets an error
// on that socket (it was destroyed) instead of sending into the void; its next socket reaches
// a live endpoint.
// podNetns: the client lives in a network namespace of its own (a pod's), joined to this one
// by a veth pair, so the stale-socket walk must enter it.
void EbpfSockLbTest::staleUdpClient(bool podNetns) {
  Servers servers;
  servers.listen("10.244.1.1", 8080);
  servers.listen("10.244.1.2", 8080);
  addService("dns", {"10.96.0.53"}, Protocol::UDP);
  setEndpoints("dns", "dns", {{"10.244.1.1"}}, Protocol::UDP);
  fullSync();
  int ready[2], go[2], result[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(result), 0);
  pid_t pid = fork();
  if (pid == 0) {
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    char c;
    if (podNetns) {
      if (unshare(CLONE_NEWNET) != 0) _exit(7);
      (void)!write(ready[1], "n", 1);
      if (read(go[0], &c, 1) != 1) _exit(8);
    }
    const Addr to = Addr::of("10.96.0.53", 80);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[64] = {};
    std::string out;
    if (connect(fd, to.sa(), to.len) != 0 || send(fd, "?", 1, 0) != 1) _exit(4);
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    out += std::string(buf, n > 0 ? n : 0) + "\n";
    (void)!write(ready[1], "r", 1);
    if (read(go[0], &c, 1) != 1) _exit(5);
    // The same socket, after the endpoint left: destroyed, it carries ECONNABORTED and is
    // no longer connected, so the next send fails at once.
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    out += std::string(std::strerror(err)) + "\n";
    if (send(fd, "?", 1, 0) < 0) {
      out += std::string(std::strerror(errno)) + "\n";
    } else {
      out += "send still works\n";
    }
    close(fd);
    Seen again = dial(Mode::UdpConnected, to);
    out += again.reply + again.error + "\n";
    (void)!write(result[1], out.data(), out.size());
    _exit(0);
  }
  close(ready[1]);
  close(result[1]);
  char c;
  if (podNetns) {
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    ASSERT_EQ(
        shell(fmt::format("ip link add sp-pod0 type veth peer name eth0 netns {0} && "
                          "ip addr add 10.0.5.1/24 dev sp-pod0 && ip link set sp-pod0 up && "
                          "nsenter -t {0} -n sh -c 'ip link set lo up && ip link set eth0 up && "
                          "ip addr add 10.0.5.2/24 dev eth0 && ip route add default via 10.0.5.1'",
                          pid)),
        0);
    (void)!write(go[1], "v", 1);
  }
  if (read(ready[0], &c, 1) != 1) {
    int st = 0;
    waitpid(pid, &st, 0);
    FAIL() << "the client exited early: status " << st;
  }
  setEndpoints("dns", "dns", {{"10.244.1.2"}}, Protocol::UDP);
  applyChanges();
  EXPECT_EQ(backend->destroyedSockets(), 1u);
  (void)!write(go[1], "g", 1);
  std::string out;
  char buf[512];
  ssize_t r;
  while ((r = read(result[0], buf, sizeof(buf))) > 0) out.append(buf, r);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(out,
            "10.244.1.1:8080\nSoftware caused connection abort\nDestination address required\n"
            "10.244.1.2:8080\n");
  for (int fd : {ready[0], go[0], go[1], result[0]}) close(fd);
}

// PodHairpin finds which network namespace under the cgroup holds a pod's address (by the
// cookie the socket programs see), writes (cookie, port) for the port's backends that are such
// pods only, follows the port's changes, and removes what a previous run left.
TEST(PodHairpin, FindsThePodsNamespaceAndKeepsOneEntryPerPodAndPort) {
  const int map =
      bpf_map_create(BPF_MAP_TYPE_HASH, "sp_hairpin_t", sizeof(sp_hairpin_key), 1, 64, nullptr);
  ASSERT_GE(map, 0) << std::strerror(errno);
  const uint8_t one = 1;
  sp_hairpin_key stale{};
  stale.netns = 12345;
  stale.set_id = 99;
  ASSERT_EQ(bpf_map_update_elem(map, &stale, &one, BPF_ANY), 0);
  int ready[2], done[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    if (unshare(CLONE_NEWNET) != 0) _exit(7);
    const int s = socket(AF_INET, SOCK_DGRAM, 0);
    uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    if (getsockopt(s, SOL_SOCKET, 71 /* SO_NETNS_COOKIE */, &cookie, &len) != 0) _exit(8);
    (void)!write(ready[1], &cookie, sizeof(cookie));
    char c;
    (void)!read(done[0], &c, 1);
    _exit(0);
  }
  uint64_t cookie = 0;
  ASSERT_EQ(read(ready[0], &cookie, sizeof(cookie)), static_cast<ssize_t>(sizeof(cookie)));
  ASSERT_EQ(shell(fmt::format("ip link add sp-hp0 type veth peer name eth0 netns {0} && "
                              "nsenter -t {0} -n sh -c 'ip link set eth0 up && "
                              "ip addr add 10.0.6.2/24 dev eth0 && "
                              "ip addr add fd00:6::2/64 dev eth0 nodad'",
                              pid)),
            0);
  {
    backends::ebpf::PodHairpin h(map, gCgroup);
    EXPECT_EQ(h.rescan(), "");
    const auto pods = h.podAddresses();
    std::set<std::string> shown;
    for (const auto& a : pods) shown.insert(a.str());
    EXPECT_TRUE(shown.contains("10.0.6.2")) << fmt::format("{}", fmt::join(shown, ","));
    EXPECT_TRUE(shown.contains("fd00:6::2"));
    EXPECT_GE(h.namespaces(), 1u);
    bool any = false;
    std::set<EndpointKey> local{{*IpAddr::parse("10.0.6.2"), 8080},
                                {*IpAddr::parse("fd00:6::2"), 8080},
                                {*IpAddr::parse("192.168.0.10"), 8080}};  // host network
    ASSERT_EQ(h.set(7, local, &any), "");
    EXPECT_TRUE(any);
    EXPECT_EQ(h.entries(), 1u) << "one entry per pod and port, whatever its addresses";
    sp_hairpin_key k{};
    k.netns = cookie;
    k.set_id = 7;
    uint8_t v = 0;
    EXPECT_EQ(bpf_map_lookup_elem(map, &k, &v), 0) << "keyed by the cookie the pod's sockets see";
    ASSERT_EQ(h.set(7, {{*IpAddr::parse("192.168.0.10"), 8080}}, &any), "");
    EXPECT_FALSE(any) << "a backend that is no pod of this node";
    EXPECT_NE(bpf_map_lookup_elem(map, &k, &v), 0);
    ASSERT_EQ(h.set(9, local, &any), "");
    EXPECT_EQ(bpf_map_lookup_elem(map, &stale, &v), 0) << "a previous run's entry stays until";
    ASSERT_EQ(h.dropLeftovers(), "");
    EXPECT_NE(bpf_map_lookup_elem(map, &stale, &v), 0);
    ASSERT_EQ(h.drop(9), "");
    EXPECT_EQ(h.entries(), 0u);
    sp_hairpin_key next{};
    EXPECT_NE(bpf_map_get_next_key(map, nullptr, &next), 0) << "the map is empty";
  }
  (void)!write(done[1], "x", 1);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  for (int fd : {ready[0], ready[1], done[0], done[1], map}) close(fd);
}

TEST_F(EbpfSockLbTest, ConnectedUdpSocketToARemovedEndpointIsDestroyed) {
  staleUdpClient(false);
}

TEST_F(EbpfSockLbTest, ConnectedUdpSocketInAPodNamespaceIsDestroyedToo) {
  staleUdpClient(true);
}

// A TCP client still connecting (its SYNs go unanswered) to an endpoint that leaves the
// service is aborted at once instead of retrying SYNs for minutes; established TCP is not
// touched (the endpoint may be terminating and still serving).
TEST_F(EbpfSockLbTest, ConnectingTcpSocketToARemovedEndpointIsAbortedEstablishedIsKept) {
  Servers servers;
  servers.listen("10.244.1.1", 8080);
  // 10.244.1.9 never answers: this namespace drops what is sent to it.
  ASSERT_EQ(shell("ip addr add 10.244.1.9/32 dev lo && nft add table ip sink && "
                  "nft 'add chain ip sink out { type filter hook output priority 0; }' && "
                  "nft add rule ip sink out ip daddr 10.244.1.9 drop"),
            0);
  addService("tcp", {"10.96.0.10"});
  setEndpoints("tcp", "tcp", {{"10.244.1.9"}});
  addService("est", {"10.96.0.11"});
  setEndpoints("est", "est", {{"10.244.1.1"}});
  fullSync();
  int ready[2], go[2], result[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(result), 0);
  pid_t pid = fork();
  if (pid == 0) {
    int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
    if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
    close(cg);
    const Addr dead = Addr::of("10.96.0.10", 80), live = Addr::of("10.96.0.11", 80);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (connect(fd, dead.sa(), dead.len) == 0 || errno != EINPROGRESS) _exit(4);
    int est = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(est, live.sa(), live.len) != 0) _exit(5);
    (void)!write(ready[1], "r", 1);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(6);
    std::string out;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 2000) == 1) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      out += std::string(std::strerror(err)) + "\n";
    } else {
      out += "still connecting\n";
    }
    char buf[64] = {};
    ssize_t n = read(est, buf, sizeof(buf));
    out += std::string(buf, n > 0 ? n : 0) + "\n";
    (void)!write(result[1], out.data(), out.size());
    _exit(0);
  }
  close(ready[1]);
  close(result[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) {
    int st = 0;
    waitpid(pid, &st, 0);
    FAIL() << "the client exited early: status " << st;
  }
  // Both endpoints leave; only the socket still connecting is destroyed.
  setEndpoints("tcp", "tcp", {});
  setEndpoints("est", "est", {});
  applyChanges();
  EXPECT_EQ(backend->destroyedSockets(), 1u);
  (void)!write(go[1], "g", 1);
  std::string out;
  char buf[512];
  ssize_t r;
  while ((r = read(result[0], buf, sizeof(buf))) > 0) out.append(buf, r);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(out, "Software caused connection abort\n10.244.1.1:8080\n");
  for (int fd : {ready[0], go[0], go[1], result[0]}) close(fd);
  shell("nft delete table ip sink; ip addr del 10.244.1.9/32 dev lo");
}

// A restart keeps the previous run's backend sets (same ids, same slots), so its clients'
// ClientIP affinity holds across it; only the difference to the wanted state is written.
TEST_F(EbpfSockLbTest, RestartKeepsBackendSetsAndClientIpAffinity) {
  Servers servers;
  std::vector<Ep> eps;
  for (int i = 1; i <= 4; ++i) {
    servers.listen(fmt::format("10.244.1.{}", i), 8080);
    eps.push_back({fmt::format("10.244.1.{}", i)});
  }
  addService("tcp", {"10.96.0.10"}, Protocol::TCP, SessionAffinity::ClientIP);
  setEndpoints("tcp", "tcp", eps);
  fullSync();
  const Addr to = Addr::of("10.96.0.10", 80);
  auto first = replies(dialFromCgroup(Mode::Tcp, to, 10));
  ASSERT_EQ(first.size(), 1u);
  const ServicePortKey key{{"default", "tcp"}, {"p", Protocol::TCP, IpFamily::V4}};
  // What `sliceproxy explain` shows: the frontend, the catch-all, the slots.
  const auto objects = backend->kernelObjects(key);
  ASSERT_EQ(objects.size(), 3u);
  EXPECT_EQ(objects[0],
            "map sp_services 10.96.0.10:80/TCP -> set 1 generation 0 count 4 affinity "
            "10800s");
  EXPECT_EQ(objects[1], "map sp_services 10.96.0.10:* -> reject (the service's other ports)");
  EXPECT_EQ(objects[2], "map sp_slots set 1 generation 0 slots 0..3 (cluster-wide)");
  backend = std::make_unique<backends::ebpf::EbpfBackend>(net());
  auto r = backend->fullSync(state.state());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(backend->kernelObjects(key), objects);
  // The frontend, and the member entries rewritten in one batch per map (affinity port).
  EXPECT_LE(r.operations, 4u);
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 10)), first);
}

// Affinity switched on for a running service: every backend gets its member entry, so the
// clients stick from then on.
TEST_F(EbpfSockLbTest, ClientIpAffinitySwitchedOnLaterSticks) {
  Servers servers;
  std::vector<Ep> eps;
  for (int i = 1; i <= 4; ++i) {
    servers.listen(fmt::format("10.244.1.{}", i), 8080);
    eps.push_back({fmt::format("10.244.1.{}", i)});
  }
  addService("tcp", {"10.96.0.10"});
  setEndpoints("tcp", "tcp", eps);
  fullSync();
  const Addr to = Addr::of("10.96.0.10", 80);
  EXPECT_GT(replies(dialFromCgroup(Mode::Tcp, to, 30)).size(), 1u);
  addService("tcp", {"10.96.0.10"}, Protocol::TCP, SessionAffinity::ClientIP);
  applyChanges();
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 20)).size(), 1u);
  addService("tcp", {"10.96.0.10"});
  applyChanges();
  EXPECT_GT(replies(dialFromCgroup(Mode::Tcp, to, 30)).size(), 1u);
}

TEST_F(EbpfSockLbTest, RestartAdoptsPinnedProgramsAndMapsAndCleanupRemovesThem) {
  Servers servers;
  servers.listen("10.244.1.1", 8080);
  servers.listen("10.244.1.2", 8080);
  addService("tcp", {"10.96.0.10"});
  setEndpoints("tcp", "tcp", {{"10.244.1.1"}});
  fullSync();
  const Addr to = Addr::of("10.96.0.10", 80);
  // The process goes away without cleaning up: the pinned links keep the data plane running.
  backend.reset();
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 3)), std::set<std::string>{"10.244.1.1:8080"});
  // The next run adopts the maps, swaps its programs into the same links and replaces the
  // frontends with its own state.
  backend = std::make_unique<backends::ebpf::EbpfBackend>(net());
  setEndpoints("tcp", "tcp", {{"10.244.1.2"}});
  fullSync();
  ASSERT_NE(backend->programs(), nullptr);
  EXPECT_TRUE(backend->programs()->adoptedMaps());
  EXPECT_EQ(backend->programs()->updatedLinks(), 8);
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 5)), std::set<std::string>{"10.244.1.2:8080"});
  auto r = backend->cleanup();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.operations, 15u) << "8 links and 7 maps";
  EXPECT_FALSE(std::filesystem::exists(gPinDir));
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, to)[0].error, "connect: Network is unreachable");
}

uint32_t countAttached(const std::string& cgroup, bpf_attach_type type) {
  const int fd = open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  uint32_t ids[16], n = 16;
  const int err = bpf_prog_query(fd, type, 0, nullptr, ids, &n);
  close(fd);
  return err ? 1000 : n;
}

// Programs another program takes away (a link detached in place; a link unpinned, which this
// process's reference keeps attached only until it exits) are named by drift() and attached and
// pinned again by the full sync that repairs it.
TEST_F(EbpfSockLbTest, DetachedOrUnpinnedLinksAreNoticedAndAttachedAgain) {
  Servers servers;
  servers.listen("10.244.1.1", 8080);
  addService("tcp", {"10.96.0.10"});
  setEndpoints("tcp", "tcp", {{"10.244.1.1"}});
  fullSync();
  const Addr to = Addr::of("10.96.0.10", 80);
  EXPECT_EQ(backend->drift(), "");
  const int fd = bpf_obj_get((gPinDir + "/links/connect4").c_str());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(bpf_link_detach(fd), 0);
  close(fd);
  ASSERT_TRUE(std::filesystem::remove(gPinDir + "/links/sendmsg4"));
  EXPECT_EQ(dialFromCgroup(Mode::Tcp, to)[0].error, "connect: Network is unreachable")
      << "the service is gone from the data plane";
  const std::string gone = backend->drift();
  EXPECT_NE(gone.find("sp_connect4 detached"), std::string::npos) << gone;
  EXPECT_NE(gone.find("sp_sendmsg4 unpinned"), std::string::npos) << gone;
  fullSync();
  EXPECT_EQ(backend->drift(), "");
  EXPECT_TRUE(std::filesystem::exists(gPinDir + "/links/sendmsg4"));
  // One program per hook, not the old unpinned link beside the new one.
  const std::string cg = gCgroup;
  EXPECT_EQ(countAttached(cg, BPF_CGROUP_UDP4_SENDMSG), 1u);
  EXPECT_EQ(countAttached(cg, BPF_CGROUP_INET4_CONNECT), 1u);
  EXPECT_EQ(replies(dialFromCgroup(Mode::Tcp, to, 3)), std::set<std::string>{"10.244.1.1:8080"});
}

// Freed slots and member entries wait for a batch (so one endpoint change costs only its own
// writes), are all gone after a full sync, and a freed slot that the next addition reuses is
// never deleted under it.
TEST_F(EbpfSockLbTest, FreedSlotsGoInBatchesAndAReusedSlotIsKept) {
  auto ep = [](int i) { return Ep{fmt::format("10.201.{}.{}", i / 200, i % 200 + 1)}; };
  std::vector<Ep> eps;
  for (int i = 0; i < 100; ++i) eps.push_back(ep(i));
  addService("gc", {"10.96.0.30"}, Protocol::TCP, SessionAffinity::ClientIP);
  setEndpoints("gc", "gc", eps);
  fullSync();
  ASSERT_NE(backend->programs(), nullptr);
  const auto* p = backend->programs();
  backends::ebpf::MapWriter maps(p->servicesFd(), p->slotsFd(), p->membersFd());
  ASSERT_EQ(maps.slotKeys().size(), 100u);
  ASSERT_EQ(maps.memberKeys().size(), 100u);
  // 70 removals, one per sync: each frees one slot and one member entry.
  for (int i = 0; i < 70; ++i) {
    eps.erase(eps.begin());
    setEndpoints("gc", "gc", eps);
    applyChanges();
  }
  const size_t slots = maps.slotKeys().size();
  EXPECT_GT(slots, 30u) << "freed slots wait for a batch";
  EXPECT_LE(slots, 30u + 64u) << "a batch of freed slots was deleted";
  EXPECT_LE(maps.memberKeys().size(), 30u + 64u);
  // A freed slot already gone (deleted by hand here): the batched deletion skips it.
  for (const auto& k : maps.slotKeys()) {
    if ((k.index & ~SP_SLOT_GEN_BIT) >= 30u) {
      ASSERT_EQ(maps.deleteSlot(k), "");
      break;
    }
  }
  // Removed, then added back: the freed last slot and the endpoint's member entry are written
  // again, and must survive the deletion of what was freed.
  eps.pop_back();
  setEndpoints("gc", "gc", eps);
  applyChanges();
  const Ep back = ep(99);
  eps.push_back(back);
  setEndpoints("gc", "gc", eps);
  applyChanges();
  fullSync();
  EXPECT_EQ(maps.slotKeys().size(), 30u);
  EXPECT_EQ(maps.memberKeys().size(), 30u);
  for (const auto& k : maps.slotKeys()) {
    EXPECT_LT(k.index & ~SP_SLOT_GEN_BIT, 30u) << "set " << k.set_id;
  }
}

// Map writes for one endpoint change in a service of 100,000 endpoints: O(1), not O(set).
TEST_F(EbpfSockLbTest, OneEndpointChangeAtOneHundredThousandEndpointsIsAFewMapWrites) {
  std::vector<Ep> eps;
  for (int i = 0; i < 100000; ++i) {
    eps.push_back({fmt::format("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)});
  }
  addService("big", {"10.96.0.20"});
  setEndpoints("big", "big", eps);
  state.apply(tracker.take(), false);
  auto t0 = std::chrono::steady_clock::now();
  auto r = backend->fullSync(state.state());
  const double coldMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r.ok) << r.error;
  // Alternately remove an endpoint from the middle (its slot gets the last one) and add it
  // back (appended); each apply is timed on its own, the Diff computed beforehand.
  std::vector<double> us, mapUs, socketUs;
  uint64_t maxOps = 0;
  for (int i = 0; i < 40; ++i) {
    std::vector<Ep> now = eps;
    if (i % 2 == 0) now.erase(now.begin() + 5000 + i);
    setEndpoints("big", "big", now);
    Diff d = sync();
    t0 = std::chrono::steady_clock::now();
    r = backend->apply(d);
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(r.ok) << r.error;
    maxOps = std::max(maxOps, r.operations);
    mapUs.push_back(backend->lastApply().mapMicros);
    if (i % 2 == 0) socketUs.push_back(backend->lastApply().socketMicros);
  }
  // A removal: the moved slot and the frontend; an addition: the new slot and the frontend. The
  // freed slot waits for a batch of them, or is written again by the next addition. (No member
  // entries: the service has no ClientIP affinity.)
  EXPECT_LE(maxOps, 2u);
  for (auto* v : {&us, &mapUs, &socketUs}) std::sort(v->begin(), v->end());
  std::printf(
      "[ measured ] 100,000 endpoints: cold load %.1f ms; one endpoint change: apply p50 "
      "%.1f us (max %.1f), of which map updates p50 %.1f us (max %.1f), at most %llu map "
      "operations; stale-socket walk after a removal p50 %.1f us\n",
      coldMs, us[us.size() / 2], us.back(), mapUs[mapUs.size() / 2], mapUs.back(),
      static_cast<unsigned long long>(maxOps), socketUs[socketUs.size() / 2]);
}

}  // namespace
}  // namespace sliceproxy::testing

namespace {

int sh(const std::string& cmd) {
  return std::system(cmd.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  using sliceproxy::testing::gCgroup;
  using sliceproxy::testing::gPinDir;
  ::testing::InitGoogleTest(&argc, argv);
  // Fails loudly rather than skipping: this suite exists to run against the real kernel.
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    std::perror("kernel tests need root: unshare(CLONE_NEWNET | CLONE_NEWNS)");
    return 1;
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("making mounts private");
    return 1;
  }
  char dir[] = "/tmp/sliceproxy-ebpf-XXXXXX";
  if (!mkdtemp(dir) || mount("bpf", dir, "bpf", 0, nullptr) != 0) {
    std::perror("mounting a private bpf filesystem");
    return 1;
  }
  gPinDir = std::string(dir) + "/sliceproxy";
  const std::string root = sliceproxy::backends::ebpf::defaultCgroupRoot();
  if (root.empty()) {
    std::fprintf(stderr, "no cgroup2 mount\n");
    return 1;
  }
  // A run that was killed left its (empty) cgroup behind: remove those whose process is gone.
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("sliceproxy-test-", 0) != 0) continue;
    if (!std::filesystem::exists("/proc/" + name.substr(16))) rmdir(e.path().c_str());
  }
  gCgroup = fmt::format("{}/sliceproxy-test-{}", root, getpid());
  if (mkdir(gCgroup.c_str(), 0755) != 0) {
    std::perror(("creating cgroup " + gCgroup).c_str());
    return 1;
  }
  int rc = sh("ip link set lo up") ||
           sh("for i in 1 2 3 4; do ip addr add 10.244.1.$i/32 dev lo; done") ||
           sh("ip -6 addr add fd00:244::1/128 dev lo && ip -6 addr add fd00:244::2/128 dev lo");
  if (rc == 0) rc = RUN_ALL_TESTS();
  // Every client has exited, so the cgroup is empty and can go.
  if (rmdir(gCgroup.c_str()) != 0) std::perror(("removing cgroup " + gCgroup).c_str());
  umount2(dir, MNT_DETACH);
  rmdir(dir);
  return rc;
}
