// The eBPF backend's sockmap shortcut (--sockmap-shortcut) against the real kernel. main()
// moves this process into its own network and mount namespaces, mounts a private bpf
// filesystem for the pins and creates a child cgroup under the cgroup2 mount: the programs
// attach there only, and only forked children of these tests enter it. Payload that takes the
// shortcut never reaches a network device, so this namespace's loopback byte counter (in
// /proc/net/dev) tells a redirected transfer from one through the TCP/IP stack.

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../unit/builders.h"
#include "backends/ebpf/ebpf_backend.h"
#include "backends/ebpf/sock_lb_loader.h"
#include "backends/ebpf/sockmap_loader.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::testing {
namespace {

std::string gPinDir, gCgroup;
constexpr size_t kPayload = 32u << 20;  // each direction
constexpr size_t kTail = 1u << 20;      // then from the client, after `whileOpen`

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

// Bytes the loopback device of this network namespace sent.
uint64_t loopbackTxBytes() {
  std::ifstream in("/proc/net/dev");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != "lo") continue;
    std::istringstream f(line.substr(colon + 1));
    uint64_t v[9] = {};
    for (auto& x : v) f >> x;
    return v[8];  // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes
  }
  return 0;
}

size_t sockhashEntries(int fd) {
  std::vector<uint8_t> key(64), next(64);
  size_t n = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0 && n < 100000) {
    ++n;
    key = next;
    prev = key.data();
  }
  return n;
}

// The stream both ends send: deterministic, not compressible, checked with FNV-1a.
struct Stream {
  uint64_t state;
  explicit Stream(uint64_t seed) : state(seed) {}
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      p[i] = static_cast<uint8_t>(state);
    }
  }
};
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void add(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
};

bool writeAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// One connection from clientFd to `to`, served on listenFd: the client sends kPayload bytes,
// the server checks them and sends its own kPayload bytes back, which the client checks.
// Returns "" or what went wrong. `whileOpen` runs once both ends have seen all data; then the
// client sends kTail more bytes and closes.
std::string transfer(int listenFd, int clientFd, const Addr& to,
                     const std::function<void()>& whileOpen = {}) {
  std::string serverError;
  Fnv serverGot;
  std::thread server([&] {
    int c = accept(listenFd, nullptr, nullptr);
    if (c < 0) {
      serverError = fmt::format("accept: {}", std::strerror(errno));
      return;
    }
    std::vector<uint8_t> buf(1 << 16);
    size_t got = 0;
    while (got < kPayload) {
      ssize_t r = read(c, buf.data(), std::min(buf.size(), kPayload - got));
      if (r <= 0) break;
      serverGot.add(buf.data(), static_cast<size_t>(r));
      got += static_cast<size_t>(r);
    }
    if (got != kPayload) serverError = fmt::format("server read {} of {} bytes", got, kPayload);
    Stream s(2);
    for (size_t sent = 0; sent < kPayload && serverError.empty(); sent += buf.size()) {
      s.fill(buf.data(), buf.size());
      if (!writeAll(c, buf.data(), buf.size())) serverError = "server write failed";
    }
    size_t tail = 0;
    for (ssize_t r; (r = read(c, buf.data(), buf.size())) > 0;) tail += static_cast<size_t>(r);
    if (serverError.empty() && tail != kTail) {
      serverError = fmt::format("server read {} of the {} bytes sent after whileOpen", tail, kTail);
    }
    close(c);
  });
  std::string error;
  if (connect(clientFd, to.sa(), to.len) != 0) {
    error = fmt::format("connect: {}", std::strerror(errno));
    shutdown(listenFd, SHUT_RDWR);
    server.join();
    return error;
  }
  std::vector<uint8_t> buf(1 << 16);
  Stream mine(1), theirs(2);
  Fnv sent, expectBack, gotBack;
  for (size_t n = 0; n < kPayload; n += buf.size()) {
    mine.fill(buf.data(), buf.size());
    sent.add(buf.data(), buf.size());
    if (!writeAll(clientFd, buf.data(), buf.size())) {
      error = "client write failed";
      break;
    }
  }
  size_t got = 0;
  while (error.empty() && got < kPayload) {
    ssize_t r = read(clientFd, buf.data(), std::min(buf.size(), kPayload - got));
    if (r <= 0) break;
    gotBack.add(buf.data(), static_cast<size_t>(r));
    got += static_cast<size_t>(r);
  }
  for (size_t n = 0; n < kPayload; n += buf.size()) {
    theirs.fill(buf.data(), buf.size());
    expectBack.add(buf.data(), buf.size());
  }
  if (error.empty() && got != kPayload) {
    error = fmt::format("client read {} of {} bytes", got, kPayload);
  }
  if (whileOpen) whileOpen();
  std::fill(buf.begin(), buf.end(), 't');
  for (size_t n = 0; error.empty() && n < kTail; n += buf.size()) {
    if (!writeAll(clientFd, buf.data(), buf.size())) error = "client write after whileOpen failed";
  }
  close(clientFd);
  server.join();
  if (!serverError.empty()) return serverError;
  if (!error.empty()) return error;
  if (serverGot.h != sent.h) return "the server received other bytes than the client sent";
  if (gotBack.h != expectBack.h) return "the client received other bytes than the server sent";
  return "";
}

int listener(const Addr& at) {
  int fd = socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, at.sa(), at.len) != 0 || ::listen(fd, 8) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void enterCgroup() {
  int cg = open((gCgroup + "/cgroup.procs").c_str(), O_WRONLY);
  if (cg < 0 || write(cg, "0", 1) != 1) _exit(3);
  close(cg);
}

struct Placement {
  bool clientInCgroup = true;
  bool serverInCgroup = true;
};

// Runs one transfer in a forked child; sockets belong to the cgroup of the process that
// creates them, so each end is created before or after the child enters the test cgroup.
// `whileOpen` runs in this process while the connection is open (the child waits for it).
std::string transferFrom(Placement where, const Addr& serverAt, const Addr& dialTo,
                         const std::function<void()>& whileOpen = {}) {
  int outFd[2], syncFd[2], goFd[2];
  if (pipe(outFd) != 0 || pipe(syncFd) != 0 || pipe(goFd) != 0) return "pipe";
  const int outside = where.serverInCgroup ? -1 : listener(serverAt);
  pid_t pid = fork();
  if (pid == 0) {
    close(outFd[0]);
    close(syncFd[0]);
    close(goFd[1]);
    const int early = where.clientInCgroup ? -1 : socket(dialTo.family(), SOCK_STREAM, 0);
    enterCgroup();
    const int lfd = where.serverInCgroup ? listener(serverAt) : outside;
    const int cfd = early >= 0 ? early : socket(dialTo.family(), SOCK_STREAM, 0);
    std::string err = lfd < 0 ? std::string("listen failed") : transfer(lfd, cfd, dialTo, [&] {
      (void)!write(syncFd[1], "o", 1);
      char b;
      (void)!read(goFd[0], &b, 1);
    });
    if (err.empty()) err = "ok";
    (void)!write(outFd[1], err.data(), err.size());
    _exit(0);
  }
  close(outFd[1]);
  close(syncFd[1]);
  close(goFd[0]);
  if (outside >= 0) close(outside);
  char b;
  if (read(syncFd[0], &b, 1) == 1 && whileOpen) whileOpen();
  (void)!write(goFd[1], "g", 1);
  std::string out;
  char buf[512];
  ssize_t r;
  while ((r = read(outFd[0], buf, sizeof(buf))) > 0) out.append(buf, r);
  for (int fd : {outFd[0], syncFd[0], goFd[1]}) close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return fmt::format("child status {}", status);
  }
  return out == "ok" ? "" : out;
}

NetworkConfig net(bool shortcut) {
  NetworkConfig n;
  n.cgroupRoot = gCgroup;
  n.bpfPinDir = gPinDir;
  n.sockmapShortcut = shortcut;
  return n;
}

struct FamilyCase {
  const char* name;
  std::string svcIP, epIP;
};
const FamilyCase kV4{"IPv4", "10.96.0.10", "10.244.1.1"};
const FamilyCase kV6{"IPv6", "fd00:96::10", "fd00:244::1"};

class EbpfSockmapTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (auto* b : {&backend, &other}) {
      if (!*b) continue;
      auto r = (*b)->cleanup();
      EXPECT_TRUE(r.ok) << r.error;
    }
  }
  // A ClusterIP service on port 80 with one endpoint, epIP:8080, on this node.
  void start(bool shortcut, const FamilyCase& f = kV4) {
    backend = std::make_unique<backends::ebpf::EbpfBackend>(net(shortcut));
    ASSERT_TRUE(backend->cleanup().ok);
    SvcSpec s;
    s.name = "web";
    s.clusterIPs = {f.svcIP};
    s.ports = {{"p", Protocol::TCP, 80, 0, {8080, ""}}};
    tracker.upsertService(service(s));
    tracker.upsertSlice(slice("web", "web", {{f.epIP}}, {{"p", Protocol::TCP, 8080}}));
    state.apply(tracker.take(), false);
    auto r = backend->fullSync(state.state());
    ASSERT_TRUE(r.ok) << r.error;
  }
  backends::ebpf::SockmapCounters counters() const {
    return backend->sockmapPrograms()->counters();
  }

  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  std::unique_ptr<backends::ebpf::EbpfBackend> backend, other;
};

class EbpfSockmapFamilyTest : public EbpfSockmapTest,
                              public ::testing::WithParamInterface<FamilyCase> {};

TEST_P(EbpfSockmapFamilyTest, ServiceTrafficBetweenTwoLocalSocketsSkipsTheStackBothWays) {
  const FamilyCase& f = GetParam();
  start(true, f);
  ASSERT_NE(backend->sockmapPrograms(), nullptr);
  const int hash = backend->sockmapPrograms()->sockhashFd();
  size_t entriesWhileOpen = 0;
  const uint64_t lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({}, Addr::of(f.epIP, 8080), Addr::of(f.svcIP, 80),
                         [&] { entriesWhileOpen = sockhashEntries(hash); }),
            "");
  const uint64_t lo = loopbackTxBytes() - lo0;
  const auto c = counters();
  EXPECT_EQ(c.inserted, 2u) << "client and server ends";
  EXPECT_EQ(c.stack, 0u);
  EXPECT_EQ(c.bytes, 2 * kPayload + kTail) << "every byte of both directions redirected";
  EXPECT_GT(c.redirects, 0u);
  // Handshake, FIN and their ACKs: a few kilobytes, not 65 MiB.
  EXPECT_LT(lo, 64u << 10) << "loopback carried " << lo << " bytes";
  EXPECT_EQ(entriesWhileOpen, 2u);
  EXPECT_EQ(sockhashEntries(hash), 0u) << "closed sockets leave the sockhash";
}

INSTANTIATE_TEST_SUITE_P(Families, EbpfSockmapFamilyTest, ::testing::Values(kV4, kV6),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(EbpfSockmapTest, OffByDefaultTheBytesTakeTheStack) {
  start(false);
  EXPECT_EQ(backend->sockmapPrograms(), nullptr);
  EXPECT_FALSE(std::filesystem::exists(gPinDir + "/links/sockops"));
  const uint64_t lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({}, Addr::of(kV4.epIP, 8080), Addr::of(kV4.svcIP, 80)), "");
  EXPECT_GE(loopbackTxBytes() - lo0, 2 * kPayload);
}

TEST_F(EbpfSockmapTest, AnEndOutsideTheCgroupIsNeverRedirected) {
  start(true);
  const int hash = backend->sockmapPrograms()->sockhashFd();
  // Client outside: its connect() is not rewritten either, so it dials the endpoint. The
  // server end, whose client is not in the sockhash, stays out of it.
  uint64_t lo0 = loopbackTxBytes();
  size_t entries = 9;
  EXPECT_EQ(transferFrom({.clientInCgroup = false}, Addr::of(kV4.epIP, 8080),
                         Addr::of(kV4.epIP, 8080), [&] { entries = sockhashEntries(hash); }),
            "");
  EXPECT_EQ(entries, 0u);
  EXPECT_EQ(counters().inserted, 0u);
  EXPECT_GE(loopbackTxBytes() - lo0, 2 * kPayload);
  // Server outside: the client end joins the sockhash, finds no peer at its first send and
  // uses the stack from then on.
  lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({.serverInCgroup = false}, Addr::of(kV4.epIP, 8080),
                         Addr::of(kV4.svcIP, 80), [&] { entries = sockhashEntries(hash); }),
            "");
  EXPECT_EQ(entries, 1u);
  const auto c = counters();
  EXPECT_EQ(c.inserted, 1u);
  EXPECT_EQ(c.stack, 1u);
  EXPECT_EQ(c.redirects, 0u);
  EXPECT_GE(loopbackTxBytes() - lo0, 2 * kPayload);
}

TEST_F(EbpfSockmapTest, ARestartAdoptsThePinsAndTheOpenConnectionKeepsItsShortcut) {
  start(true);
  uint64_t loAfterRestart = 0;
  EXPECT_EQ(transferFrom({}, Addr::of(kV4.epIP, 8080), Addr::of(kV4.svcIP, 80),
                         [&] {
                           // A second run while the connection is open: same pins, links
                           // updated in place.
                           other = std::make_unique<backends::ebpf::EbpfBackend>(net(true));
                           auto r = other->fullSync(state.state());
                           ASSERT_TRUE(r.ok) << r.error;
                           loAfterRestart = loopbackTxBytes();
                         }),
            "");
  // The 1 MiB the client sent after the restart went socket to socket too.
  EXPECT_LT(loopbackTxBytes() - loAfterRestart, 64u << 10);
  ASSERT_NE(other->sockmapPrograms(), nullptr);
  EXPECT_TRUE(other->sockmapPrograms()->adoptedMaps());
  EXPECT_EQ(other->sockmapPrograms()->updatedLinks(), 2);
  // The new run's programs redirect the next connection.
  const uint64_t lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({}, Addr::of(kV4.epIP, 8080), Addr::of(kV4.svcIP, 80)), "");
  EXPECT_LT(loopbackTxBytes() - lo0, 64u << 10);
  EXPECT_EQ(other->sockmapPrograms()->counters().bytes, 2 * kPayload + kTail);
  other.reset();
}

TEST_F(EbpfSockmapTest, CleanupAndTurningItOffDetachTheShortcut) {
  start(true);
  EXPECT_TRUE(std::filesystem::exists(gPinDir + "/links/sockops"));
  EXPECT_TRUE(std::filesystem::exists(gPinDir + "/links/sk_msg"));
  // A restart without the flag takes the shortcut's pins away, and nothing else.
  other = std::make_unique<backends::ebpf::EbpfBackend>(net(false));
  ASSERT_TRUE(other->fullSync(state.state()).ok);
  EXPECT_FALSE(std::filesystem::exists(gPinDir + "/links/sockops"));
  EXPECT_FALSE(std::filesystem::exists(gPinDir + "/maps/sp_sockhash"));
  EXPECT_TRUE(std::filesystem::exists(gPinDir + "/links/connect4"));
  uint32_t progs = 9;
  const int cg = open(gCgroup.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_EQ(bpf_prog_query(cg, BPF_CGROUP_SOCK_OPS, 0, nullptr, nullptr, &progs), 0);
  EXPECT_EQ(progs, 0u) << "sockops detached from the cgroup";
  uint64_t lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({}, Addr::of(kV4.epIP, 8080), Addr::of(kV4.svcIP, 80)), "");
  EXPECT_GE(loopbackTxBytes() - lo0, 2 * kPayload);
  other.reset();

  // On again, then `sliceproxy cleanup`: links and maps unpinned, the cgroup has no sockops.
  backend = std::make_unique<backends::ebpf::EbpfBackend>(net(true));
  ASSERT_TRUE(backend->fullSync(state.state()).ok);
  progs = 0;
  ASSERT_EQ(bpf_prog_query(cg, BPF_CGROUP_SOCK_OPS, 0, nullptr, nullptr, &progs), 0);
  EXPECT_EQ(progs, 1u);
  auto r = backend->cleanup();
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.operations, 20u) << "10 links and 10 maps";
  EXPECT_FALSE(std::filesystem::exists(gPinDir));
  progs = 9;
  ASSERT_EQ(bpf_prog_query(cg, BPF_CGROUP_SOCK_OPS, 0, nullptr, nullptr, &progs), 0);
  EXPECT_EQ(progs, 0u);
  close(cg);
  lo0 = loopbackTxBytes();
  EXPECT_EQ(transferFrom({}, Addr::of(kV4.epIP, 8080), Addr::of(kV4.epIP, 8080)), "");
  EXPECT_GE(loopbackTxBytes() - lo0, 2 * kPayload);
}

}  // namespace
}  // namespace sliceproxy::testing

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
  char dir[] = "/tmp/sliceproxy-sockmap-XXXXXX";
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
  const std::string prefix = "sliceproxy-sockmap-test-";
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (!std::filesystem::exists("/proc/" + name.substr(prefix.size()))) rmdir(e.path().c_str());
  }
  gCgroup = fmt::format("{}/{}{}", root, prefix, getpid());
  if (mkdir(gCgroup.c_str(), 0755) != 0) {
    std::perror(("creating cgroup " + gCgroup).c_str());
    return 1;
  }
  int rc = std::system(
      "ip link set lo up && ip addr add 10.244.1.1/32 dev lo && "
      "ip -6 addr add fd00:244::1/128 dev lo");
  if (rc == 0) rc = RUN_ALL_TESTS();
  if (rmdir(gCgroup.c_str()) != 0) std::perror(("removing cgroup " + gCgroup).c_str());
  umount2(dir, MNT_DETACH);
  rmdir(dir);
  return rc;
}
