// The IPVS backend against a kernel that has IPVS: Debian's, under qemu (tests/qemu/vm.sh; CTest
// kernel_ipvs_backend_vm). The host kernel here has none. Dumps go through our own client, never
// ipvsadm. Real traffic through the backend is the conformance suite's (conformance_ipvs_vm).
#include <netinet/in.h>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/ip_vs.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "../unit/builders.h"
#include "backends/ipvs/dummy_interface.h"
#include "backends/ipvs/ipvs_backend.h"
#include "backends/ipvs/ipvs_netlink.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::testing {
namespace {

using backends::ipvs::DummyInterface;
using backends::ipvs::IpvsBackend;
using backends::ipvs::IpvsNetlink;
using backends::ipvs::RealServer;
using backends::ipvs::VirtualService;
using backends::ipvs::VirtualServiceKey;

VirtualServiceKey vsKey(const char* addr, uint16_t port, uint16_t proto = IPPROTO_TCP) {
  return VirtualServiceKey{ip(addr), proto, port};
}

std::vector<RealServer> dests(IpvsNetlink& nl, const VirtualServiceKey& k) {
  std::vector<RealServer> out;
  std::string err = nl.listRealServers(k, out);
  EXPECT_EQ(err, "");
  return out;
}

const VirtualService* findService(const std::vector<VirtualService>& l,
                                  const VirtualServiceKey& k) {
  auto it = std::find_if(l.begin(), l.end(), [&](const auto& s) { return s.key == k; });
  return it == l.end() ? nullptr : &*it;
}

TEST(IpvsNetlinkTest, ProgramsServicesAndRealServersAndDumpsThem) {
  IpvsNetlink nl;
  ASSERT_EQ(nl.open(), "");
  VirtualService svc;
  svc.key = vsKey("10.96.7.1", 80);
  ASSERT_EQ(nl.addService(svc), "");
  ASSERT_EQ(nl.addRealServer(svc.key, RealServer{{ip("10.244.2.1"), 8080}, 1}), "");
  ASSERT_EQ(nl.addRealServer(svc.key, RealServer{{ip("10.244.2.2"), 8080}, 1}), "");
  std::vector<VirtualService> list;
  ASSERT_EQ(nl.listServices(list), "");
  const VirtualService* got = findService(list, svc.key);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->scheduler, "rr");
  EXPECT_EQ(got->flags & IP_VS_SVC_F_PERSISTENT, 0u);
  auto rs = dests(nl, svc.key);
  ASSERT_EQ(rs.size(), 2u);
  for (const auto& r : rs) {
    EXPECT_EQ(r.weight, 1u);
    EXPECT_EQ(r.fwdMethod & IP_VS_CONN_F_FWD_MASK, IP_VS_CONN_F_MASQ);
    EXPECT_EQ(r.activeConns + r.inactiveConns, 0u);
  }

  // ClientIP affinity: persistence with the service's timeout; the scheduler changes in place.
  svc.scheduler = "sh";
  svc.flags = IP_VS_SVC_F_PERSISTENT;
  svc.timeout = 10800;
  ASSERT_EQ(nl.editService(svc), "");
  list.clear();
  ASSERT_EQ(nl.listServices(list), "");
  got = findService(list, svc.key);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->scheduler, "sh");
  EXPECT_EQ(got->flags & IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_PERSISTENT);
  EXPECT_EQ(got->timeout, 10800u);

  ASSERT_EQ(nl.editRealServer(svc.key, RealServer{{ip("10.244.2.1"), 8080}, 0}), "");
  ASSERT_EQ(nl.deleteRealServer(svc.key, {ip("10.244.2.2"), 8080}), "");
  rs = dests(nl, svc.key);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].key.addr, ip("10.244.2.1"));
  EXPECT_EQ(rs[0].weight, 0u);

  // Errors name the object and what the kernel said.
  std::string err = nl.addService(svc);
  EXPECT_NE(err.find("adding IPVS virtual service TCP 10.96.7.1:80"), std::string::npos) << err;
  EXPECT_NE(err.find("File exists"), std::string::npos) << err;

  ASSERT_EQ(nl.deleteService(svc.key), "");
  list.clear();
  ASSERT_EQ(nl.listServices(list), "");
  EXPECT_EQ(findService(list, svc.key), nullptr);
}

TEST(IpvsNetlinkTest, DummyInterfaceKeepsItsAddressesAcrossInstances) {
  DummyInterface d("sp-ipvs-test0");
  ASSERT_EQ(d.ensure(), "");
  ASSERT_EQ(d.addAddress(ip("10.96.9.1")), "");
  DummyInterface again("sp-ipvs-test0");
  ASSERT_EQ(again.ensure(), "");
  EXPECT_EQ(again.addresses().count(ip("10.96.9.1")), 1u);
  ASSERT_EQ(again.removeAddress(ip("10.96.9.1")), "");
  ASSERT_EQ(again.remove(), "");
  DummyInterface gone("sp-ipvs-test0");
  EXPECT_EQ(gone.remove(), "");  // nothing there: not an error
}

class IpvsBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(nl.open(), "");
    ASSERT_TRUE(backend.cleanup().ok);
    // Every sync looks at the real servers waiting on graceful termination (60 s in service).
    backend.setGracefulCheckInterval(std::chrono::seconds(0));
  }
  void TearDown() override { backend.cleanup(); }
  Diff sync() { return state.apply(tracker.take()); }
  std::vector<std::string> endpoints(int n) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i)
      out.push_back(fmt::format("10.244.{}.{}", 2 + i / 250, i % 250 + 1));
    return out;
  }
  SlicePtr sliceOf(const std::vector<std::string>& eps, Protocol proto = Protocol::TCP) {
    std::vector<Ep> v;
    for (const auto& e : eps) v.push_back({e});
    return slice("a", "svc", v, {{"http", proto, 8080}});
  }

  IpvsNetlink nl;
  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  IpvsBackend backend{NetworkConfig{}};
};

TEST_F(IpvsBackendTest, ClusterIpIsAVirtualServiceOnTheDummyLink) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(sliceOf({"10.244.2.1", "10.244.2.2"}));
  state.apply(tracker.take(), false);
  auto res = backend.fullSync(state.state());
  ASSERT_TRUE(res.ok) << res.error;
  auto rs = dests(nl, vsKey("10.96.0.1", 80));
  EXPECT_EQ(rs.size(), 2u);
  DummyInterface d;
  ASSERT_EQ(d.ensure(), "");
  EXPECT_EQ(d.addresses().count(ip("10.96.0.1")), 1u);

  tracker.deleteService({"default", "svc"});
  res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  std::vector<VirtualService> list;
  ASSERT_EQ(nl.listServices(list), "");
  EXPECT_EQ(findService(list, vsKey("10.96.0.1", 80)), nullptr);
  ASSERT_EQ(d.ensure(), "");
  EXPECT_EQ(d.addresses().count(ip("10.96.0.1")), 0u) << "the address goes with its service";
}

TEST_F(IpvsBackendTest, OneEndpointChangeIsOneRequestAndRemovalIsGraceful) {
  tracker.upsertService(service({}));
  auto eps = endpoints(200);
  tracker.upsertSlice(sliceOf(eps));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  ASSERT_EQ(dests(nl, vsKey("10.96.0.1", 80)).size(), 200u);

  eps.push_back("10.244.9.9");
  tracker.upsertSlice(sliceOf(eps));
  uint64_t before = backend.ipvsRequests();
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_EQ(backend.ipvsRequests() - before, 1u) << "one real server added";

  // TCP: the removed real server first gets weight 0 ...
  eps.pop_back();
  tracker.upsertSlice(sliceOf(eps));
  before = backend.ipvsRequests();
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_EQ(backend.ipvsRequests() - before, 1u) << "one weight change";
  EXPECT_EQ(backend.gracefulPending(), 1u);
  auto rs = dests(nl, vsKey("10.96.0.1", 80));
  ASSERT_EQ(rs.size(), 201u);
  auto removed = std::find_if(rs.begin(), rs.end(),
                              [](const RealServer& r) { return r.key.addr == ip("10.244.9.9"); });
  ASSERT_NE(removed, rs.end());
  EXPECT_EQ(removed->weight, 0u);
  // ... and is deleted at the next sync, having no connections.
  tracker.upsertSlice(sliceOf(eps));
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_EQ(backend.gracefulPending(), 0u);
  EXPECT_EQ(dests(nl, vsKey("10.96.0.1", 80)).size(), 200u);
}

// The seed workload's shape at 10,000 endpoints (under software emulation absolute times mean
// little; the request count is the point): one endpoint change is one request.
TEST_F(IpvsBackendTest, OneChangeAmongTenThousandEndpointsIsOneRequest) {
  tracker.upsertService(service({}));
  auto eps = endpoints(10000);
  tracker.upsertSlice(sliceOf(eps));
  state.apply(tracker.take(), false);
  auto t0 = std::chrono::steady_clock::now();
  auto res = backend.fullSync(state.state());
  auto cold = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res.ok) << res.error;
  eps.back() = "10.244.200.1";
  tracker.upsertSlice(sliceOf(eps));
  Diff d = sync();
  uint64_t before = backend.ipvsRequests();
  t0 = std::chrono::steady_clock::now();
  res = backend.apply(d);
  auto one = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_EQ(backend.ipvsRequests() - before, 2u) << "one real server added, one set to weight 0";
  std::printf("ipvs 10000 endpoints: cold full sync %.1f ms, one endpoint replaced %.1f us\n",
              std::chrono::duration<double, std::milli>(cold).count(),
              std::chrono::duration<double, std::micro>(one).count());
}

// A real server with a connection stays at weight 0 until the bound; the connection here is a
// SYN the node sends to the clusterIP, which IPVS schedules to the only real server (the pod
// route ends in a dummy link, so it never completes and counts as inactive).
TEST_F(IpvsBackendTest, RemovedRealServerWithConnectionsWaitsForTheBound) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(sliceOf({"10.244.2.1"}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(80);
  inet_pton(AF_INET, "10.96.0.1", &sa.sin_addr);
  connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));  // EINPROGRESS
  auto rs = dests(nl, vsKey("10.96.0.1", 80));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].activeConns + rs[0].inactiveConns, 1u) << "IPVS scheduled the SYN";

  tracker.upsertSlice(sliceOf({"10.244.2.2"}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  tracker.upsertSlice(sliceOf({"10.244.2.2"}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_EQ(backend.gracefulPending(), 1u) << "it still has a connection";
  EXPECT_EQ(dests(nl, vsKey("10.96.0.1", 80)).size(), 2u);

  backend.setGracefulBound(std::chrono::seconds(0));
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_EQ(backend.gracefulPending(), 0u) << "the bound is reached";
  rs = dests(nl, vsKey("10.96.0.1", 80));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].key.addr, ip("10.244.2.2"));
  close(fd);
}

TEST_F(IpvsBackendTest, UdpRealServerGoesAtOnce) {
  SvcSpec s;
  s.ports = {{"http", Protocol::UDP, 53, 0, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(sliceOf({"10.244.2.1", "10.244.2.2"}, Protocol::UDP));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  tracker.upsertSlice(sliceOf({"10.244.2.1"}, Protocol::UDP));
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_EQ(backend.gracefulPending(), 0u);
  EXPECT_EQ(dests(nl, vsKey("10.96.0.1", 53, IPPROTO_UDP)).size(), 1u);
}

TEST_F(IpvsBackendTest, RestartAdoptsWithoutChangesAndCleanupRemovesEverything) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(sliceOf({"10.244.2.1", "10.244.2.2"}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);

  IpvsBackend second{NetworkConfig{}};
  auto res = second.fullSync(state.state());
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_EQ(res.operations, 0u) << "what the first run programmed is adopted as it is";
  // Listing: the family, the services, the real servers of ours; nothing programmed.
  EXPECT_EQ(dests(nl, vsKey("10.96.0.1", 80)).size(), 2u);

  ASSERT_TRUE(second.cleanup().ok);
  std::vector<VirtualService> list;
  ASSERT_EQ(nl.listServices(list), "");
  EXPECT_EQ(findService(list, vsKey("10.96.0.1", 80)), nullptr);
  DummyInterface d;
  ASSERT_EQ(d.remove(), "");
  EXPECT_EQ(d.index(), 0);
}

std::string run(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((cmd + " 2>&1").c_str(), "r"), pclose);
  if (!p) return "popen failed";
  char buf[4096];
  while (fgets(buf, sizeof(buf), p.get())) out += buf;
  return out;
}

TEST_F(IpvsBackendTest, MasqueradeTableFollowsTheVirtualServices) {
  SvcSpec s;
  s.externalIPs = {"203.0.113.7"};
  tracker.upsertService(service(s));
  tracker.upsertSlice(sliceOf({"10.244.2.1"}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string t = run("nft list table ip sliceproxy-ipvs");
  EXPECT_NE(t.find("elements = { 10.96.0.1 }"), std::string::npos) << t;
  EXPECT_NE(t.find("elements = { 203.0.113.7 . tcp . 80 }"), std::string::npos) << t;
  EXPECT_NE(t.find("masquerade"), std::string::npos) << t;
  // The node policy next to IPVS: the shared main table, without its masquerading chains, with
  // the check after IPVS's input hook.
  std::string policy = run("nft list table ip sliceproxy");
  EXPECT_NE(policy.find("chain filter-input-late"), std::string::npos) << policy;
  EXPECT_NE(policy.find("elements = { 10.96.0.1 }"), std::string::npos) << policy;
  EXPECT_EQ(policy.find("chain masquerading"), std::string::npos) << policy;

  s.externalIPs = {};
  tracker.upsertService(service(s));
  ASSERT_TRUE(backend.apply(sync()).ok);
  t = run("nft list table ip sliceproxy-ipvs");
  EXPECT_EQ(t.find("203.0.113.7"), std::string::npos) << t;

  ASSERT_TRUE(backend.cleanup().ok);
  t = run("nft list tables");
  EXPECT_EQ(t.find("sliceproxy"), std::string::npos) << t;
}

TEST_F(IpvsBackendTest, ClientIpAffinityIsPersistenceWithTheServiceTimeout) {
  auto svc = std::make_shared<Service>(*service({}));
  svc->sessionAffinity = SessionAffinity::ClientIP;
  svc->affinityTimeoutSeconds = 600;
  tracker.upsertService(svc);
  tracker.upsertSlice(sliceOf({"10.244.2.1"}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::vector<VirtualService> list;
  ASSERT_EQ(nl.listServices(list), "");
  const VirtualService* got = findService(list, vsKey("10.96.0.1", 80));
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->flags & IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_PERSISTENT);
  EXPECT_EQ(got->timeout, 600u);
  EXPECT_EQ(backend.drift(), "") << "the kernel reports the settings as programmed";
}

// Another program removing what the backend programmed is noticed by the next sync that finds
// nothing to change (Backend::drift()) and repaired by the full sync the proxier then runs.
TEST_F(IpvsBackendTest, StateRemovedBehindItsBackIsNoticedAndReprogrammed) {
  tracker.synced();
  Proxier proxy(tracker, backend, "node-a");
  struct Repairs : SyncListener {
    std::vector<std::string> seen;
    void onSync(const SyncReport& r) override {
      if (!r.repaired.empty()) seen.push_back(r.repaired);
    }
  } repairs;
  proxy.addListener(&repairs);
  SvcSpec s;
  s.externalIPs = {"203.0.113.7"};
  tracker.upsertService(service(s));
  tracker.upsertSlice(sliceOf({"10.244.2.1", "10.244.2.2"}));
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_EQ(backend.drift(), "");
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_TRUE(repairs.seen.empty()) << "nothing changed, nothing gone";

  struct Case {
    const char* cmd;
    const char* said;
  };
  const Case cases[] = {
      {"ipvsadm -C", "2 of 2 IPVS virtual services"},
      {"ipvsadm -D -t 203.0.113.7:80", "IPVS virtual service TCP 203.0.113.7:80 removed"},
      {"ipvsadm -E -t 10.96.0.1:80 -s sh", "IPVS virtual service changed (now TCP 10.96.0.1:80"},
      {"ip link del sliceproxy-ipvs", "link sliceproxy-ipvs removed"},
      {"ip addr del 10.96.0.1/32 dev sliceproxy-ipvs",
       "address 10.96.0.1 removed from link sliceproxy-ipvs"},
      {"nft delete table ip sliceproxy-ipvs", "table ip sliceproxy-ipvs removed"},
      {"nft delete table ip sliceproxy", "table ip sliceproxy removed"},
      {"nft flush ruleset", "table ip6 sliceproxy removed"},
  };
  const uint64_t syncs = proxy.stats().fullSyncs;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.cmd);
    ASSERT_EQ(std::system(c.cmd), 0);
    EXPECT_NE(backend.drift().find(c.said), std::string::npos) << backend.drift();
    const size_t before = repairs.seen.size();
    ASSERT_TRUE(proxy.syncOnce());
    ASSERT_EQ(repairs.seen.size(), before + 1);
    EXPECT_NE(repairs.seen.back().find(c.said), std::string::npos) << repairs.seen.back();
    EXPECT_EQ(backend.drift(), "") << "repaired";
    for (const char* addr : {"10.96.0.1", "203.0.113.7"}) {
      auto rs = dests(nl, vsKey(addr, 80));
      EXPECT_EQ(rs.size(), 2u) << addr;
    }
    std::vector<VirtualService> list;
    ASSERT_EQ(nl.listServices(list), "");
    ASSERT_NE(findService(list, vsKey("10.96.0.1", 80)), nullptr);
    EXPECT_EQ(findService(list, vsKey("10.96.0.1", 80))->scheduler, "rr");
    DummyInterface d;
    ASSERT_EQ(d.ensure(), "");
    EXPECT_EQ(d.addresses().count(ip("10.96.0.1")), 1u);
    EXPECT_EQ(d.addresses().count(ip("203.0.113.7")), 1u);
    std::string t = run("nft list tables");
    for (const char* table : {"table ip sliceproxy-ipvs", "table ip6 sliceproxy-ipvs",
                              "table ip sliceproxy\n", "table ip6 sliceproxy\n"}) {
      EXPECT_NE(t.find(table), std::string::npos) << table << " in\n" << t;
    }
    EXPECT_NE(run("nft list table ip sliceproxy-ipvs").find("elements = { 10.96.0.1 }"),
              std::string::npos);
  }
  EXPECT_EQ(proxy.stats().fullSyncs, syncs + std::size(cases));
  EXPECT_EQ(proxy.stats().failures, 0u);
}

}  // namespace
}  // namespace sliceproxy::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Fails loudly rather than skipping: this suite exists to run against the real kernel.
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("kernel tests need root to create a network namespace: unshare(CLONE_NEWNET)");
    return 1;
  }
  // Real servers must be routable (IPVS refuses an address of no known type): the pod range
  // behind a dummy link of the test's own.
  if (std::system("ip link add sp-pods type dummy && ip link set sp-pods up && "
                  "ip addr add 10.244.0.254/16 dev sp-pods") != 0) {
    std::fprintf(stderr, "cannot create the pod route in the test namespace\n");
    return 1;
  }
  return RUN_ALL_TESTS();
}
