// The nftables backend against the real kernel, in a network namespace this test process
// creates for itself (main() unshares it before any test runs).

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <array>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "../unit/builders.h"
#include "backends/nftables/nftables_backend.h"
#include "backends/nftables/sctp_ports.h"
#include "backends/nftnl/rule_builder.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::testing {
namespace {

std::string run(const std::string& cmd) {
  std::array<char, 4096> buf;
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen((cmd + " 2>&1").c_str(), "r"), pclose);
  if (!p) return "popen failed";
  while (fgets(buf.data(), buf.size(), p.get())) out += buf.data();
  return out;
}

NetworkConfig net() {
  NetworkConfig n;
  n.detectLocal = LocalDetectMode::ClusterCIDR;
  n.clusterCIDRs = {*Cidr::parse("10.244.0.0/16"), *Cidr::parse("fd00:244::/48")};
  return n;
}

class NftablesBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(backend.cleanup().ok); }
  void TearDown() override { backend.cleanup(); }
  Diff sync() { return state.apply(tracker.take()); }
  // Services svc0..svcN-1 on clusterIPs 10.96.<firstBlock + i/250>.x, each with one endpoint
  // 10.244.<i/250>.x unless `endpoints` is false.
  void addServices(int n, bool endpoints = true, int firstBlock = 0,
                   const std::function<void(SvcSpec&, int)>& tweak = nullptr) {
    for (int i = 0; i < n; ++i) {
      SvcSpec s;
      s.name = fmt::format("svc{}", i);
      s.clusterIPs = {fmt::format("10.96.{}.{}", firstBlock + i / 250, i % 250 + 1)};
      if (tweak) tweak(s, i);
      tracker.upsertService(service(s));
      if (endpoints) {
        tracker.upsertSlice(slice(fmt::format("s{}", i), s.name,
                                  {{fmt::format("10.244.{}.{}", i / 250, i % 250 + 1)}}));
      }
    }
  }

  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  backends::nft::NftablesBackend backend{net()};
};

TEST_F(NftablesBackendTest, FullSyncProgramsEveryFamilyAndNftCanListIt) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.1", "fd00:96::1"};
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, 30080, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("v4", "svc", {{"10.244.1.1", "node-a"}, {"10.244.2.1"}}));
  tracker.upsertSlice(slice("v6", "svc", {{"fd00:244:1::1", "node-a"}}));
  state.apply(tracker.take(), false);
  auto res = backend.fullSync(state.state());
  ASSERT_TRUE(res.ok) << res.error;
  std::string v4 = run("nft list ruleset ip");
  // A port without affinity or eTP Local has no chain of its own: its frontends go to the
  // table's shared DNAT chains for two endpoints, which nft can print.
  EXPECT_NE(v4.find("10.96.0.1 . tcp . 80 : goto dnat-2"), std::string::npos) << v4;
  EXPECT_NE(v4.find("tcp . 30080 : goto dnat-nodeport-2"), std::string::npos) << v4;
  EXPECT_NE(v4.find("numgen random mod 2 map @frontend-endpoints"), std::string::npos) << v4;
  EXPECT_EQ(v4.find("svc-0-default"), std::string::npos) << v4;
  EXPECT_NE(v4.find("10.244.2.1 . 8080"), std::string::npos) << v4;
  EXPECT_NE(v4.find("10.244.1.1 . 10.244.1.1"), std::string::npos) << "local endpoint hairpin";
  std::string v6 = run("nft list ruleset ip6");
  EXPECT_NE(v6.find("fd00:244:1::1 . 8080"), std::string::npos) << v6;
  EXPECT_EQ(run("nft list ruleset").find("Assertion"), std::string::npos);
}

// Only new connections are checked against the clusterIPs (kube-proxy's guard): every packet of
// an established flow would otherwise pay the lookup.
TEST_F(NftablesBackendTest, ClusterIpsCheckSeesOnlyNewConnections) {
  addServices(1);
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  for (const char* chain : {"filter-forward", "filter-output"}) {
    std::string t = run(fmt::format("nft list chain ip sliceproxy {}", chain));
    EXPECT_NE(t.find("ct state new jump cluster-ips-check"), std::string::npos) << t;
    EXPECT_EQ(t.find("\t\tjump cluster-ips-check"), std::string::npos) << t;
  }
}

TEST_F(NftablesBackendTest, IncrementalChangeTouchesOnlyWhatChanged) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}, {"10.244.2.2"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.2"}, {"10.244.2.3"}}));
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  std::string t = run("nft list ruleset ip");
  EXPECT_EQ(t.find("10.244.2.1 . 8080"), std::string::npos) << t;
  EXPECT_NE(t.find("10.244.2.3 . 8080"), std::string::npos) << t;
  EXPECT_NE(t.find("numgen random mod 2"), std::string::npos) << t;
  // A small change is a small transaction.
  EXPECT_LT(backend.lastStats().lastBytes, 1000u);
}

TEST_F(NftablesBackendTest, ServiceWithoutEndpointsIsRejectedNotRouted) {
  tracker.upsertService(service({}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string t = run("nft list map ip sliceproxy no-endpoint-services");
  EXPECT_NE(t.find("10.96.0.1 . tcp . 80 : goto reject-chain"), std::string::npos) << t;
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  t = run("nft list map ip sliceproxy no-endpoint-services");
  EXPECT_EQ(t.find("10.96.0.1"), std::string::npos) << t;
  t = run("nft list map ip sliceproxy-svc-0 service-ips");
  EXPECT_NE(t.find("10.96.0.1 . tcp . 80 : goto dnat-1"), std::string::npos) << t;
}

// Ports without ClientIP affinity or eTP Local have no chains: they share the DNAT chains of
// their table by endpoint count. A chain exists while a frontend goes to it; a change of count
// moves the port's frontends to another; the port's endpoints are keyed by frontend and slot.
TEST_F(NftablesBackendTest, SharedDnatChainsFollowTheEndpointCounts) {
  addServices(3);  // one endpoint each
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string c = run("nft list ruleset ip");
  EXPECT_NE(c.find("chain dnat-1 {"), std::string::npos) << c;
  EXPECT_EQ(c.find("chain dnat-2 {"), std::string::npos) << c;
  EXPECT_EQ(c.find("chain svc-"), std::string::npos) << c;

  tracker.upsertSlice(slice("s0", "svc0", {{"10.244.0.1"}, {"10.244.7.7"}}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  c = run("nft list ruleset ip");
  EXPECT_NE(c.find("chain dnat-1 {"), std::string::npos) << c;
  EXPECT_NE(c.find("chain dnat-2 {"), std::string::npos) << c;
  EXPECT_NE(c.find("10.96.0.1 . tcp . 80 : goto dnat-2"), std::string::npos) << c;
  EXPECT_NE(c.find("10.96.0.1 . tcp . 80 . 0x00000001 : 10.244.7.7 . 8080"), std::string::npos)
      << c;

  tracker.deleteService({"default", "svc1"});
  tracker.deleteService({"default", "svc2"});
  ASSERT_TRUE(backend.apply(sync()).ok);
  c = run("nft list ruleset ip");
  EXPECT_EQ(c.find("chain dnat-1 {"), std::string::npos) << "no frontend goes there now\n" << c;
  EXPECT_NE(c.find("chain dnat-2 {"), std::string::npos) << c;

  tracker.upsertSlice(slice("s0", "svc0", {{"10.244.0.1"}}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  c = run("nft list ruleset ip");
  EXPECT_NE(c.find("chain dnat-1 {"), std::string::npos) << c;
  EXPECT_EQ(c.find("chain dnat-2 {"), std::string::npos) << c;
  EXPECT_EQ(c.find("10.244.7.7"), std::string::npos) << c;
}

// Shared DNAT chains write a port's endpoints once per frontend; a port with many endpoints
// behind several frontends (a NodePort: clusterIP and NodePort) keeps chains of its own instead.
TEST_F(NftablesBackendTest, BigPortsBehindSeveralFrontendsKeepChainsOfTheirOwn) {
  SvcSpec small, big;
  small.name = "small";
  small.type = big.type = ServiceType::NodePort;
  small.ports = {{"http", Protocol::TCP, 80, 30080, {8080, ""}}};
  big.name = "big";
  big.clusterIPs = {"10.96.0.2"};
  big.ports = {{"http", Protocol::TCP, 80, 30081, {8080, ""}}};
  tracker.upsertService(service(small));
  tracker.upsertService(service(big));
  tracker.upsertSlice(slice("s", "small", {{"10.244.1.1"}, {"10.244.1.2"}}));
  std::vector<Ep> many;
  for (int i = 0; i < 40; ++i) many.push_back({fmt::format("10.244.2.{}", i + 1)});
  tracker.upsertSlice(slice("b", "big", many));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string c = run("nft list ruleset ip");
  EXPECT_NE(c.find("tcp . 30080 : goto dnat-nodeport-2"), std::string::npos) << c;
  EXPECT_NE(c.find("tcp . 30081 : goto ext-0-default/big/http/TCP"), std::string::npos) << c;
  EXPECT_NE(c.find("10.96.0.2 . tcp . 80 : goto svc-0-default/big/http/TCP"), std::string::npos)
      << c;
  EXPECT_EQ(c.find("10.96.0.2 . tcp . 80 . 0x"), std::string::npos) << "not in frontend-endpoints";
}

TEST_F(NftablesBackendTest, DeletedServiceLeavesNoChainBehind) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  tracker.deleteService({"default", "svc"});
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  std::string t = run("nft list ruleset ip");
  EXPECT_EQ(t.find("svc-0-default"), std::string::npos) << t;
  EXPECT_EQ(t.find("10.244.2.1"), std::string::npos) << t;
}

TEST_F(NftablesBackendTest, KernelErrorNamesWhatWasProgrammedAndFullSyncRecovers) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  // Someone removes our table behind our back: the next incremental change must fail loudly.
  run("nft delete table ip sliceproxy-svc-0");
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.2"}}));
  auto res = backend.apply(sync());
  ASSERT_FALSE(res.ok);
  EXPECT_NE(res.error.find("programming"), std::string::npos) << res.error;
  EXPECT_NE(res.error.find("IPv4 table"), std::string::npos) << res.error;
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  EXPECT_NE(run("nft list ruleset ip").find("10.244.2.2 . 8080"), std::string::npos);
}

TEST_F(NftablesBackendTest, RestartReplacesThePreviousTableInOneStep) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  // A second process (a restart) with different state replaces the table wholesale.
  backends::nft::NftablesBackend second(net());
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.9"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(second.fullSync(state.state()).ok);
  std::string t = run("nft list ruleset ip");
  EXPECT_EQ(t.find("10.244.2.1 "), std::string::npos) << t;
  EXPECT_NE(t.find("10.244.2.9 . 8080"), std::string::npos) << t;
}

TEST_F(NftablesBackendTest, CleanupRemovesEverything) {
  tracker.upsertService(service({}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  ASSERT_TRUE(backend.cleanup().ok);
  EXPECT_EQ(run("nft list tables").find("sliceproxy"), std::string::npos);
}

// SctpPorts (the eBPF backend's SCTP data plane) programs the SCTP ports of a diff and nothing
// else: no table, hence no netfilter hook, while no SCTP port exists; the first creates them,
// the last removes them, and a full sync without one removes what a previous run left.
TEST(SctpPorts, TablesExistExactlyWhileSomeSctpPortDoes) {
  backends::nft::SctpPorts sctp{net()};
  ASSERT_TRUE(sctp.cleanup().ok);
  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  auto apply = [&] {
    auto r = sctp.apply(state.apply(tracker.take()));
    ASSERT_TRUE(r.ok) << r.error;
  };
  SvcSpec tcp;
  tcp.name = "web";
  tracker.upsertService(service(tcp));
  tracker.upsertSlice(slice("web-1", "web", {{"10.244.1.1"}}));
  apply();
  EXPECT_EQ(run("nft list tables").find("sliceproxy"), std::string::npos)
      << "a TCP port is not SCTP's business";
  SvcSpec sc;
  sc.name = "diameter";
  sc.clusterIPs = {"10.96.0.131"};
  sc.ports = {{"d", Protocol::SCTP, 3868, 0, {3869, ""}}};
  tracker.upsertService(service(sc));
  tracker.upsertSlice(
      slice("diameter-1", "diameter", {{"10.244.1.2"}}, {{"d", Protocol::SCTP, 3869}}));
  apply();
  EXPECT_EQ(sctp.ports(), 1u);
  const std::string rules = run("nft list ruleset ip");
  EXPECT_NE(rules.find("10.96.0.131"), std::string::npos) << rules;
  EXPECT_NE(rules.find("10.244.1.2"), std::string::npos);
  EXPECT_EQ(rules.find("10.96.0.1 "), std::string::npos) << "the TCP service stays out";
  EXPECT_EQ(rules.find("10.244.1.1 "), std::string::npos);
  const ServicePortKey key = state.state().ports.front()->key().port.protocol == Protocol::SCTP
                                 ? state.state().ports.front()->key()
                                 : state.state().ports.back()->key();
  EXPECT_FALSE(sctp.kernelObjects(key).empty());
  EXPECT_EQ(sctp.drift(), "");
  // An endpoint change of the SCTP port goes through as a diff.
  tracker.upsertSlice(
      slice("diameter-1", "diameter", {{"10.244.1.3"}}, {{"d", Protocol::SCTP, 3869}}));
  apply();
  EXPECT_NE(run("nft list ruleset ip").find("10.244.1.3"), std::string::npos);
  tracker.deleteService({sc.ns, sc.name});
  apply();
  EXPECT_EQ(sctp.ports(), 0u);
  EXPECT_EQ(run("nft list tables").find("sliceproxy"), std::string::npos)
      << "the last SCTP port took the tables with it";
  // A previous run's tables, and a full sync without SCTP ports: removed.
  {
    backends::nft::NftablesBackend other{net()};
    state.apply(tracker.take(), false);
    tracker.upsertService(service(sc));
    state.apply(tracker.take(), false);
    ASSERT_TRUE(other.fullSync(state.state()).ok);
  }
  ASSERT_NE(run("nft list tables").find("sliceproxy"), std::string::npos);
  tracker.deleteService({sc.ns, sc.name});
  state.apply(tracker.take(), false);
  auto r = sctp.fullSync(state.state());
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(run("nft list tables").find("sliceproxy"), std::string::npos);
}

// Services are spread over several tables once there are many, so adding one validates a small
// jump graph; a restart with fewer service tables removes the extra ones in the same step.
TEST_F(NftablesBackendTest, ManyServicesSpreadOverServiceTables) {
  const int many = static_cast<int>(backends::nft::kPortsPerServiceTable * 3 / 2);
  addServices(many);
  state.apply(tracker.take(), false);
  auto res = backend.fullSync(state.state());
  ASSERT_TRUE(res.ok) << res.error;
  std::string tables = run("nft list tables ip");
  EXPECT_NE(tables.find("table ip sliceproxy-svc-0\n"), std::string::npos) << tables;
  EXPECT_NE(tables.find("table ip sliceproxy-svc-1\n"), std::string::npos) << tables;
  EXPECT_EQ(tables.find("table ip sliceproxy-svc-2\n"), std::string::npos) << tables;
  // Both tables carry about half of the services.
  for (const char* t : {"sliceproxy-svc-0", "sliceproxy-svc-1"}) {
    std::string m = run(fmt::format("nft list map ip {} service-ips", t));
    size_t n = 0;
    for (size_t pos = 0; (pos = m.find("goto dnat-", pos)) != std::string::npos; ++pos) ++n;
    EXPECT_EQ(n, static_cast<size_t>(many / 2)) << t;
  }
  // An incremental change lands in the table that holds the port.
  tracker.upsertSlice(slice("s7", "svc7", {{"10.244.0.8"}, {"10.244.9.9"}}));
  ASSERT_TRUE(backend.apply(sync()).ok);
  EXPECT_NE(run("nft list ruleset ip").find("10.244.9.9 . 8080"), std::string::npos);

  for (int i = 1; i < many; ++i) tracker.deleteService({"default", fmt::format("svc{}", i)});
  state.apply(tracker.take(), false);
  backends::nft::NftablesBackend restarted(net());
  ASSERT_TRUE(restarted.fullSync(state.state()).ok);
  tables = run("nft list tables ip");
  EXPECT_NE(tables.find("table ip sliceproxy-svc-0\n"), std::string::npos) << tables;
  EXPECT_EQ(tables.find("table ip sliceproxy-svc-1\n"), std::string::npos) << tables;
  EXPECT_NE(run("nft list ruleset ip").find("10.244.0.1 . 8080"), std::string::npos);
}

// A transaction of tens of thousands of messages: one acknowledgement per message used to
// overflow the socket's receive queue (ENOBUFS) at 10,000 one-endpoint services. (Ports with
// externalTrafficPolicy Local have chains and rules of their own.)
TEST_F(NftablesBackendTest, TenThousandServicesInOneTransaction) {
  addServices(10000, true, 0, [](SvcSpec& s, int i) {
    s.externalIPs = {fmt::format("203.0.113.{}", i % 250 + 1)};
    s.ports[0].port = static_cast<uint16_t>(1000 + i);
    s.etp = TrafficPolicy::Local;
  });
  state.apply(tracker.take(), false);
  auto res = backend.fullSync(state.state());
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_GT(res.operations, 20000u);
}

// Only a batch's last message asks for an acknowledgement. A message that overflows the batch's
// page is moved to a new page, and the request must move with it: around the first page
// boundary, one of these batches ends with such a message.
TEST(NftablesTransaction, LastMessageMovedToANewPageIsAcknowledged) {
  using backends::nft::RuleBuilder;
  using backends::nft::Transaction;
  backends::nft::Socket sock;
  auto batch = [&](size_t rules) {
    Transaction tx(sock, NFPROTO_IPV4);
    tx.addTable("acktest");
    tx.deleteTable("acktest", "acktest");
    tx.addTable("acktest");
    tx.addChain("acktest", "c");
    for (size_t i = 0; i < rules; ++i) {
      RuleBuilder b;
      b.counter();
      tx.addRule("acktest", "c", b.release(), "counter");
    }
    return tx.commit();
  };
  const auto small = batch(1000), large = batch(2000);
  ASSERT_TRUE(small.ok && large.ok) << small.error << large.error;
  const size_t perRule = (large.bytes - small.bytes) / 1000;
  const size_t fixed = small.bytes - 1000 * perRule;
  const size_t atBoundary = ((1u << 20) - fixed) / perRule;
  for (size_t n = atBoundary - 3; n <= atBoundary + 3; ++n) {
    auto res = batch(n);
    EXPECT_TRUE(res.ok) << n << " rules: " << res.error;
  }
  Transaction tx(sock, NFPROTO_IPV4);
  tx.deleteTable("acktest", "acktest");
  EXPECT_TRUE(tx.commit().ok);
}

// Services added incrementally beyond what the service tables were sized for ask for a full sync,
// which spreads them over more tables.
TEST_F(NftablesBackendTest, OutgrownServiceTablesAskForAFullSync) {
  tracker.upsertService(service({}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  addServices(static_cast<int>(backends::nft::kPortsPerServiceTableLimit), /*endpoints=*/false,
              /*firstBlock=*/1);
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_TRUE(res.wantsFullSync);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  EXPECT_NE(run("nft list tables ip").find("table ip sliceproxy-svc-1\n"), std::string::npos);
}

TEST_F(NftablesBackendTest, AffinityPortsListPerEndpointChains) {
  auto s = std::make_shared<Service>(*service({}));
  s->sessionAffinity = SessionAffinity::ClientIP;
  s->affinityTimeoutSeconds = 30;
  tracker.upsertService(s);
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}, {"10.244.2.2"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string t = run("nft list ruleset ip");
  EXPECT_NE(t.find("update @aff-0-0 { ip saddr timeout 30s }"), std::string::npos) << t;
  // Removing one endpoint keeps the other's client set (its stickiness).
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.2"}}));
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  t = run("nft list ruleset ip");
  EXPECT_EQ(t.find("dnat to 10.244.2.1:8080"), std::string::npos) << t;
  EXPECT_NE(t.find("dnat to 10.244.2.2:8080"), std::string::npos) << t;
}

// One endpoint of a 2,000-endpoint affinity service replaced: the change is that endpoint's
// set, chain and check rule and the slots that moved, whatever the service's size.
TEST_F(NftablesBackendTest, AffinityEndpointChangeCostsTheChangeNotTheService) {
  auto s = std::make_shared<Service>(*service({}));
  s->sessionAffinity = SessionAffinity::ClientIP;
  s->affinityTimeoutSeconds = 30;
  tracker.upsertService(s);
  std::vector<Ep> eps;
  for (int i = 0; i < 2000; ++i) eps.push_back({fmt::format("10.244.{}.{}", i / 250, i % 250 + 1)});
  tracker.upsertSlice(slice("a", "svc", eps));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  eps[0] = {"10.244.100.1"};
  tracker.upsertSlice(slice("a", "svc", eps));
  auto res = backend.apply(sync());
  ASSERT_TRUE(res.ok) << res.error;
  EXPECT_LT(backend.lastStats().lastMessages, 30u) << "messages for one endpoint replaced";
  std::string t = run("nft list ruleset ip");
  EXPECT_EQ(t.find("dnat to 10.244.0.1:8080"), std::string::npos);
  EXPECT_NE(t.find("dnat to 10.244.100.1:8080"), std::string::npos);
  // The removed endpoint's check rule went with it (deleted by handle), the new one is there.
  size_t checks = 0;
  for (size_t pos = 0; (pos = t.find("ip saddr @aff-", pos)) != std::string::npos; ++pos) ++checks;
  EXPECT_EQ(checks, 2000u);
}

TEST_F(NftablesBackendTest, AffinityClientsSurviveFullSyncsAndRestarts) {
  auto s = std::make_shared<Service>(*service({}));
  s->sessionAffinity = SessionAffinity::ClientIP;
  s->affinityTimeoutSeconds = 600;
  tracker.upsertService(s);
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1"}, {"10.244.2.2"}}));
  state.apply(tracker.take(), false);
  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  // The set that remembers the clients of endpoint `ep`: its chain DNATs there.
  auto setOf = [](const std::string& ep) {
    std::string t = run("nft list ruleset ip");
    const size_t dnat = t.find("dnat to " + ep);
    if (dnat == std::string::npos) return std::string("no-chain-for-" + ep);
    const size_t chain = t.rfind("chain aff-", dnat);
    return t.substr(chain + 6, t.find(' ', chain + 6) - chain - 6);
  };
  auto clientsOf = [&](const std::string& ep) {
    return run("nft list set ip sliceproxy-svc-0 " + setOf(ep));
  };
  // Two clients, as the data plane's dynset would have remembered them.
  run("nft add element ip sliceproxy-svc-0 " + setOf("10.244.2.1:8080") +
      " '{ 192.168.7.1 timeout 500s }'");
  run("nft add element ip sliceproxy-svc-0 " + setOf("10.244.2.2:8080") +
      " '{ 192.168.7.2 timeout 500s }'");
  ASSERT_NE(clientsOf("10.244.2.1:8080").find("192.168.7.1"), std::string::npos);

  ASSERT_TRUE(backend.fullSync(state.state()).ok);
  std::string one = clientsOf("10.244.2.1:8080"), two = clientsOf("10.244.2.2:8080");
  EXPECT_NE(one.find("192.168.7.1 timeout"), std::string::npos) << one;
  EXPECT_EQ(one.find("192.168.7.2"), std::string::npos) << one;
  EXPECT_NE(two.find("192.168.7.2 timeout"), std::string::npos) << two;
  // The remaining time is carried, not the full timeout restarted.
  EXPECT_EQ(one.find("192.168.7.1 timeout 10m"), std::string::npos) << one;

  // A restart: a new process (a fresh backend) finds the previous run's sets.
  NodeState restarted{"node-a"};
  ChangeTracker again{"node-a", {}};
  again.upsertService(s);
  again.upsertSlice(slice("a", "svc", {{"10.244.2.2"}, {"10.244.2.3"}}));
  restarted.apply(again.take(), false);
  backends::nft::NftablesBackend next{net()};
  ASSERT_TRUE(next.fullSync(restarted.state()).ok);
  two = clientsOf("10.244.2.2:8080");
  EXPECT_NE(two.find("192.168.7.2 timeout"), std::string::npos) << two;
  // The removed endpoint's client is free to go anywhere; nobody holds it.
  EXPECT_EQ(run("nft list ruleset ip").find("192.168.7.1"), std::string::npos);
  EXPECT_EQ(run("nft list ruleset").find("Assertion"), std::string::npos);
}

// `count` endpoints 10.244.<i/250>.<i%250+1> in slices of 1,000.
void upsertEndpoints(ChangeTracker& tracker, int count) {
  for (int first = 0; first < count; first += 1000) {
    std::vector<Ep> eps;
    for (int i = first; i < std::min(count, first + 1000); ++i) {
      eps.push_back({fmt::format("10.244.{}.{}", i / 250, i % 250 + 1)});
    }
    tracker.upsertSlice(slice(fmt::format("s{}", first / 1000), "svc", eps));
  }
}

// Another program removing sliceproxy's tables (`nft flush ruleset`) is noticed by the next sync
// that finds nothing to change, and repaired at once by a full sync that says what was gone.
TEST_F(NftablesBackendTest, TablesRemovedBehindItsBackAreNoticedAndReprogrammed) {
  tracker.synced();
  Proxier proxy(tracker, backend, "node-a");
  struct Repairs : SyncListener {
    std::vector<std::string> seen;
    void onSync(const SyncReport& r) override {
      if (!r.repaired.empty()) seen.push_back(r.repaired);
    }
  } repairs;
  proxy.addListener(&repairs);
  addServices(2);
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_EQ(backend.drift(), "");
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_TRUE(repairs.seen.empty()) << "nothing changed, nothing gone";
  EXPECT_EQ(proxy.stats().fullSyncs, 1u);

  run("nft flush ruleset");
  EXPECT_NE(backend.drift().find("table ip sliceproxy removed"), std::string::npos);
  ASSERT_TRUE(proxy.syncOnce());
  ASSERT_EQ(repairs.seen.size(), 1u);
  EXPECT_NE(repairs.seen[0].find("table ip sliceproxy-svc-0 removed"), std::string::npos)
      << repairs.seen[0];
  EXPECT_NE(repairs.seen[0].find("table ip6 sliceproxy removed"), std::string::npos)
      << repairs.seen[0];
  EXPECT_EQ(proxy.stats().fullSyncs, 2u);
  EXPECT_EQ(backend.drift(), "");
  EXPECT_NE(
      run("nft list ruleset ip").find("10.96.0.2 . tcp . 80 . 0x00000000 : 10.244.0.2 . 8080"),
      std::string::npos);

  // One service table gone is enough.
  run("nft delete table ip sliceproxy-svc-0");
  ASSERT_TRUE(proxy.syncOnce());
  ASSERT_EQ(repairs.seen.size(), 2u);
  EXPECT_EQ(repairs.seen[1], "table ip sliceproxy-svc-0 removed");
}

TEST_F(NftablesBackendTest, BigEndpointMapsAreSizedAndOutgrowingOneMeansAFullSyncAtOnce) {
  tracker.synced();
  Proxier proxy(tracker, backend, "node-a");
  tracker.upsertService(service({}));
  upsertEndpoints(tracker, 3000);
  ASSERT_TRUE(proxy.syncOnce());
  std::string t = run("nft list ruleset ip");
  EXPECT_NE(t.find("size 8192"), std::string::npos) << "3,000 endpoints: a map sized for twice";

  // 9,000 endpoints do not fit: the change is not sent as is, a full sync resizes at once.
  upsertEndpoints(tracker, 9000);
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_EQ(proxy.stats().failures, 0u);
  EXPECT_EQ(proxy.stats().fullSyncs, 2u);
  t = run("nft list ruleset ip");
  EXPECT_NE(t.find("size 32768"), std::string::npos);
  EXPECT_NE(t.find("10.244.35.250 . 8080"), std::string::npos) << "the 9,000th endpoint";

  // Within the size, changes stay incremental.
  upsertEndpoints(tracker, 10000);
  ASSERT_TRUE(proxy.syncOnce());
  EXPECT_EQ(proxy.stats().fullSyncs, 2u);
  EXPECT_NE(run("nft list ruleset ip").find("10.244.39.250 . 8080"), std::string::npos);
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
  return RUN_ALL_TESTS();
}
