// The packet-path load balancer (bpf/nodeport_lb.bpf.c) on fixtures, through BPF_PROG_TEST_RUN
// against the real kernel: an input frame goes in, the verdict and the rewritten frame come out,
// and every checksum of the output is recomputed here. Backends are predicted with the same
// Maglev table and flow hash the program uses, so each case knows its expected backend.

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include "../unit/builders.h"
#include "backends/ebpf/maglev.h"
#include "backends/ebpf/nodeport_loader.h"
#include "backends/ebpf/nodeport_path.h"
#include "backends/ebpf/nodeport_writer.h"
#include "netns_topology.h"
#include "nodeport_hash.h"
#include "packet_fixture.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::testing {
namespace {

using backends::ebpf::kMaglevDefaultTableSize;
using backends::ebpf::maglevTable;
using backends::ebpf::maglevTableSizeFor;
using backends::ebpf::NodePortPrograms;
using packet::Flow;
using packet::Parsed;

constexpr int kTcOk = 0, kTcShot = 2, kTcRedirect = 7;

struct Result {
  int verdict = -1;
  std::vector<uint8_t> out;
  Parsed parsed;
};

Result run(int progFd, const std::vector<uint8_t>& in) {
  Result r;
  r.out.resize(1500);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()),
              .data_size_out = static_cast<uint32_t>(r.out.size()), .repeat = 1);
  if (bpf_prog_test_run_opts(progFd, &opts) != 0) {
    ADD_FAILURE() << "BPF_PROG_TEST_RUN: " << std::strerror(errno);
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  r.parsed = packet::parse(r.out);
  return r;
}

std::array<uint8_t, 16> bytes16(const std::string& a) {
  std::array<uint8_t, 16> b{};
  inet_pton(packet::isV6(a) ? AF_INET6 : AF_INET, a.c_str(), b.data());
  return b;
}

np_fe_key feKey(const std::string& addr, uint16_t port, uint8_t proto) {
  np_fe_key k{};
  auto b = bytes16(addr);
  std::memcpy(k.addr, b.data(), 16);
  k.port = htons(port);
  k.proto = proto;
  k.family = packet::isV6(addr) ? NP_FAMILY_V6 : NP_FAMILY_V4;
  return k;
}

std::string str(const EndpointKey& e) {
  return fmt::format("{}:{}", e.ip.str(), e.port);
}

// The flow's hash as the program computes it (np_flow_hash over addresses and ports).
uint32_t flowHash(const Flow& f) {
  auto s = bytes16(f.src), d = bytes16(f.dst);
  const uint8_t sp[2] = {static_cast<uint8_t>(f.sport >> 8), static_cast<uint8_t>(f.sport)};
  const uint8_t dp[2] = {static_cast<uint8_t>(f.dport >> 8), static_cast<uint8_t>(f.dport)};
  return np_flow_hash(s.data(), d.data(), sp, dp, f.proto);
}

// One node's view of the load balancer: writes services as the eBPF backend will (backend ids
// of its own choosing, one Maglev table per frontend).
class Node {
 public:
  explicit Node(uint32_t firstId = 1) : nextId_(firstId) {}
  NodePortPrograms& progs() { return progs_; }

  // Writes the frontend with these backends; returns the table's backend order for predict().
  void service(const np_fe_key& fe, std::vector<EndpointKey> backends, uint32_t flags,
               uint32_t tableId = 1) {
    const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, backends.size());
    auto table = maglevTable(backends, size);
    std::vector<uint32_t> ids(table.size());
    for (size_t i = 0; i < table.size(); ++i) ids[i] = idOf(backends[table[i]]);
    progs_.setMaglevTable(tableId, ids);
    progs_.setFrontend(fe, {tableId, backends.empty() ? 0 : size, flags, 0, tableId, 0});
    tables_[tableId] = {backends, table};
  }

  // The backend left every table: its id goes, as the writer deletes it.
  void forget(const EndpointKey& e) {
    auto it = ids_.find(e);
    ASSERT_NE(it, ids_.end());
    progs_.removeBackend(it->second);
    ids_.erase(it);
  }

  // The backend the Maglev table gives this flow, computed here as the program does.
  EndpointKey predict(const Flow& f, uint32_t tableId = 1) {
    auto& [backends, table] = tables_.at(tableId);
    return backends[table[flowHash(f) % table.size()]];
  }

 private:
  uint32_t idOf(const EndpointKey& e) {
    auto [it, added] = ids_.try_emplace(e, nextId_);
    if (added) {
      ++nextId_;
      np_backend b{};
      std::memcpy(b.addr, e.ip.bytes.data(), 16);
      b.port = htons(e.port);
      b.family = e.ip.isV4() ? NP_FAMILY_V4 : NP_FAMILY_V6;
      progs_.setBackend(it->second, b);
    }
    return it->second;
  }

  NodePortPrograms progs_;
  uint32_t nextId_;
  std::map<EndpointKey, uint32_t> ids_;
  std::map<uint32_t, std::pair<std::vector<EndpointKey>, std::vector<uint32_t>>> tables_;
};

EndpointKey be(const std::string& a, uint16_t port) {
  return {ip(a), port};
}

std::vector<EndpointKey> backendsV4(int n) {
  std::vector<EndpointKey> out;
  for (int i = 0; i < n; ++i)
    out.push_back(be(fmt::format("10.244.{}.{}", i / 200, i % 200 + 1), 8080));
  return out;
}

// SNAT to addr (its family) with ports 61000..portMax, as the path writes np_snat.
void snatTo(NodePortPrograms& progs, const std::string& addr, uint16_t portMax) {
  np_snat snat{};
  const auto a = bytes16(addr);
  std::memcpy(snat.addr, a.data(), 16);
  snat.port_min = 61000;
  snat.port_max = portMax;
  progs.setSnat(packet::isV6(addr) ? NP_FAMILY_V6 : NP_FAMILY_V4, snat);
}

// addr is one of the node's own addresses (np_local).
void addLocal(NodePortPrograms& progs, const std::string& addr) {
  np_local_key lk{};
  const auto a = bytes16(addr);
  std::memcpy(lk.addr, a.data(), 16);
  lk.family = packet::isV6(addr) ? NP_FAMILY_V6 : NP_FAMILY_V4;
  progs.addLocalAddress(lk);
}

constexpr const char* kNode = "192.168.0.10";
constexpr uint16_t kNodePort = 30080;

void expectChecksums(const Result& r) {
  ASSERT_TRUE(r.parsed.ok) << "output is not a parsable frame";
  EXPECT_TRUE(r.parsed.ipChecksumOk) << "IPv4 header checksum";
  EXPECT_TRUE(r.parsed.l4ChecksumOk) << "L4 checksum " << std::hex << r.parsed.l4Checksum;
}

class NodePortFixture : public ::testing::TestWithParam<uint8_t> {};

TEST_P(NodePortFixture, NewFlowIsDnatedToItsMaglevBackendWithValidChecksums) {
  const uint8_t proto = GetParam();
  Node node;
  node.service(feKey(kNode, kNodePort, proto), backendsV4(5), 0);
  std::set<std::string> seen;
  for (uint16_t sport = 40000; sport < 40040; ++sport) {
    Flow f{"203.0.113.7", kNode, sport, kNodePort, proto};
    auto r = run(node.progs().ingressFd(), packet::build(f));
    ASSERT_EQ(r.verdict, kTcOk);
    expectChecksums(r);
    const EndpointKey want = node.predict(f);
    EXPECT_EQ(r.parsed.flow.dst, want.ip.str());
    EXPECT_EQ(r.parsed.flow.dport, want.port);
    EXPECT_EQ(r.parsed.flow.src, "203.0.113.7") << "eTP Local keeps the client address";
    EXPECT_EQ(r.parsed.flow.sport, sport);
    EXPECT_EQ(r.parsed.payload, "hello");
    seen.insert(str(want));
  }
  EXPECT_GE(seen.size(), 3u) << "40 flows over 5 backends should reach most of them";
}

TEST_P(NodePortFixture, EstablishedFlowKeepsItsBackendWhenTheTableChanges) {
  const uint8_t proto = GetParam();
  Node node;
  auto backends = backendsV4(4);
  node.service(feKey(kNode, kNodePort, proto), backends, 0);
  Flow f{"203.0.113.7", kNode, 41000, kNodePort, proto};
  auto first = run(node.progs().ingressFd(), packet::build(f));
  ASSERT_EQ(first.verdict, kTcOk);
  const std::string chosen = first.parsed.flow.dst;
  // Every other backend replaces the whole set: a new flow cannot reach `chosen` any more.
  std::vector<EndpointKey> others;
  for (auto& b : backendsV4(12)) {
    if (b.ip.str() != chosen) others.push_back(b);
  }
  node.service(feKey(kNode, kNodePort, proto), others, 0);
  packet::Tcp ack{1001, 5000, 0x10};
  auto again = run(node.progs().ingressFd(), packet::build(f, "more", ack));
  ASSERT_EQ(again.verdict, kTcOk);
  expectChecksums(again);
  EXPECT_EQ(again.parsed.flow.dst, chosen) << "the connection-tracking entry keeps the backend";
  Flow g = f;
  g.sport = 41001;
  auto fresh = run(node.progs().ingressFd(), packet::build(g));
  EXPECT_EQ(fresh.parsed.flow.dst, node.predict(g).ip.str());
  EXPECT_NE(fresh.parsed.flow.dst, chosen);
}

// Its backend gone from the service: a UDP flow moves to a live backend (kube-proxy's conntrack
// cleanup), a TCP connection stays where it is (graceful termination).
TEST_P(NodePortFixture, FlowWhoseBackendLeftMovesForUdpAndStaysForTcp) {
  const uint8_t proto = GetParam();
  Node node;
  node.service(feKey(kNode, kNodePort, proto), backendsV4(4), 0);
  Flow f{"203.0.113.7", kNode, 41500, kNodePort, proto};
  auto first = run(node.progs().ingressFd(), packet::build(f));
  ASSERT_EQ(first.verdict, kTcOk);
  std::vector<EndpointKey> rest;
  for (auto& b : backendsV4(4)) {
    if (b.ip.str() != first.parsed.flow.dst) rest.push_back(b);
  }
  node.service(feKey(kNode, kNodePort, proto), rest, 0);
  node.forget(be(first.parsed.flow.dst, 8080));
  auto again = run(node.progs().ingressFd(), packet::build(f, "more", {1001, 5000, 0x10}));
  ASSERT_EQ(again.verdict, kTcOk);
  expectChecksums(again);
  if (proto == IPPROTO_TCP) {
    EXPECT_EQ(again.parsed.flow.dst, first.parsed.flow.dst);
  } else {
    EXPECT_EQ(again.parsed.flow.dst, node.predict(f).ip.str());
    EXPECT_NE(again.parsed.flow.dst, first.parsed.flow.dst);
  }
}

TEST_P(NodePortFixture, ClusterPolicySnatsToTheNodeAndTheReplyIsTranslatedBack) {
  const uint8_t proto = GetParam();
  Node node;
  snatTo(node.progs(), kNode, 61099);
  node.service(feKey(kNode, kNodePort, proto), backendsV4(3), NP_F_SNAT);
  Flow f{"203.0.113.7", kNode, 42000, kNodePort, proto};
  auto fwd = run(node.progs().ingressFd(), packet::build(f, "ping"));
  ASSERT_EQ(fwd.verdict, kTcOk);
  expectChecksums(fwd);
  const EndpointKey want = node.predict(f);
  EXPECT_EQ(fwd.parsed.flow.dst, want.ip.str());
  EXPECT_EQ(fwd.parsed.flow.dport, want.port);
  EXPECT_EQ(fwd.parsed.flow.src, kNode) << "eTP Cluster: SNAT to the node address";
  EXPECT_GE(fwd.parsed.flow.sport, 61000);
  EXPECT_LE(fwd.parsed.flow.sport, 61099);

  // The backend answers the node; the reply leaves as the frontend answering the client.
  Flow reply{want.ip.str(), kNode, want.port, fwd.parsed.flow.sport, proto};
  auto back = run(node.progs().ingressFd(), packet::build(reply, "pong", {7000, 1001, 0x12}));
  ASSERT_EQ(back.verdict, kTcOk);
  expectChecksums(back);
  EXPECT_EQ(back.parsed.flow.src, kNode);
  EXPECT_EQ(back.parsed.flow.sport, kNodePort);
  EXPECT_EQ(back.parsed.flow.dst, "203.0.113.7");
  EXPECT_EQ(back.parsed.flow.dport, 42000);
  EXPECT_EQ(back.parsed.payload, "pong");

  // A second client on the same source port gets another SNAT port (no collision).
  Flow other{"203.0.113.8", kNode, 42000, kNodePort, proto};
  auto fwd2 = run(node.progs().ingressFd(), packet::build(other, "ping"));
  if (fwd2.parsed.flow.dst == fwd.parsed.flow.dst) {
    EXPECT_NE(fwd2.parsed.flow.sport, fwd.parsed.flow.sport);
  }
  // The same client again: the same SNAT port (the flow is tracked).
  auto fwd3 = run(node.progs().ingressFd(), packet::build(f, "ping", {1001, 7001, 0x10}));
  EXPECT_EQ(fwd3.parsed.flow.sport, fwd.parsed.flow.sport);
}

// A ClusterIP reached in the packet path (the socket programs leave a pod's flows to its own
// service there): a pod of this node keeps its address, unless the flow lands on the pod itself,
// which is SNATed (kube-proxy's hairpin) and whose reply goes back to it from the ClusterIP;
// any other client is SNATed.
TEST_P(NodePortFixture, PodKeepsItsSourceUnlessItLandsOnItself) {
  const uint8_t proto = GetParam();
  Node node;
  snatTo(node.progs(), kNode, 61999);
  const std::string vip = "10.96.0.1", pod = "10.244.0.1";
  auto backends = backendsV4(3);  // 10.244.0.1, .2, .3
  node.service(feKey(vip, 80, proto), backends, NP_F_SNAT | NP_F_POD_KEEPS_SOURCE);
  node.progs().addSourceRange(
      NP_RANGES_LOCAL_PODS,
      backends::ebpf::rangeKey(NP_RANGES_LOCAL_PODS, *proxier::Cidr::parse(pod + "/32")));
  int itself = 0, others = 0;
  for (uint16_t sport = 45000; sport < 45060; ++sport) {
    Flow f{pod, vip, sport, 80, proto};
    auto fwd = run(node.progs().ingressFd(), packet::build(f, "ping"));
    ASSERT_EQ(fwd.verdict, kTcOk);
    expectChecksums(fwd);
    const EndpointKey want = node.predict(f);
    ASSERT_EQ(fwd.parsed.flow.dst, want.ip.str());
    if (want.ip.str() != pod) {
      ++others;
      EXPECT_EQ(fwd.parsed.flow.src, pod) << "a pod of this node keeps its address";
      EXPECT_EQ(fwd.parsed.flow.sport, sport);
      continue;
    }
    ++itself;
    EXPECT_EQ(fwd.parsed.flow.src, kNode) << "hairpin: the pod must see another source";
    EXPECT_GE(fwd.parsed.flow.sport, 61000);
    Flow reply{pod, kNode, want.port, fwd.parsed.flow.sport, proto};
    auto back = run(node.progs().ingressFd(), packet::build(reply, "pong", {7000, 1001, 0x12}));
    ASSERT_EQ(back.verdict, kTcOk);
    expectChecksums(back);
    EXPECT_EQ(back.parsed.flow.src, vip);
    EXPECT_EQ(back.parsed.flow.sport, 80);
    EXPECT_EQ(back.parsed.flow.dst, pod);
    EXPECT_EQ(back.parsed.flow.dport, sport);
  }
  EXPECT_GT(itself, 0) << "60 flows over 3 backends land on the pod itself now and then";
  EXPECT_GT(others, 0);
  // A client that is no pod of this node is SNATed, the flag notwithstanding.
  for (const std::string client : {"203.0.113.7", "10.244.0.2"}) {
    Flow f{client, vip, 45100, 80, proto};
    auto fwd = run(node.progs().ingressFd(), packet::build(f, "ping"));
    ASSERT_EQ(fwd.verdict, kTcOk);
    EXPECT_EQ(fwd.parsed.flow.src, kNode) << client;
  }
}

// np_live: a live id holds its slot (id % NP_LIVE_SLOTS) until it is removed, and the writer's
// next id skips a held slot, so two live ids never share one (a UDP flow would otherwise see
// its backend dead, or a dead one live).
TEST(NodePortLive, LiveIdsNeverShareASlot) {
  NodePortPrograms progs;
  np_backend b{};
  b.family = NP_FAMILY_V4;
  progs.setBackend(5, b);
  EXPECT_EQ(progs.freeBackendId(5), 6u);
  EXPECT_EQ(progs.freeBackendId(5 + NP_LIVE_SLOTS), 6u + NP_LIVE_SLOTS)
      << "the id one lap later would share slot 5";
  EXPECT_EQ(progs.freeBackendId(0), 1u) << "0 is no id";
  progs.removeBackend(5);
  EXPECT_EQ(progs.freeBackendId(5 + NP_LIVE_SLOTS), 5u + NP_LIVE_SLOTS);
}

TEST_P(NodePortFixture, LocalBackendReplyGetsTheFrontendBackAtEgress) {
  const uint8_t proto = GetParam();
  Node node;
  node.service(feKey(kNode, kNodePort, proto), backendsV4(2), 0);
  Flow f{"203.0.113.9", kNode, 43000, kNodePort, proto};
  auto fwd = run(node.progs().ingressFd(), packet::build(f));
  ASSERT_EQ(fwd.verdict, kTcOk);
  Flow reply{fwd.parsed.flow.dst, "203.0.113.9", fwd.parsed.flow.dport, 43000, proto};
  auto back = run(node.progs().egressFd(), packet::build(reply, "pong", {9000, 1001, 0x12}));
  ASSERT_EQ(back.verdict, kTcOk);
  expectChecksums(back);
  EXPECT_EQ(back.parsed.flow.src, kNode);
  EXPECT_EQ(back.parsed.flow.sport, kNodePort);
  EXPECT_EQ(back.parsed.flow.dst, "203.0.113.9");
  EXPECT_EQ(back.parsed.flow.dport, 43000);
}

TEST_P(NodePortFixture, DropFlagDropsAndNoEndpointsWithoutRejectDrops) {
  const uint8_t proto = GetParam();
  Node node;
  node.service(feKey(kNode, kNodePort, proto), backendsV4(2), NP_F_DROP);
  node.service(feKey(kNode, kNodePort + 1, proto), {}, 0, 2);
  Flow f{"203.0.113.7", kNode, 44000, kNodePort, proto};
  EXPECT_EQ(run(node.progs().ingressFd(), packet::build(f)).verdict, kTcShot);
  f.dport = kNodePort + 1;
  EXPECT_EQ(run(node.progs().ingressFd(), packet::build(f)).verdict, kTcShot);
}

TEST_P(NodePortFixture, PacketsForNoFrontendPassUntouched) {
  const uint8_t proto = GetParam();
  Node node;
  node.service(feKey(kNode, kNodePort, proto), backendsV4(2), NP_F_SNAT);
  for (Flow f : {Flow{"203.0.113.7", kNode, 45000, 22, proto},
                 Flow{"203.0.113.7", "192.168.0.11", 45000, kNodePort, proto},
                 Flow{"203.0.113.7", kNode, 45000, kNodePort,
                      static_cast<uint8_t>(proto == IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP)}}) {
    auto in = packet::build(f);
    auto r = run(node.progs().ingressFd(), in);
    EXPECT_EQ(r.verdict, kTcOk);
    EXPECT_EQ(r.out, in);
  }
}

// Two frontends on one port: removing one keeps the other translated (the port's bit is
// counted, not cleared by the first removal); removing both leaves the port's packets alone.
TEST_P(NodePortFixture, AFrontendPortStaysWhileAnyFrontendHasIt) {
  const uint8_t proto = GetParam();
  Node node;
  const np_fe_key first = feKey(kNode, kNodePort, proto),
                  second = feKey("192.168.0.11", kNodePort, proto);
  node.service(first, backendsV4(2), 0);
  node.service(second, backendsV4(2), 0, 3);
  // A new flow each time: an established one keeps its translation (as conntrack keeps a
  // deleted service's established TCP connections).
  uint16_t sport = 45000;
  auto translated = [&](const char* dst) {
    auto r = run(node.progs().ingressFd(),
                 packet::build({"203.0.113.7", dst, sport++, kNodePort, proto}));
    return r.parsed.flow.dst != dst;
  };
  EXPECT_TRUE(translated(kNode));
  EXPECT_TRUE(translated("192.168.0.11"));
  node.progs().removeFrontend(first);
  EXPECT_FALSE(translated(kNode));
  EXPECT_TRUE(translated("192.168.0.11")) << "the port's bit went with the first frontend";
  node.progs().removeFrontend(second);
  EXPECT_FALSE(translated("192.168.0.11"));
  const uint32_t word = kNodePort >> 5;
  uint32_t bits = ~0u;
  ASSERT_EQ(bpf_map_lookup_elem(node.progs().frontendPortsFd(), &word, &bits), 0);
  EXPECT_EQ(bits & (1u << (kNodePort & 31)), 0u) << "the port's bit outlived its frontends";
}

TEST_P(NodePortFixture, Ipv6NewFlowIsDnatedWithValidChecksum) {
  const uint8_t proto = GetParam();
  Node node;
  std::vector<EndpointKey> backends{be("fd00:244::1", 8080), be("fd00:244::2", 8080),
                                    be("fd00:244::3", 8080)};
  node.service(feKey("2001:db8::10", kNodePort, proto), backends, 0);
  for (uint16_t sport = 46000; sport < 46010; ++sport) {
    Flow f{"2001:db8:1::7", "2001:db8::10", sport, kNodePort, proto};
    auto r = run(node.progs().ingressFd(), packet::build(f));
    ASSERT_EQ(r.verdict, kTcOk);
    expectChecksums(r);
    EXPECT_EQ(r.parsed.flow.dst, node.predict(f).ip.str());
    EXPECT_EQ(r.parsed.flow.dport, 8080);
  }
}

INSTANTIATE_TEST_SUITE_P(Proto, NodePortFixture,
                         ::testing::Values(uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}),
                         [](const auto& info) {
                           return info.param == IPPROTO_TCP ? "TCP" : "UDP";
                         });

// Direct server return (NP_F_DSR with NP_F_SNAT, eTP Cluster with --enable-dsr): the node that
// takes the flow in DNATs it without SNAT and puts the frontend in an IP option (a TCP SYN, every
// UDP datagram); the backend's node records it, takes the option out, and turns the backend's
// reply into the frontend's answer to the client there.
class NodePortDsr : public ::testing::TestWithParam<std::tuple<uint8_t, bool>> {};

// The option as the ingress node writes it: IPv4 type 0x9e, length 8, port, address; IPv6 a
// Destination Options header of 24 bytes: option 0x1e, length 18, port, address, PadN.
std::vector<uint8_t> dsrOption(const std::string& frontend, uint16_t port, uint8_t next) {
  const auto a = bytes16(frontend);
  if (!packet::isV6(frontend)) {
    return {0x9e, 8,   static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port), a[0], a[1],
            a[2], a[3]};
  }
  std::vector<uint8_t> h{
      next, 2, 0x1e, 18, static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port)};
  h.insert(h.end(), a.begin(), a.end());
  h.insert(h.end(), {1, 0});
  return h;
}

TEST_P(NodePortDsr, TheFrontendTravelsInAnOptionAndTheBackendsNodeAnswersForIt) {
  const auto [proto, v6] = GetParam();
  const std::string fe = v6 ? "2001:db8::10" : kNode, client = v6 ? "2001:db8:1::7" : "203.0.113.7";
  std::vector<EndpointKey> backends;
  for (int i = 1; i <= 3; ++i)
    backends.push_back(be((v6 ? "fd00:244:1::" : "10.244.1.") + std::to_string(i), 8080));
  Node ingress;
  snatTo(ingress.progs(), fe, 61099);
  addLocal(ingress.progs(), fe);
  ingress.service(feKey(fe, kNodePort, proto), backends, NP_F_SNAT | NP_F_DSR);
  Node backendNode(100);  // another node: maps of its own, no frontend at all

  for (uint16_t sport = 44000; sport < 44006; ++sport) {
    const Flow f{client, fe, sport, kNodePort, proto};
    const EndpointKey want = ingress.predict(f);
    auto in = run(ingress.progs().ingressFd(), packet::build(f, "ping"));
    ASSERT_EQ(in.verdict, kTcOk);
    expectChecksums(in);
    EXPECT_EQ(in.parsed.flow.src, client) << "DSR keeps the client's address (no SNAT)";
    EXPECT_EQ(in.parsed.flow.sport, sport);
    EXPECT_EQ(in.parsed.flow.dst, want.ip.str());
    EXPECT_EQ(in.parsed.flow.dport, want.port);
    EXPECT_EQ(in.parsed.ipOptions, dsrOption(fe, kNodePort, proto))
        << "the frontend, in the option";
    EXPECT_EQ(in.parsed.payload, "ping");

    // The rest of a TCP connection travels without it (a full-size segment has no room).
    if (proto == IPPROTO_TCP) {
      auto ack = run(ingress.progs().ingressFd(), packet::build(f, "more", {1001, 5000, 0x10}));
      ASSERT_EQ(ack.verdict, kTcOk);
      expectChecksums(ack);
      EXPECT_EQ(ack.parsed.flow.dst, want.ip.str());
      EXPECT_TRUE(ack.parsed.ipOptions.empty()) << "an ACK carries no option";
    }

    // The backend's node: the option goes, the packet is otherwise as it came.
    auto at = run(backendNode.progs().ingressFd(), in.out);
    ASSERT_EQ(at.verdict, kTcOk);
    expectChecksums(at);
    EXPECT_TRUE(at.parsed.ipOptions.empty()) << "the option is taken out before the backend";
    EXPECT_EQ(at.parsed.flow.src, client);
    EXPECT_EQ(at.parsed.flow.dst, want.ip.str());
    EXPECT_EQ(at.parsed.flow.proto, proto);
    EXPECT_EQ(at.parsed.payload, "ping");
    EXPECT_EQ(at.out.size(), in.out.size() - (v6 ? 24 : 8));

    // The backend's reply enters its node (its pod interface) and leaves as the frontend's.
    const Flow reply{want.ip.str(), client, want.port, sport, proto};
    auto back =
        run(backendNode.progs().ingressFd(), packet::build(reply, "pong", {7000, 1001, 0x12}));
    ASSERT_EQ(back.verdict, kTcOk);
    expectChecksums(back);
    EXPECT_EQ(back.parsed.flow.src, fe) << "the reply leaves the backend's node as the frontend";
    EXPECT_EQ(back.parsed.flow.sport, kNodePort);
    EXPECT_EQ(back.parsed.flow.dst, client);
    EXPECT_EQ(back.parsed.flow.dport, sport);
    EXPECT_EQ(back.parsed.payload, "pong");
  }

  // A pod of this node (a client in NP_RANGES_LOCAL_PODS) is SNATed as before: the backend's node
  // would answer it with this node's address as source, martian when it arrives back here.
  const std::string podNet = v6 ? "fd00:244:7::/64" : "10.244.7.0/24",
                    pod = v6 ? "fd00:244:7::9" : "10.244.7.9";
  ingress.progs().addSourceRange(
      NP_RANGES_LOCAL_PODS,
      backends::ebpf::rangeKey(NP_RANGES_LOCAL_PODS, *proxier::Cidr::parse(podNet)));
  auto fromPod =
      run(ingress.progs().ingressFd(), packet::build({pod, fe, 44200, kNodePort, proto}));
  ASSERT_EQ(fromPod.verdict, kTcOk);
  expectChecksums(fromPod);
  EXPECT_EQ(fromPod.parsed.flow.src, fe) << "this node's pod: SNATed";
  EXPECT_GE(fromPod.parsed.flow.sport, 61000);
  EXPECT_TRUE(fromPod.parsed.ipOptions.empty());

  // The node's own flow to the frontend (np_egress) is still SNATed: a reply to its own address
  // coming from another node with its own address as source would be martian.
  const Flow own{fe, fe, 44100, kNodePort, proto};
  auto out = run(ingress.progs().egressFd(), packet::build(own, "self"));
  ASSERT_EQ(out.verdict, kTcOk);
  EXPECT_EQ(out.parsed.flow.src, fe);
  EXPECT_GE(out.parsed.flow.sport, 61000) << "SNAT port";
  EXPECT_TRUE(out.parsed.ipOptions.empty());
}

// A packet that carries something else after its IP header is none of the backend's node's
// business: an IPv4 option of another type passes untouched and records nothing.
TEST(NodePortDsrForeign, AnotherIpOptionPassesUntouched) {
  Node node;
  Flow f{"203.0.113.7", "10.244.1.1", 45000, 8080, IPPROTO_UDP};
  auto frame = packet::build(f, "ping");
  // Insert a record-route-sized no-op option block (4 x NOP... then EOL) as ihl 7.
  const uint8_t opt[8] = {1, 1, 1, 1, 1, 1, 1, 0};
  frame.insert(frame.begin() + 34, opt, opt + 8);
  frame[14] = 0x47;
  packet::put16(&frame[16], static_cast<uint16_t>(packet::get16(&frame[16]) + 8));
  frame[24] = frame[25] = 0;
  packet::put16(&frame[24], packet::fold(packet::sum16(&frame[14], 28)));
  auto r = run(node.progs().ingressFd(), frame);
  ASSERT_EQ(r.verdict, kTcOk);
  EXPECT_EQ(r.out, frame) << "untouched";
  const Flow reply{"10.244.1.1", "203.0.113.7", 8080, 45000, IPPROTO_UDP};
  auto back = run(node.progs().ingressFd(), packet::build(reply, "pong"));
  EXPECT_EQ(back.parsed.flow.src, "10.244.1.1") << "no reverse entry was recorded";
}

INSTANTIATE_TEST_SUITE_P(ProtoFamily, NodePortDsr,
                         ::testing::Combine(::testing::Values(uint8_t{IPPROTO_TCP},
                                                              uint8_t{IPPROTO_UDP}),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return fmt::format(
                               "{}{}", std::get<0>(info.param) == IPPROTO_TCP ? "TCP" : "UDP",
                               std::get<1>(info.param) ? "v6" : "v4");
                         });

// The node's own packets at egress (np_egress): to an eTP Cluster frontend (the socket programs
// leave those to the packet path) they are translated and SNATed, or rejected back in when the
// service has no endpoints; a packet from another source, or to a frontend without SNAT (eTP
// Local: rewritten at the socket), leaves untouched.
TEST(NodePortEgress, TheNodesOwnPacketToAClusterPolicyFrontendIsTranslatedAtEgress) {
  Node node;
  snatTo(node.progs(), kNode, 65535);
  addLocal(node.progs(), kNode);
  const char* vip = "203.0.113.50";
  node.service(feKey(vip, 80, IPPROTO_TCP), backendsV4(3), NP_F_SNAT, 1);
  node.service(feKey(vip, 81, IPPROTO_TCP), backendsV4(3), 0, 2);
  node.service(feKey(vip, 82, IPPROTO_TCP), {}, NP_F_REJECT, 3);
  Flow f{kNode, vip, 40000, 80, IPPROTO_TCP};
  auto r = run(node.progs().egressFd(), packet::build(f));
  ASSERT_NE(r.verdict, kTcShot);
  expectChecksums(r);
  EXPECT_EQ(r.parsed.flow.dst, node.predict(f).ip.str());
  EXPECT_EQ(r.parsed.flow.dport, 8080);
  EXPECT_EQ(r.parsed.flow.src, kNode);
  EXPECT_GE(r.parsed.flow.sport, 61000) << "SNATed to a port of the SNAT range";
  auto other = packet::build({"203.0.113.7", vip, 40001, 80, IPPROTO_TCP});
  auto o = run(node.progs().egressFd(), other);
  EXPECT_EQ(o.verdict, kTcOk);
  EXPECT_EQ(o.out, other) << "not the node's own: forwarded traffic, untouched";
  auto local = packet::build({kNode, vip, 40002, 81, IPPROTO_TCP});
  auto l = run(node.progs().egressFd(), local);
  EXPECT_EQ(l.verdict, kTcOk);
  EXPECT_EQ(l.out, local) << "no SNAT flag: the socket's business";
  auto rej = run(node.progs().egressFd(), packet::build({kNode, vip, 40003, 82, IPPROTO_TCP}));
  ASSERT_EQ(rej.verdict, kTcRedirect);
  expectChecksums(rej);
  EXPECT_EQ(rej.parsed.tcpFlags, 0x14) << "RST|ACK back to the node's socket";
  EXPECT_EQ(rej.parsed.flow.src, vip);
  EXPECT_EQ(rej.parsed.flow.dst, kNode);
}

TEST(NodePortReject, TcpWithoutEndpointsGetsARstBackOutOfItsInterface) {
  Node node;
  node.service(feKey(kNode, kNodePort, IPPROTO_TCP), {}, NP_F_REJECT);
  Flow f{"203.0.113.7", kNode, 47000, kNodePort, IPPROTO_TCP};
  auto r = run(node.progs().ingressFd(), packet::build(f, "", {123456, 0, 0x02}));
  ASSERT_EQ(r.verdict, kTcRedirect);
  expectChecksums(r);
  EXPECT_EQ(r.out.size(), 54u);
  EXPECT_EQ(r.parsed.flow.src, kNode);
  EXPECT_EQ(r.parsed.flow.sport, kNodePort);
  EXPECT_EQ(r.parsed.flow.dst, "203.0.113.7");
  EXPECT_EQ(r.parsed.flow.dport, 47000);
  EXPECT_EQ(r.parsed.tcpFlags, 0x14) << "RST|ACK";
  EXPECT_EQ(r.parsed.ack, 123457u) << "acknowledges the SYN";
  // An ACKed segment: the RST carries its ack number as sequence, no ACK flag.
  auto r2 = run(node.progs().ingressFd(), packet::build(f, "data", {200, 999, 0x18}));
  ASSERT_EQ(r2.verdict, kTcRedirect);
  expectChecksums(r2);
  EXPECT_EQ(r2.parsed.tcpFlags, 0x04);
  EXPECT_EQ(r2.parsed.seq, 999u);
  // Never a RST for a RST.
  EXPECT_EQ(run(node.progs().ingressFd(), packet::build(f, "", {1, 0, 0x04})).verdict, kTcShot);
}

TEST(NodePortReject, UdpWithoutEndpointsGetsAnIcmpPortUnreachable) {
  Node node;
  node.service(feKey(kNode, kNodePort, IPPROTO_UDP), {}, NP_F_REJECT);
  Flow f{"203.0.113.7", kNode, 47001, kNodePort, IPPROTO_UDP};
  auto in = packet::build(f, "question");
  auto r = run(node.progs().ingressFd(), in);
  ASSERT_EQ(r.verdict, kTcRedirect);
  expectChecksums(r);
  EXPECT_EQ(r.parsed.flow.proto, IPPROTO_ICMP);
  EXPECT_EQ(r.parsed.flow.src, kNode);
  EXPECT_EQ(r.parsed.flow.dst, "203.0.113.7");
  EXPECT_EQ(r.parsed.icmpType, 3);
  EXPECT_EQ(r.parsed.icmpCode, 3);
  // The quote: the original IP header and the first 8 bytes (the UDP header) unchanged.
  ASSERT_EQ(r.parsed.icmpQuote.size(), 28u);
  EXPECT_TRUE(std::equal(r.parsed.icmpQuote.begin(), r.parsed.icmpQuote.end(), in.begin() + 14));
}

TEST(NodePortReject, Ipv6TcpGetsARstAndUdpAnIcmpv6PortUnreachable) {
  Node node;
  node.service(feKey("2001:db8::10", kNodePort, IPPROTO_TCP), {}, NP_F_REJECT, 1);
  node.service(feKey("2001:db8::10", kNodePort, IPPROTO_UDP), {}, NP_F_REJECT, 2);
  Flow f{"2001:db8:1::7", "2001:db8::10", 47002, kNodePort, IPPROTO_TCP};
  auto r = run(node.progs().ingressFd(), packet::build(f, "", {5000, 0, 0x02}));
  ASSERT_EQ(r.verdict, kTcRedirect);
  expectChecksums(r);
  EXPECT_EQ(r.parsed.flow.src, "2001:db8::10");
  EXPECT_EQ(r.parsed.flow.dst, "2001:db8:1::7");
  EXPECT_EQ(r.parsed.flow.sport, kNodePort);
  EXPECT_EQ(r.parsed.flow.dport, 47002);
  EXPECT_EQ(r.parsed.tcpFlags, 0x14);
  EXPECT_EQ(r.parsed.ack, 5001u);
  f.proto = IPPROTO_UDP;
  auto in = packet::build(f, "question");
  auto u = run(node.progs().ingressFd(), in);
  ASSERT_EQ(u.verdict, kTcRedirect);
  expectChecksums(u);
  EXPECT_EQ(u.parsed.flow.proto, IPPROTO_ICMPV6);
  EXPECT_EQ(u.parsed.flow.src, "2001:db8::10");
  EXPECT_EQ(u.parsed.flow.dst, "2001:db8:1::7");
  EXPECT_EQ(u.parsed.icmpType, 1);
  EXPECT_EQ(u.parsed.icmpCode, 4);
  ASSERT_EQ(u.parsed.icmpQuote.size(), 48u);
  EXPECT_TRUE(std::equal(u.parsed.icmpQuote.begin(), u.parsed.icmpQuote.end(), in.begin() + 14));
}

// What the writer tests drive: a synced tracker, node-a's state, the programs and a writer
// answering on kNode.
struct WriterRig {
  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  NodePortPrograms progs;
  backends::ebpf::NodePortWriter writer{progs, {ip(kNode)}, kMaglevDefaultTableSize};
  WriterRig() { tracker.synced(); }
};

// loadBalancerSourceRanges through the writer: the LB address admits clients in the ranges
// only; the NodePort of the same service is not guarded (as kube-proxy).
TEST(NodePortSourceRanges, LoadBalancerAddressAdmitsClientsInItsRangesOnly) {
  WriterRig rig;
  auto& [tracker, state, progs, writer] = rig;
  auto apply = [&](std::vector<Cidr> ranges) {
    SvcSpec s;
    s.type = ServiceType::LoadBalancer;
    s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
    s.etp = TrafficPolicy::Local;
    s.lbIPs = {"198.18.0.6"};
    auto svc = std::const_pointer_cast<Service>(service(s));
    svc->loadBalancerSourceRanges = std::move(ranges);
    tracker.upsertService(svc);
    tracker.upsertSlice(slice("svc-1", "svc", {{"10.244.1.1", "node-a"}}));
    for (const auto& u : state.apply(tracker.take()).upserts) ASSERT_EQ(writer.sync(*u.view), "");
  };
  auto verdict = [&](const std::string& client, const std::string& dst, uint16_t dport) {
    Flow f{client, dst, 40000, dport, IPPROTO_TCP};
    auto r = run(progs.ingressFd(), packet::build(f));
    return r.verdict == kTcOk && r.parsed.flow.dst == "10.244.1.1" ? "dnat"
           : r.verdict == kTcShot                                  ? "drop"
                                                                   : "other";
  };
  apply({*Cidr::parse("203.0.113.0/24"), *Cidr::parse("198.51.100.7/32")});
  EXPECT_STREQ(verdict("203.0.113.7", "198.18.0.6", 80), "dnat");
  EXPECT_STREQ(verdict("198.51.100.7", "198.18.0.6", 80), "dnat");
  EXPECT_STREQ(verdict("198.51.100.8", "198.18.0.6", 80), "drop");
  EXPECT_STREQ(verdict("198.51.100.8", kNode, kNodePort), "dnat") << "NodePort: not guarded";
  apply({*Cidr::parse("198.51.100.0/24")});
  EXPECT_STREQ(verdict("198.51.100.9", "198.18.0.6", 80), "dnat");
  EXPECT_STREQ(verdict("203.0.113.8", "198.18.0.6", 80), "drop") << "the old range is gone";
  apply({});
  EXPECT_STREQ(verdict("192.168.7.7", "198.18.0.6", 80), "dnat") << "no ranges: everyone";
}

// New flows to dst:dport go where a node computing the table from scratch for `set` sends them.
// Every call sends new flows (source ports not used before): an established flow would keep
// its backend.
void expectFlowsFollow(NodePortPrograms& progs, std::vector<EndpointKey> set,
                       const std::string& dst, uint16_t dport, const std::string& what) {
  static uint16_t nextPort = 20000;
  const uint32_t size = maglevTableSizeFor(kMaglevDefaultTableSize, set.size());
  const auto table = maglevTable(set, size);
  for (int k = 0; k < 8; ++k) {
    Flow f{"203.0.113.7", dst, nextPort++, dport, IPPROTO_TCP};
    auto r = run(progs.ingressFd(), packet::build(f));
    ASSERT_EQ(r.verdict, kTcOk);
    const EndpointKey& want = set[table[flowHash(f) % table.size()]];
    EXPECT_EQ(r.parsed.flow.dst, want.ip.str()) << what << ", flow " << k;
  }
}

// One endpoint leaving an n-endpoint service and coming back, as the writer applies it (the
// Maglev table kept up to date and its changed entries written; the runner-ups found again
// at commit, after the change is in the kernel), and the packets that follow still reach
// live backends. Prints the writer's time per change and commit's.
void oneEndpointChange(int n) {
  WriterRig rig;
  auto& [tracker, state, progs, writer] = rig;
  SvcSpec s;
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  std::vector<Ep> eps;
  for (int i = 0; i < n; ++i) {
    eps.push_back({fmt::format("10.{}.{}.{}", 64 + i / 62500, i / 250 % 250, i % 250 + 1)});
  }
  std::vector<double> us, commitUs;
  for (int round = 0; round < 21; ++round) {
    std::vector<Ep> now = eps;
    if (round % 2) now.erase(now.begin() + round * (n / 21));  // one leaves, then comes back
    tracker.upsertSlice(slice("svc-1", "svc", now));
    Diff d = state.apply(tracker.take());
    ASSERT_EQ(d.upserts.size(), 1u);
    writer.begin();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(writer.sync(*d.upserts[0].view, d.upserts[0]), "");  // as NodePortPath calls it
    const auto t1 = std::chrono::steady_clock::now();
    ASSERT_EQ(writer.commit(), "");
    if (round > 0) {
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      commitUs.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count());
    }
    // New flows go where a node computing the table from scratch for this set sends them
    // (every round; above 20,000 endpoints every tenth, a fresh table taking seconds there).
    if (n > 20000 && round % 10 != 0) continue;
    std::vector<EndpointKey> set;
    for (const Ep& e : now) set.push_back({ip(e.addr), 8080});
    // The NodePort and the ClusterIP from outside: one table computed, two written.
    EXPECT_TRUE(writer.sharesTable(d.upserts[0].view->key()));
    const std::string what = fmt::format("{} endpoints, round {}", n, round);
    expectFlowsFollow(progs, set, kNode, kNodePort, what + ", NodePort");
    expectFlowsFollow(progs, set, "10.96.0.1", 80, what + ", ClusterIP from outside");
  }
  std::sort(us.begin(), us.end());
  std::sort(commitUs.begin(), commitUs.end());
  std::printf(
      "[ measured ] one endpoint change at %d endpoints (M=%u): writer p50 %.0f us, max %.0f "
      "us; commit (runner-ups) p50 %.0f us\n",
      n, backends::ebpf::maglevTableSizeFor(kMaglevDefaultTableSize, n), us[us.size() / 2],
      us.back(), commitUs[commitUs.size() / 2]);
}

TEST(NodePortWriterCost, OneEndpointChangeAtHundredEndpoints) {
  oneEndpointChange(100);
}

// A table of 131,059 entries: kept up to date entry by entry rather than refilled, and the
// table the program reads (one change behind, then switched to) agrees with it.
// SLICEPROXY_WRITER_COST_ENDPOINTS=N runs it at N endpoints instead (bench/RESULTS.md: 100,000).
TEST(NodePortWriterCost, OneEndpointChangeAtThousandEndpoints) {
  const char* n = std::getenv("SLICEPROXY_WRITER_COST_ENDPOINTS");
  oneEndpointChange(n ? std::atoi(n) : 1000);
}

// The two groups of a NodePort share one computed table while their sets agree and part when a
// traffic policy makes them differ: each group's packets follow its own set throughout.
TEST(NodePortWriterShare, GroupsPartWhenPoliciesDifferAndEachFollowsItsSet) {
  WriterRig rig;
  auto& [tracker, state, progs, writer] = rig;
  SvcSpec s;
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
  std::vector<Ep> eps;
  for (int i = 0; i < 1000; ++i) {  // a table of 131,059 entries: kept up to date by changes
    eps.push_back({fmt::format("10.64.{}.{}", i / 250, i % 250 + 1), i % 2 ? "node-b" : "node-a"});
  }
  auto step = [&](const std::string& what, bool wantShared) {
    tracker.upsertService(service(s));
    tracker.upsertSlice(slice("svc-1", "svc", eps));
    Diff d = state.apply(tracker.take());
    ASSERT_EQ(d.upserts.size(), 1u) << what;
    writer.begin();
    ASSERT_EQ(writer.sync(*d.upserts[0].view, d.upserts[0]), "") << what;
    ASSERT_EQ(writer.commit(), "") << what;
    std::vector<EndpointKey> all, local;
    for (const Ep& e : eps) {
      all.push_back({ip(e.addr), 8080});
      if (e.node == "node-a") local.push_back(all.back());
    }
    EXPECT_EQ(writer.sharesTable(d.upserts[0].view->key()), wantShared) << what;
    expectFlowsFollow(progs, s.etp == TrafficPolicy::Local ? local : all, kNode, kNodePort,
                      what + ", NodePort");
    expectFlowsFollow(progs, all, "10.96.0.1", 80, what + ", ClusterIP from outside");
  };
  step("cold", true);
  eps.erase(eps.begin() + 10);
  step("one endpoint left", true);
  s.etp = TrafficPolicy::Local;
  step("eTP Local", false);
  eps.erase(eps.begin() + 20);
  step("eTP Local, a local endpoint left", false);
  eps.push_back({"10.64.9.9", "node-a"});
  step("eTP Local, a local endpoint came", false);
  s.etp = TrafficPolicy::Cluster;
  step("eTP Cluster again", true);
  eps.erase(eps.begin() + 30);
  step("eTP Cluster again, one endpoint left", true);
}

// sessionAffinity ClientIP through the writer: every new flow of a client reaches one backend;
// when that backend leaves, the client moves to another and stays there.
TEST(NodePortAffinity, ClientIpKeepsEveryNewFlowOfAClientOnOneBackend) {
  WriterRig rig;
  auto& [tracker, state, progs, writer] = rig;
  auto apply = [&](int from, int to) {
    SvcSpec s;
    s.type = ServiceType::NodePort;
    s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
    auto svc = std::const_pointer_cast<Service>(service(s));
    svc->sessionAffinity = SessionAffinity::ClientIP;
    tracker.upsertService(svc);
    std::vector<Ep> eps;
    for (int i = from; i < to; ++i) eps.push_back({fmt::format("10.244.0.{}", i)});
    tracker.upsertSlice(slice("svc-1", "svc", eps));
    for (const auto& u : state.apply(tracker.take()).upserts) ASSERT_EQ(writer.sync(*u.view), "");
  };
  auto backendsSeen = [&](const std::string& client, uint16_t firstPort) {
    std::set<std::string> seen;
    for (uint16_t p = firstPort; p < firstPort + 20; ++p) {
      auto r = run(progs.ingressFd(), packet::build({client, kNode, p, kNodePort, IPPROTO_TCP}));
      seen.insert(r.verdict == kTcOk ? r.parsed.flow.dst : "verdict " + std::to_string(r.verdict));
    }
    return seen;
  };
  apply(1, 11);
  auto first = backendsSeen("203.0.113.7", 40000);
  ASSERT_EQ(first.size(), 1u) << "20 flows of one client, one backend";
  std::set<std::string> clients;
  for (int c = 1; c <= 8; ++c) {
    auto seen = backendsSeen(fmt::format("198.18.0.{}", c), 41000);
    ASSERT_EQ(seen.size(), 1u);
    clients.insert(*seen.begin());
  }
  EXPECT_GE(clients.size(), 2u) << "different clients spread over the backends";
  // The client's backend leaves: its next flows all go to one other backend.
  const int gone = std::stoi(first.begin()->substr(first.begin()->rfind('.') + 1));
  apply(gone == 1 ? 2 : 1, gone == 1 ? 11 : gone);  // a contiguous range without `gone`
  auto after = backendsSeen("203.0.113.7", 42000);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(*after.begin(), *first.begin());
}

TEST(NodePortUdp, ZeroChecksumStaysZero) {
  Node node;
  node.service(feKey(kNode, kNodePort, IPPROTO_UDP), backendsV4(2), 0);
  Flow f{"203.0.113.7", kNode, 48000, kNodePort, IPPROTO_UDP};
  auto r = run(node.progs().ingressFd(), packet::build(f, "x", {}, true));
  ASSERT_EQ(r.verdict, kTcOk);
  expectChecksums(r);
  EXPECT_EQ(r.parsed.l4Checksum, 0) << "IPv4 UDP without a checksum must not get a wrong one";
  EXPECT_EQ(r.parsed.flow.dst, node.predict(f).ip.str());
}

// Two nodes, loaded independently, with the backends written in a different order (so with
// different backend ids): every flow reaches the same backend through either of them.
TEST(NodePortMaglev, TwoNodesPickTheSameBackendForEveryFlow) {
  auto backends = backendsV4(50);
  auto reversed = backends;
  std::reverse(reversed.begin(), reversed.end());
  Node a(1), b(1000);
  a.service(feKey(kNode, kNodePort, IPPROTO_TCP), backends, 0, 7);
  b.service(feKey(kNode, kNodePort, IPPROTO_TCP), reversed, 0, 3);
  int agreed = 0;
  for (int i = 0; i < 500; ++i) {
    Flow f{fmt::format("198.18.{}.{}", i / 200, i % 200 + 1), kNode,
           static_cast<uint16_t>(30000 + i * 7), kNodePort, IPPROTO_TCP};
    auto ra = run(a.progs().ingressFd(), packet::build(f));
    auto rb = run(b.progs().ingressFd(), packet::build(f));
    agreed +=
        ra.parsed.flow.dst == rb.parsed.flow.dst && ra.parsed.flow.dport == rb.parsed.flow.dport;
  }
  EXPECT_EQ(agreed, 500);
}

// --- XDP: the same decision at the driver, fixtures through BPF_PROG_TEST_RUN -----------------
// The FIB must know a next hop for XDP to forward: a veth pair in this test's own namespace,
// px1 where frames "arrive", px0 towards the backends (10.245.0.0/16, fd00:245::/64) through a
// neighbour with a permanent MAC address.

constexpr int kXdpDrop = 1, kXdpPass = 2, kXdpTx = 3, kXdpRedirect = 4;
const uint8_t kNextHopMac[6] = {0x02, 0, 0, 0, 0x18, 0x02};

int sh(const std::string& cmd) {
  return std::system(cmd.c_str());
}

struct XdpLink {
  int in = 0, out = 0;  // ifindex of px1 (ingress) and px0 (towards the backends)
  std::array<uint8_t, 6> outMac{};
};

const XdpLink& xdpLink() {
  static XdpLink l = [] {
    XdpLink x;
    const int rc =
        sh("ip link add px0 type veth peer name px1 && ip link set px0 up && ip link set px1 up && "
           "ip addr add 198.18.0.1/24 dev px0 && ip -6 addr add 2001:db8:18::1/64 dev px0 nodad && "
           "ip neigh add 198.18.0.2 lladdr 02:00:00:00:18:02 dev px0 nud permanent && "
           "ip -6 neigh add 2001:db8:18::2 lladdr 02:00:00:00:18:02 dev px0 nud permanent && "
           "ip route add 10.245.0.0/16 via 198.18.0.2 && "
           "ip -6 route add fd00:245::/64 via 2001:db8:18::2 && "
           "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    if (rc != 0) throw std::runtime_error("building px0/px1 for the XDP fixtures");
    x.in = static_cast<int>(if_nametoindex("px1"));
    x.out = static_cast<int>(if_nametoindex("px0"));
    // Asked of this namespace (sysfs shows the namespace that mounted it).
    ifreq req{};
    std::strncpy(req.ifr_name, "px0", IFNAMSIZ - 1);
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || ioctl(fd, SIOCGIFHWADDR, &req) != 0)
      throw std::runtime_error("px0: reading its MAC address");
    close(fd);
    std::memcpy(x.outMac.data(), req.ifr_hwaddr.sa_data, 6);
    return x;
  }();
  return l;
}

// np_xdp sends frames only out of interfaces it runs on natively: px0 gets it.
void xdpOut(Node& node) {
  ASSERT_EQ(node.progs().attachXdp(xdpLink().out), "") << "native XDP on veth px0";
}

Result runXdp(int progFd, const std::vector<uint8_t>& in, int ifindex) {
  Result r;
  r.out.resize(1500);
  xdp_md md{};
  md.data_end = static_cast<uint32_t>(in.size());
  md.ingress_ifindex = static_cast<uint32_t>(ifindex);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()),
              .data_size_out = static_cast<uint32_t>(r.out.size()), .ctx_in = &md,
              .ctx_size_in = sizeof(md), .repeat = 1);
  if (bpf_prog_test_run_opts(progFd, &opts) != 0) {
    ADD_FAILURE() << "BPF_PROG_TEST_RUN (xdp): " << std::strerror(errno);
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.out.resize(opts.data_size_out);
  r.parsed = packet::parse(r.out);
  return r;
}

std::vector<EndpointKey> xdpBackends(bool v6, int n) {
  std::vector<EndpointKey> out;
  for (int i = 1; i <= n; ++i)
    out.push_back(be(v6 ? fmt::format("fd00:245::{}", i) : fmt::format("10.245.0.{}", i), 8080));
  return out;
}

uint8_t ttlOf(const std::vector<uint8_t>& frame) {
  const bool v6 = packet::get16(frame.data() + 12) == 0x86dd;
  return frame[14 + (v6 ? 7 : 8)];
}

// (protocol, IPv6?)
class NodePortXdp : public ::testing::TestWithParam<std::tuple<uint8_t, bool>> {};

// A new flow, then the same flow again: DNAT to its Maglev backend, both checksums right,
// TTL (hop limit) one less, the next hop's MAC addresses, redirected out of px0.
TEST_P(NodePortXdp, NewAndEstablishedFlowsAreForwardedAtTheDriver) {
  const auto [proto, v6] = GetParam();
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  const std::string fe = v6 ? "2001:db8::10" : kNode;
  node.service(feKey(fe, kNodePort, proto), xdpBackends(v6, 5), 0);
  std::set<std::string> seen;
  for (uint16_t sport = 47000; sport < 47030; ++sport) {
    Flow f{v6 ? "2001:db8:1::7" : "203.0.113.7", fe, sport, kNodePort, proto};
    for (int pass = 0; pass < 2; ++pass) {
      auto r = runXdp(node.progs().xdpFd(), packet::build(f, pass ? "again" : "hello"), link.in);
      ASSERT_EQ(r.verdict, kXdpRedirect) << "sport " << sport << " pass " << pass;
      expectChecksums(r);
      const EndpointKey want = node.predict(f);
      EXPECT_EQ(r.parsed.flow.dst, want.ip.str());
      EXPECT_EQ(r.parsed.flow.dport, 8080);
      EXPECT_EQ(r.parsed.flow.src, f.src) << "no SNAT flag: the client address stays";
      EXPECT_EQ(r.parsed.flow.sport, sport);
      EXPECT_EQ(r.parsed.payload, pass ? "again" : "hello");
      EXPECT_EQ(ttlOf(r.out), 63);
      EXPECT_EQ(std::memcmp(r.out.data(), kNextHopMac, 6), 0) << "destination MAC: the next hop";
      EXPECT_EQ(std::memcmp(r.out.data() + 6, link.outMac.data(), 6), 0) << "source MAC: px0";
      seen.insert(str(want));
    }
  }
  EXPECT_GE(seen.size(), 3u);
  // Arriving on the interface it leaves by: sent back out at once.
  Flow g{v6 ? "2001:db8:1::8" : "203.0.113.8", fe, 47100, kNodePort, proto};
  EXPECT_EQ(runXdp(node.progs().xdpFd(), packet::build(g), link.out).verdict, kXdpTx);
}

// eTP Cluster: SNAT to the node's address with a port from the SNAT range, and the reply is
// left to tc (the reverse entry exists), which the tc fixtures cover.
TEST_P(NodePortXdp, SnatFlowGetsTheNodeAddressAndItsReplyPassesToTc) {
  const auto [proto, v6] = GetParam();
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  const std::string fe = v6 ? "2001:db8::10" : kNode;
  snatTo(node.progs(), fe, 65535);
  node.service(feKey(fe, kNodePort, proto), xdpBackends(v6, 3), NP_F_SNAT);
  Flow f{v6 ? "2001:db8:1::7" : "203.0.113.7", fe, 47200, kNodePort, proto};
  auto r = runXdp(node.progs().xdpFd(), packet::build(f), link.in);
  ASSERT_EQ(r.verdict, kXdpRedirect);
  expectChecksums(r);
  EXPECT_EQ(r.parsed.flow.src, fe) << "SNAT to the node";
  EXPECT_GE(r.parsed.flow.sport, 61000);
  EXPECT_EQ(r.parsed.flow.dst, node.predict(f).ip.str());
  Flow reply{r.parsed.flow.dst, fe, 8080, r.parsed.flow.sport, proto};
  auto back = runXdp(node.progs().xdpFd(), packet::build(reply), link.out);
  EXPECT_EQ(back.verdict, kXdpPass);
  EXPECT_EQ(back.parsed.flow.src, reply.src) << "untouched: tc reverses it";
  // tc ingress turns it back into the frontend's reply to the client.
  auto tc = run(node.progs().ingressFd(), packet::build(reply));
  EXPECT_EQ(tc.parsed.flow.src, fe);
  EXPECT_EQ(tc.parsed.flow.sport, kNodePort);
  EXPECT_EQ(tc.parsed.flow.dst, f.src);
  EXPECT_EQ(tc.parsed.flow.dport, f.sport);
}

// Direct server return at XDP: what carries the frontend (a TCP SYN, every UDP datagram) passes to
// tc, which adds the option; the rest of a TCP connection is DNATed at the driver, the client's
// address kept and no option.
TEST_P(NodePortXdp, DsrPacketsThatCarryTheFrontendPassToTcTheRestIsForwarded) {
  const auto [proto, v6] = GetParam();
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  const std::string fe = v6 ? "2001:db8::10" : kNode;
  snatTo(node.progs(), fe, 65535);
  node.service(feKey(fe, kNodePort, proto), xdpBackends(v6, 3), NP_F_SNAT | NP_F_DSR);
  Flow f{v6 ? "2001:db8:1::7" : "203.0.113.7", fe, 47300, kNodePort, proto};
  const auto first = packet::build(f);
  auto r = runXdp(node.progs().xdpFd(), first, link.in);
  EXPECT_EQ(r.verdict, kXdpPass);
  EXPECT_EQ(r.out, first) << "untouched: tc adds the option";
  auto tc = run(node.progs().ingressFd(), first);
  EXPECT_EQ(tc.parsed.flow.dst, node.predict(f).ip.str());
  EXPECT_EQ(tc.parsed.ipOptions, dsrOption(fe, kNodePort, proto));
  if (proto != IPPROTO_TCP) return;
  auto ack = runXdp(node.progs().xdpFd(), packet::build(f, "more", {1001, 5000, 0x10}), link.in);
  ASSERT_EQ(ack.verdict, kXdpRedirect);
  expectChecksums(ack);
  EXPECT_EQ(ack.parsed.flow.src, f.src) << "DSR: no SNAT";
  EXPECT_EQ(ack.parsed.flow.sport, f.sport);
  EXPECT_EQ(ack.parsed.flow.dst, node.predict(f).ip.str());
  EXPECT_TRUE(ack.parsed.ipOptions.empty());
}

// No resolved next hop for the backend: XDP passes the frame untouched, and tc, finding the flow
// XDP entered in the connection tracking, sends it to the same backend.
TEST_P(NodePortXdp, WithoutANextHopTheFrameFallsBackToTcAndTheSameBackend) {
  const auto [proto, v6] = GetParam();
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  const std::string fe = v6 ? "2001:db8::10" : kNode;
  std::vector<EndpointKey> unrouted{be(v6 ? "fd00:246::1" : "10.246.0.1", 8080),
                                    be(v6 ? "fd00:246::2" : "10.246.0.2", 8080)};
  node.service(feKey(fe, kNodePort, proto), unrouted, 0);
  Flow f{v6 ? "2001:db8:1::7" : "203.0.113.7", fe, 47300, kNodePort, proto};
  auto frame = packet::build(f);
  auto x = runXdp(node.progs().xdpFd(), frame, link.in);
  ASSERT_EQ(x.verdict, kXdpPass);
  EXPECT_EQ(x.out, frame) << "passed as it came";
  auto t = run(node.progs().ingressFd(), frame);
  ASSERT_EQ(t.verdict, kTcOk);
  expectChecksums(t);
  EXPECT_EQ(t.parsed.flow.dst, node.predict(f).ip.str());
}

// The FIB's interface towards the backend runs no np_xdp (a pod's veth, say): the frame is left
// to tc rather than redirected into an interface that may drop it.
TEST(NodePortXdpOut, OnlyInterfacesRunningNpXdpAreSentTo) {
  const XdpLink& link = xdpLink();
  Node node;  // px0 not attached: not an XDP output
  node.service(feKey(kNode, kNodePort, IPPROTO_UDP), xdpBackends(false, 2), 0);
  auto frame = packet::build({"203.0.113.7", kNode, 47600, kNodePort, IPPROTO_UDP});
  auto r = runXdp(node.progs().xdpFd(), frame, link.in);
  EXPECT_EQ(r.verdict, kXdpPass);
  EXPECT_EQ(r.out, frame);
  xdpOut(node);
  EXPECT_EQ(runXdp(node.progs().xdpFd(), frame, link.in).verdict, kXdpRedirect);
}

// Policy at the driver: a drop is an XDP_DROP; a reject and a packet for no frontend pass on
// (tc builds the RST / ICMP; the stack takes the rest).
TEST_P(NodePortXdp, DropAtTheDriverRejectAndNoFrontendPass) {
  const auto [proto, v6] = GetParam();
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  const std::string fe = v6 ? "2001:db8::10" : kNode;
  node.service(feKey(fe, kNodePort, proto), xdpBackends(v6, 2), NP_F_DROP);
  node.service(feKey(fe, kNodePort + 1, proto), {}, NP_F_REJECT, 2);
  const std::string client = v6 ? "2001:db8:1::7" : "203.0.113.7";
  EXPECT_EQ(
      runXdp(node.progs().xdpFd(), packet::build({client, fe, 47400, kNodePort, proto}), link.in)
          .verdict,
      kXdpDrop);
  auto rej = packet::build({client, fe, 47401, kNodePort + 1, proto});
  auto r = runXdp(node.progs().xdpFd(), rej, link.in);
  EXPECT_EQ(r.verdict, kXdpPass);
  EXPECT_EQ(r.out, rej);
  auto none = packet::build({client, fe, 47402, kNodePort + 2, proto});
  EXPECT_EQ(runXdp(node.progs().xdpFd(), none, link.in).verdict, kXdpPass);
}

INSTANTIATE_TEST_SUITE_P(Proto, NodePortXdp,
                         ::testing::Combine(::testing::Values(uint8_t{IPPROTO_TCP},
                                                              uint8_t{IPPROTO_UDP}),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == IPPROTO_TCP ? "TCP"
                                                                                     : "UDP") +
                                  (std::get<1>(info.param) ? "v6" : "v4");
                         });

// An IPv4 UDP datagram without a checksum keeps none through XDP.
TEST(NodePortXdpUdp, ZeroChecksumStaysZero) {
  const XdpLink& link = xdpLink();
  Node node;
  xdpOut(node);
  node.service(feKey(kNode, kNodePort, IPPROTO_UDP), xdpBackends(false, 2), 0);
  auto r = runXdp(
      node.progs().xdpFd(),
      packet::build({"203.0.113.7", kNode, 47500, kNodePort, IPPROTO_UDP}, "hello", {}, true),
      link.in);
  ASSERT_EQ(r.verdict, kXdpRedirect);
  EXPECT_EQ(r.parsed.l4Checksum, 0);
  EXPECT_TRUE(r.parsed.ipChecksumOk);
}

// --- real traffic: a client namespace reaches a NodePort on the node's veth ---------------

topo::Topology gTopo;
std::string gPinDir;  // on a private bpf filesystem (main)

// The pins of the packet path under gPinDir/sub (np_* only).
std::set<std::string> npPins(const std::string& sub) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(gPinDir + "/" + sub, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("np_", 0) == 0) out.insert(name);
  }
  return out;
}

pid_t gServer = -1;

class NodePortTraffic : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(gTopo.create()) << "building the namespace topology";
    gServer = topo::startServer(gTopo.backend,
                                {"10.244.0.2", "10.244.0.3", "fd00:244::2", "fd00:244::3"}, 8080);
    ASSERT_GT(gServer, 0) << "starting the backend servers";
  }
  static void TearDownTestSuite() {
    topo::stopServer(gServer);
    gTopo.destroy();
  }
  // The programs on both of the node's interfaces: n0 faces clients, n1 the backends (whose
  // replies to SNATed flows come back in there).
  void attach(Node& node) {
    for (const char* dev : {"n0", "n1"}) {
      const int ifindex = static_cast<int>(if_nametoindex(dev));
      ASSERT_GT(ifindex, 0) << dev;
      node.progs().attach(ifindex);
    }
  }
  std::vector<EndpointKey> backends() { return {be("10.244.0.2", 8080), be("10.244.0.3", 8080)}; }
};

TEST_F(NodePortTraffic, NodePortReachesTheMaglevBackendKeepingTheClientAddress) {
  Node node;
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    node.service(feKey("203.0.113.1", kNodePort, proto), backends(), 0,
                 proto == IPPROTO_TCP ? 1 : 2);
  }
  attach(node);
  std::set<std::string> reached;
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    const uint8_t proto = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    for (uint16_t i = 0; i < 8; ++i) {
      const uint16_t cport = static_cast<uint16_t>(50100 + i + (type == SOCK_DGRAM ? 50 : 0));
      auto a = topo::request(gTopo.client, "203.0.113.1", kNodePort, type, cport);
      ASSERT_EQ(a.error, "") << (proto == IPPROTO_TCP ? "TCP" : "UDP") << " from port " << cport;
      EXPECT_EQ(a.from, fmt::format("203.0.113.1:{}", kNodePort)) << "the reply's source";
      Flow f{"203.0.113.2", "203.0.113.1", cport, kNodePort, proto};
      const EndpointKey want = node.predict(f, proto == IPPROTO_TCP ? 1 : 2);
      EXPECT_EQ(a.text, fmt::format("{} 203.0.113.2:{}", str(want), cport))
          << "the Maglev backend, seeing the client's own address";
      reached.insert(a.text.substr(0, a.text.find(' ')));
    }
  }
  EXPECT_EQ(reached.size(), 2u) << "16 flows over 2 backends";
}

// Native XDP on veth carries new flows by itself: n0 has np_xdp and no tc ingress program, so
// only XDP can translate the client's packets (the node has no socket on the NodePort and would
// refuse them). SNAT too: the replies come back to the node through n1, where tc turns them
// back. The backends are resolved first (XDP forwards only to a known next hop).
TEST_F(NodePortTraffic, NativeXdpOnVethForwardsNewFlowsWithoutTcIngress) {
  Node node;
  snatTo(node.progs(), "10.244.0.1", 61999);
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    node.service(feKey("203.0.113.1", kNodePort, proto), backends(), NP_F_SNAT,
                 proto == IPPROTO_TCP ? 1 : 2);
  }
  attach(node);
  const int n0 = static_cast<int>(if_nametoindex("n0"));
  ASSERT_EQ(node.progs().attachXdp(n0), "") << "veth has native XDP";
  ASSERT_EQ(node.progs().attachXdp(static_cast<int>(if_nametoindex("n1"))), "")
      << "n1 too: np_xdp sends only out of interfaces it runs on";
  node.progs().detachTcIngress(n0);  // n0's tc ingress program removed
  const std::string neigh = fmt::format(
      "m=$(ip -n {} -o link show b0 | sed -n 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/p') && "
      "ip neigh replace 10.244.0.2 lladdr $m dev n1 nud permanent && "
      "ip neigh replace 10.244.0.3 lladdr $m dev n1 nud permanent",
      gTopo.backend);
  ASSERT_EQ(topo::sh(neigh), 0) << neigh;
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    const uint8_t proto = type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
    for (uint16_t i = 0; i < 4; ++i) {
      const uint16_t cport = static_cast<uint16_t>(50700 + i + (type == SOCK_DGRAM ? 50 : 0));
      auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, type, cport);
      ASSERT_EQ(r.error, "") << (proto == IPPROTO_TCP ? "TCP" : "UDP") << " from port " << cport;
      EXPECT_EQ(r.from, fmt::format("203.0.113.1:{}", kNodePort));
      Flow f{"203.0.113.2", "203.0.113.1", cport, kNodePort, proto};
      const EndpointKey want = node.predict(f, proto == IPPROTO_TCP ? 1 : 2);
      EXPECT_EQ(r.text.rfind(str(want) + " 10.244.0.1:", 0), 0u)
          << "the Maglev backend, seeing the SNAT address: " << r.text;
    }
  }
  topo::sh("ip neigh del 10.244.0.2 dev n1; ip neigh del 10.244.0.3 dev n1");
}

TEST_F(NodePortTraffic, ClusterPolicySnatsToTheNodeAndRepliesFindTheirWayBack) {
  Node node;
  snatTo(node.progs(), "10.244.0.1", 61999);
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    node.service(feKey("203.0.113.1", kNodePort, proto), backends(), NP_F_SNAT,
                 proto == IPPROTO_TCP ? 1 : 2);
  }
  attach(node);
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    for (uint16_t i = 0; i < 4; ++i) {
      const uint16_t cport = static_cast<uint16_t>(50300 + i + (type == SOCK_DGRAM ? 50 : 0));
      auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, type, cport);
      ASSERT_EQ(r.error, "") << (type == SOCK_STREAM ? "TCP" : "UDP") << " from port " << cport;
      EXPECT_EQ(r.from, fmt::format("203.0.113.1:{}", kNodePort));
      const auto peer = r.text.substr(r.text.find(' ') + 1);
      EXPECT_EQ(peer.rfind("10.244.0.1:61", 0), 0u)
          << "the backend sees the SNAT address: " << peer;
    }
  }
}

TEST_F(NodePortTraffic, Ipv6NodePortDnatAndSnatWithRealTraffic) {
  Node node;
  snatTo(node.progs(), "fd00:244::1", 61999);
  std::vector<EndpointKey> v6{be("fd00:244::2", 8080), be("fd00:244::3", 8080)};
  node.service(feKey("2001:db8:c::1", kNodePort, IPPROTO_TCP), v6, 0, 1);
  node.service(feKey("2001:db8:c::1", kNodePort, IPPROTO_UDP), v6, NP_F_SNAT, 2);
  attach(node);
  for (uint16_t i = 0; i < 4; ++i) {
    const uint16_t cport = static_cast<uint16_t>(50700 + i);
    auto t = topo::request(gTopo.client, "2001:db8:c::1", kNodePort, SOCK_STREAM, cport);
    ASSERT_EQ(t.error, "") << "TCP over IPv6 from port " << cport;
    EXPECT_EQ(t.from, fmt::format("[2001:db8:c::1]:{}", kNodePort));
    Flow f{"2001:db8:c::2", "2001:db8:c::1", cport, kNodePort, IPPROTO_TCP};
    EXPECT_EQ(t.text,
              fmt::format("[{}]:8080 [2001:db8:c::2]:{}", node.predict(f, 1).ip.str(), cport))
        << "DNAT only: the backend sees the client";
    auto u = topo::request(gTopo.client, "2001:db8:c::1", kNodePort, SOCK_DGRAM, cport);
    ASSERT_EQ(u.error, "") << "UDP over IPv6 from port " << cport;
    EXPECT_EQ(u.from, fmt::format("[2001:db8:c::1]:{}", kNodePort));
    EXPECT_NE(u.text.find(" [fd00:244::1]:61"), std::string::npos) << "SNAT: " << u.text;
  }
}

TEST_F(NodePortTraffic, NoEndpointsRejectRefusesTcpAndUdpAtOnce) {
  Node node;
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    node.service(feKey("203.0.113.1", kNodePort, proto), {}, NP_F_REJECT,
                 proto == IPPROTO_TCP ? 1 : 2);
  }
  attach(node);
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    auto start = std::chrono::steady_clock::now();
    auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, type);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    EXPECT_EQ(r.error, "ECONNREFUSED") << (type == SOCK_STREAM ? "TCP" : "UDP");
    EXPECT_LT(ms, 500) << "refused by the generated RST / ICMP, not a timeout";
  }
}

// The whole chain: Service and EndpointSlice objects, the proxier's node-local view, the
// writer, the maps, and real traffic.
// A batch (what NodePortPath runs each sync in): the new ports' tables are installed at commit,
// together, and their frontends only after them; a port changed inside the batch keeps serving
// from its old table until then.
TEST_F(NodePortTraffic, BatchedSyncInstallsTablesTogetherAndFrontendsAfterThem) {
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  NodePortPrograms progs;
  backends::ebpf::NodePortWriter writer(progs, {ip("203.0.113.1")}, kMaglevDefaultTableSize);
  for (const char* dev : {"n0", "n1"}) progs.attach(static_cast<int>(if_nametoindex(dev)));
  auto countFrontends = [&] {
    size_t n = 0;
    np_fe_key k{}, next{};
    const np_fe_key* at = nullptr;
    while (bpf_map_get_next_key(progs.frontendsFd(), at, &next) == 0) {
      ++n;
      k = next;
      at = &k;
    }
    return n;
  };
  auto upsert = [&](int i, const char* backend) {
    SvcSpec s;
    s.name = fmt::format("web{}", i);
    s.clusterIPs = {fmt::format("10.96.1.{}", i + 1)};
    s.type = ServiceType::NodePort;
    s.ports = {{"http", Protocol::UDP, 80, static_cast<uint16_t>(kNodePort + i), {8080, ""}}};
    tracker.upsertService(service(s));
    tracker.upsertSlice(
        slice(s.name + "-1", s.name, {{backend, "node-b"}}, {{"http", Protocol::UDP, 8080}}));
  };
  for (int i = 0; i < 20; ++i) upsert(i, "10.244.0.2");
  Diff d = state.apply(tracker.take());
  writer.begin();
  for (const auto& u : d.upserts) ASSERT_EQ(writer.sync(*u.view), "");
  EXPECT_EQ(countFrontends(), 0u) << "no frontend before its table is installed";
  ASSERT_EQ(writer.commit(), "");
  EXPECT_EQ(countFrontends(), 40u) << "20 NodePorts and 20 ClusterIPs reached from outside";
  auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort + 7, SOCK_DGRAM, 50900);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.text.rfind("10.244.0.2:8080 ", 0), 0u) << r.text;

  // The backend moves, inside a batch: the idle tables are new, so the frontends wait for them,
  // and the old backend id stays until then (the old table names it).
  upsert(7, "10.244.0.3");
  d = state.apply(tracker.take());
  writer.begin();
  for (const auto& u : d.upserts) ASSERT_EQ(writer.sync(*u.view), "");
  auto mid = topo::request(gTopo.client, "203.0.113.1", kNodePort + 7, SOCK_DGRAM, 50901);
  ASSERT_EQ(mid.error, "");
  EXPECT_EQ(mid.text.rfind("10.244.0.2:8080 ", 0), 0u)
      << "the old table until commit: " << mid.text;
  ASSERT_EQ(writer.commit(), "");
  auto after = topo::request(gTopo.client, "203.0.113.1", kNodePort + 7, SOCK_DGRAM, 50902);
  ASSERT_EQ(after.error, "");
  EXPECT_EQ(after.text.rfind("10.244.0.3:8080 ", 0), 0u) << after.text;
}

// --enable-dsr through the writer: the NodePort's frontends get NP_F_DSR with NP_F_SNAT, the
// ClusterIP reached from outside stays SNATed. A backend whose replies come back through this
// node (a local pod, or a node that does not read the option: its kernel skips it) still
// answers: the reverse entry DNAT made turns the reply back here, and it keeps the client.
TEST_F(NodePortTraffic, DsrFrontendsFromTheWriterAndRepliesThatComeBackHere) {
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  NodePortPrograms progs;
  snatTo(progs, "10.244.0.1", 61999);
  backends::ebpf::NodePortWriter writer(progs, {ip("203.0.113.1")}, kMaglevDefaultTableSize,
                                        /*directServerReturn=*/true);
  for (const char* dev : {"n0", "n1"}) progs.attach(static_cast<int>(if_nametoindex(dev)));
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}},
             {"echo", Protocol::UDP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("web-1", "web", {{"10.244.0.2", "node-b"}, {"10.244.0.3", "node-b"}},
                            {{"http", Protocol::TCP, 8080}, {"echo", Protocol::UDP, 8080}}));
  Diff d = state.apply(tracker.take());
  for (const auto& u : d.upserts) ASSERT_EQ(writer.sync(*u.view), "");
  auto flagsOf = [&](const std::string& addr, uint16_t port) {
    const np_fe_key k = feKey(addr, port, IPPROTO_TCP);
    np_frontend v{};
    return bpf_map_lookup_elem(progs.frontendsFd(), &k, &v) == 0 ? v.flags : ~0u;
  };
  EXPECT_EQ(flagsOf("203.0.113.1", kNodePort), NP_F_SNAT | NP_F_DSR);
  EXPECT_EQ(flagsOf("10.96.0.1", 80), NP_F_SNAT | NP_F_POD_KEEPS_SOURCE)
      << "ClusterIP from outside: always SNATed (this node's pods: on hairpin only), never DSR";
  for (uint16_t p = 50550; p < 50554; ++p) {
    auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_STREAM, p);
    ASSERT_EQ(r.error, "") << "from port " << p;
    EXPECT_EQ(r.text.substr(r.text.find(' ') + 1), fmt::format("203.0.113.2:{}", p))
        << "DSR keeps the client's address: " << r.text;
  }
  for (uint16_t p = 50560; p < 50564; ++p) {
    auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, p);
    ASSERT_EQ(r.error, "") << "UDP from port " << p;
    EXPECT_EQ(r.from, fmt::format("203.0.113.1:{}", kNodePort));
    EXPECT_EQ(r.text.substr(r.text.find(' ') + 1), fmt::format("203.0.113.2:{}", p));
  }
}

TEST_F(NodePortTraffic, ProxierViewsDriveTheMapsThroughEveryPolicy) {
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  NodePortPrograms progs;
  snatTo(progs, "10.244.0.1", 61999);
  backends::ebpf::NodePortWriter writer(progs, {ip("203.0.113.1")}, kMaglevDefaultTableSize);
  for (const char* dev : {"n0", "n1"}) progs.attach(static_cast<int>(if_nametoindex(dev)));
  const ServicePortKey key{{"default", "web"}, {"http", Protocol::TCP, IpFamily::V4}};
  auto apply = [&](TrafficPolicy etp, std::vector<Ep> eps) {
    SvcSpec s;
    s.name = "web";
    s.type = ServiceType::NodePort;
    s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
    s.etp = etp;
    tracker.upsertService(service(s));
    tracker.upsertSlice(slice("web-1", "web", std::move(eps)));
    Diff d = state.apply(tracker.take());
    for (const auto& u : d.upserts) ASSERT_EQ(writer.sync(*u.view), "");
  };
  auto peerOf = [&](uint16_t cport) {
    auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_STREAM, cport);
    return r.error.empty() ? r.text : "error " + r.error;
  };

  apply(TrafficPolicy::Cluster, {{"10.244.0.2", "node-b"}, {"10.244.0.3", "node-b"}});
  const auto [table, size] = writer.tableOf(key);
  EXPECT_EQ(size, kMaglevDefaultTableSize);
  EXPECT_EQ(writer.backendEntries(), 4u)
      << "2 endpoints, in the NodePort's and the ClusterIP's tables";
  EXPECT_NE(peerOf(50500).find(" 10.244.0.1:61"), std::string::npos)
      << "eTP Cluster: SNATed: " << peerOf(50500);
  // The ClusterIP reached from outside: the internal set, SNATed.
  auto viaClusterIp = topo::request(gTopo.client, "10.96.0.1", 80, SOCK_STREAM, 50501);
  ASSERT_EQ(viaClusterIp.error, "");
  EXPECT_EQ(viaClusterIp.from, "10.96.0.1:80");
  EXPECT_NE(viaClusterIp.text.find(" 10.244.0.1:61"), std::string::npos) << viaClusterIp.text;

  // One endpoint leaves: the port's other table (same size: rewritten, no swap), every new
  // flow on the one left.
  apply(TrafficPolicy::Cluster, {{"10.244.0.2", "node-b"}});
  EXPECT_EQ(writer.tableOf(key).first, table + 1);
  EXPECT_EQ(writer.backendEntries(), 2u);
  for (uint16_t p = 50510; p < 50516; ++p) EXPECT_EQ(peerOf(p).substr(0, 16), "10.244.0.2:8080 ");

  // eTP Local with the endpoint on this node: the backend sees the client.
  apply(TrafficPolicy::Local, {{"10.244.0.3", "node-a"}, {"10.244.0.2", "node-b"}});
  EXPECT_EQ(peerOf(50520), "10.244.0.3:8080 203.0.113.2:50520");

  // eTP Local, endpoints elsewhere only: dropped (a timeout, no RST).
  apply(TrafficPolicy::Local, {{"10.244.0.2", "node-b"}});
  EXPECT_EQ(peerOf(50530), "error EINPROGRESS") << "dropped: the connect times out (SO_SNDTIMEO)";

  // No endpoints at all: rejected at once.
  apply(TrafficPolicy::Cluster, {});
  EXPECT_EQ(peerOf(50540), "error ECONNREFUSED");

  // The Service goes: every entry of the port goes with it.
  tracker.deleteService({"default", "web"});
  Diff d = state.apply(tracker.take());
  for (const auto& del : d.deletes) ASSERT_EQ(writer.remove(del.key), "");
  np_fe_key next{};
  EXPECT_NE(bpf_map_get_next_key(progs.frontendsFd(), nullptr, &next), 0) << "no frontend left";
  EXPECT_EQ(writer.backendEntries(), 0u);
}

// What the eBPF backend runs with --devices: the devices' addresses become NodePort addresses,
// the first one the SNAT address, and each Diff (then a full sync) reaches the maps.
TEST_F(NodePortTraffic, DevicesPathFollowsDiffsAndFullSyncs) {
  NetworkConfig net;
  net.bpfPinDir = "";  // not pinned: gone with the path
  net.devices = {"n0", "n1"};
  EXPECT_THROW(backends::ebpf::deviceAddresses({"n0", "no-such-dev"}, {}), std::runtime_error);
  auto addrs = backends::ebpf::deviceAddresses(net.devices, {});
  ASSERT_EQ(addrs.size(), 4u) << "each device's IPv4 and IPv6 address, link-local ones left out";
  EXPECT_EQ(addrs[0].str(), "203.0.113.1");
  EXPECT_EQ(backends::ebpf::deviceAddresses(net.devices, {*Cidr::parse("10.0.0.0/8")}).size(), 1u)
      << "--nodeport-addresses filters them";
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::UDP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(
      slice("web-1", "web", {{"10.244.0.2", "node-b"}}, {{"http", Protocol::UDP, 8080}}));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50600);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.from, fmt::format("203.0.113.1:{}", kNodePort));
  EXPECT_NE(r.text.find("10.244.0.2:8080 203.0.113.1:"), std::string::npos)
      << "SNAT to the first device's address: " << r.text;
  // A full sync after the Service went: nothing answers any more (the node has no socket there,
  // so its own stack refuses).
  tracker.deleteService({"default", "web"});
  state.apply(tracker.take(), false);
  ASSERT_EQ(path->fullSync(state.state()), "");
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50601).error,
            "ECONNREFUSED");
  path.reset();
  // Detached: a second path on the same devices attaches again. --nodeport-addresses keeps
  // n1's address only; the SNAT address stays the first device's own.
  net.nodePortAddresses = {*Cidr::parse("10.244.0.0/16")};
  path = std::make_unique<backends::ebpf::NodePortPath>(net);
  ASSERT_EQ(path->nodeAddresses().size(), 1u);
  tracker.upsertService(service(s));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  auto f = topo::request(gTopo.client, "10.244.0.1", kNodePort, SOCK_DGRAM, 50602);
  ASSERT_EQ(f.error, "");
  EXPECT_NE(f.text.find("10.244.0.2:8080 203.0.113.1:"), std::string::npos) << f.text;
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50603).error,
            "ECONNREFUSED")
      << "not a NodePort address any more";
}

// --nodeport-addresses primary: NodePorts answer on the Node's InternalIPs only, none before
// the Node object arrives, and they follow the Node when its addresses change.
// --enable-dsr through NodePortPath: the Node's pod CIDRs go into np_src_ranges under
// NP_RANGES_LOCAL_PODS (and follow the Node), so this node's own pods stay SNATed.
TEST_F(NodePortTraffic, DsrPathKeepsTheNodesPodCidrsForSnat) {
  NetworkConfig net;
  net.bpfPinDir = "";
  net.devices = {"n0", "n1"};
  net.directServerReturn = true;
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  auto nodeWith = [](const std::vector<std::string>& cidrs, const std::string& rv) {
    auto n = std::make_shared<proxier::Node>();
    n->key = {"", "node-a"};
    n->resourceVersion = rv;
    for (const auto& c : cidrs) n->podCIDRs.push_back(*proxier::Cidr::parse(c));
    return proxier::NodePtr(n);
  };
  auto localPods = [&]() {
    std::set<std::string> out;
    np_range_key k{}, next{};
    const int fd = path->programs().srcRangesFd();
    for (const np_range_key* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0;
         prev = &k) {
      k = next;
      if (k.ranges_id != NP_RANGES_LOCAL_PODS) continue;
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(k.family == NP_FAMILY_V4 ? AF_INET : AF_INET6, k.addr, buf, sizeof(buf));
      out.insert(fmt::format("{}/{}", buf, k.prefixlen - NP_RANGE_FIXED_BITS));
    }
    return out;
  };
  tracker.upsertNode(nodeWith({"10.244.7.0/24", "fd00:244:7::/64"}, "1"));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(localPods(), (std::set<std::string>{"10.244.7.0/24", "fd00:244:7::/64"}));
  tracker.upsertNode(nodeWith({"10.244.8.0/24"}, "2"));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(localPods(), (std::set<std::string>{"10.244.8.0/24"})) << "the Node's CIDRs followed";
}

TEST_F(NodePortTraffic, PrimaryNodePortAddressesFollowTheNodesInternalIps) {
  NetworkConfig net;
  net.bpfPinDir = "";  // not pinned: gone with the path
  net.devices = {"n0", "n1"};
  net.nodePortPrimaryOnly = true;
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  EXPECT_TRUE(path->nodeAddresses().empty()) << "no Node yet: no NodePort address";
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::UDP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(
      slice("web-1", "web", {{"10.244.0.2", "node-b"}}, {{"http", Protocol::UDP, 8080}}));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50610).error,
            "ECONNREFUSED");
  auto nodeWith = [](const std::string& a) {
    auto n = std::make_shared<proxier::Node>();
    n->key = {"", "node-a"};
    n->resourceVersion = a;
    n->addresses.push_back({"InternalIP", proxier::IpAddr::parse(a), a});
    return proxier::NodePtr(n);
  };
  tracker.upsertNode(nodeWith("203.0.113.1"));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  ASSERT_EQ(path->nodeAddresses().size(), 1u);
  auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50611);
  ASSERT_EQ(r.error, "");
  EXPECT_NE(r.text.find("10.244.0.2:8080 203.0.113.1:"), std::string::npos) << r.text;
  EXPECT_EQ(topo::request(gTopo.client, "10.244.0.1", kNodePort, SOCK_DGRAM, 50612).error,
            "ECONNREFUSED")
      << "a device address that is no InternalIP";
  // The Node's InternalIP moves: the port, unchanged itself, is re-planned.
  tracker.upsertNode(nodeWith("10.244.0.1"));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(topo::request(gTopo.client, "10.244.0.1", kNodePort, SOCK_DGRAM, 50613).error, "");
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 50614).error,
            "ECONNREFUSED");
}

// `--devices n0,n1+`: node addresses from n0 only, the programs also on every interface whose
// name starts with n1, including one that appears later. The SNAT address is n0's, so the
// backend's reply enters through n1 addressed to the node: only the program on n1 can turn it
// back (without it the node's own stack would answer it with a RST).
TEST_F(NodePortTraffic, PrefixDevicesCarryTheRepliesOfSnatedFlows) {
  NetworkConfig net;
  net.bpfPinDir = gPinDir;  // pinned: a pod interface that goes takes its pins along
  net.devices = {"n0", "n1+"};
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  std::vector<std::string> shown;
  for (const auto& a : path->nodeAddresses()) shown.push_back(a.str());
  EXPECT_EQ(shown, (std::vector<std::string>{"203.0.113.1", "2001:db8:c::1"}));
  EXPECT_EQ(path->attached(), (std::vector<std::string>{"n0", "n1"}));
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("web-1", "web", {{"10.244.0.3", "node-b"}}));
  ASSERT_EQ(topo::sh("ip link add n1late type veth peer name x1late"), 0);
  const int late = static_cast<int>(if_nametoindex("n1late"));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(path->attached(), (std::vector<std::string>{"n0", "n1", "n1late"}))
      << "an interface that appeared is attached at the next sync";
  EXPECT_EQ(npPins("links").count(fmt::format("np_ingress_{}", late)), 1u);
  auto r = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_STREAM, 50800);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.text.rfind("10.244.0.3:8080 203.0.113.1:", 0), 0u) << r.text;
  // It goes (a pod deleted): at the next sync, out of the list and its pins gone.
  ASSERT_EQ(topo::sh("ip link del n1late"), 0);
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  EXPECT_EQ(path->attached(), (std::vector<std::string>{"n0", "n1"}));
  EXPECT_EQ(npPins("links").count(fmt::format("np_ingress_{}", late)), 0u);
  EXPECT_EQ(npPins("links").count(fmt::format("np_egress_{}", late)), 0u);
  path.reset();
  EXPECT_GT(NodePortPrograms::removePinned(gPinDir), 0u);
}

// The node reaching its own NodePort: with lo in --devices the node's connection is translated
// at lo's ingress, and the reply, addressed to the node, is handed back to lo (delivered on n1 its
// source, a node address, would be martian). Loopback addresses are no NodePort addresses.
TEST_F(NodePortTraffic, TheNodeReachesItsOwnNodePortThroughLo) {
  NetworkConfig net;
  net.bpfPinDir = "";  // not pinned: gone with the path
  net.devices = {"n0", "n1", "lo"};
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  for (const auto& a : path->nodeAddresses()) {
    EXPECT_NE(a.str(), "127.0.0.1");
    EXPECT_NE(a.str(), "::1");
  }
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("web-1", "web", {{"10.244.0.2", "node-b"}}));
  ASSERT_EQ(path->apply(state.apply(tracker.take())), "");
  auto r = topo::request("", "203.0.113.1", kNodePort, SOCK_STREAM, 50900);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.from, fmt::format("203.0.113.1:{}", kNodePort));
  EXPECT_EQ(r.text.rfind("10.244.0.2:8080 203.0.113.1:", 0), 0u) << r.text;
}

// --- restarts: the packet path pinned and adopted ----------------------------------------

// The id of the object pinned at path and, for a link, the id of the program it runs.
// Per-interface packet counters of the calling process's namespace (/proc/net/dev is per
// namespace; /sys/class/net is the mount's).
uint64_t rxPackets(const std::string& dev, const std::string& ns = "") {
  const std::string cmd = (ns.empty() ? "" : "ip netns exec " + ns + " ") + "cat /proc/net/dev";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return 0;
  char line[512];
  uint64_t rx = 0;
  while (fgets(line, sizeof(line), f)) {
    std::string l = line;
    const auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    std::string name = l.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != dev) continue;
    unsigned long long bytes = 0, packets = 0;
    std::sscanf(l.c_str() + colon + 1, "%llu %llu", &bytes, &packets);
    rx = packets;
  }
  pclose(f);
  return rx;
}

// Direct server return with real traffic between two nodes. The test's own namespace is node A,
// which takes the client's flows to its NodePort in; node B holds the backend pod and answers the
// client itself over a link of its own:
//   client c0 198.18.1.2 -- d0 198.18.1.1 [A] d1 10.1.0.1 -- w1 10.1.0.2 [B] p0 10.244.9.1 -- pod
//   client c1 198.18.2.2 ---------------------------------- w0 198.18.2.1 [B]       e0 10.244.9.2
// A routes the pod network to B; B routes the client back over its own link. Each node runs its
// own copy of the programs (maps of its own): A has the frontend with NP_F_SNAT | NP_F_DSR, B no
// frontend at all. The client must get its answer from A's address and NodePort, the backend must
// see the client's own address, and no reply may enter A.
TEST(NodePortDsrTraffic, TheBackendsNodeAnswersTheClientDirectly) {
  const int pid = getpid();
  const std::string c = fmt::format("spnp-dc-{}", pid), b = fmt::format("spnp-db-{}", pid),
                    pod = fmt::format("spnp-dp-{}", pid);
  const std::string setup = fmt::format(
      "set -e; for n in {c} {b} {p}; do ip netns add $n; ip -n $n link set lo up; done;"
      // IPv4 only: no neighbour discovery or MLD may enter A while replies are counted.
      "ip netns exec {b} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
      "net.ipv6.conf.default.disable_ipv6=1;"
      "ip link add d0 type veth peer name c0 netns {c};"
      "ip link add d1 type veth peer name w1 netns {b};"
      "sysctl -qw net.ipv6.conf.d1.disable_ipv6=1;"
      "ip -n {b} link add w0 type veth peer name c1 netns {c};"
      "ip -n {b} link add p0 type veth peer name e0 netns {p};"
      "ip addr add 198.18.1.1/24 dev d0; ip link set d0 up;"
      "ip addr add 10.1.0.1/24 dev d1; ip link set d1 up;"
      "ip route add 10.244.9.0/24 via 10.1.0.2;"
      "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0;"
      "ip -n {c} addr add 198.18.1.2/24 dev c0; ip -n {c} link set c0 up;"
      "ip -n {c} addr add 198.18.2.2/24 dev c1; ip -n {c} link set c1 up;"
      "ip -n {c} route add default via 198.18.1.1;"
      "ip netns exec {c} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.c1.rp_filter=0;"
      "ip -n {b} addr add 10.1.0.2/24 dev w1; ip -n {b} link set w1 up;"
      "ip -n {b} addr add 198.18.2.1/24 dev w0; ip -n {b} link set w0 up;"
      "ip -n {b} addr add 10.244.9.1/24 dev p0; ip -n {b} link set p0 up;"
      "ip -n {b} route add 198.18.1.0/24 via 198.18.2.2;"
      "ip netns exec {b} sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 "
      "net.ipv4.conf.w1.rp_filter=0;"
      "ip -n {p} addr add 10.244.9.2/24 dev e0; ip -n {p} link set e0 up;"
      "ip -n {p} route add default via 10.244.9.1;"
      // A knows B's address for good: no ARP answer from B may enter A while replies are counted.
      "m=$(ip -n {b} -o link show w1 | sed -n 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/p');"
      "ip neigh replace 10.1.0.2 lladdr $m dev d1 nud permanent",
      fmt::arg("c", c), fmt::arg("b", b), fmt::arg("p", pod));
  struct Cleanup {
    std::string cmd;
    ~Cleanup() { topo::sh(cmd); }
  } cleanup{
      fmt::format("ip link del d0 2>/dev/null; ip link del d1 2>/dev/null; "
                  "ip route del 10.244.9.0/24 2>/dev/null; ip netns del {} 2>/dev/null; "
                  "ip netns del {} 2>/dev/null; ip netns del {} 2>/dev/null",
                  c, b, pod)};
  ASSERT_EQ(topo::sh(setup), 0) << "building the two-node topology";
  const pid_t server = topo::startServer(pod, {"10.244.9.2"}, 8080);
  ASSERT_GT(server, 0);
  struct Stop {
    pid_t p;
    ~Stop() { topo::stopServer(p); }
  } stop{server};

  Node nodeA, nodeB(100);
  snatTo(nodeA.progs(), "198.18.1.1", 61999);
  for (uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
    nodeA.service(feKey("198.18.1.1", kNodePort, proto), {be("10.244.9.2", 8080)},
                  NP_F_SNAT | NP_F_DSR, proto == IPPROTO_TCP ? 1 : 2);
  }
  nodeA.progs().attach(static_cast<int>(if_nametoindex("d0")));
  {
    // B's interfaces are B's: attach from inside its namespace (tcx links hold the device).
    const int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_TRUE(topo::enter(b));
    for (const char* dev : {"w1", "p0"})
      nodeB.progs().attach(static_cast<int>(if_nametoindex(dev)));
    ASSERT_EQ(setns(self, CLONE_NEWNET), 0);
    close(self);
  }

  const uint64_t aBefore = rxPackets("d1"), cBefore = rxPackets("c1", c),
                 inBefore = rxPackets("d0");
  int answers = 0;
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    for (uint16_t i = 0; i < 5; ++i) {
      const uint16_t cport = static_cast<uint16_t>(51000 + i + (type == SOCK_DGRAM ? 50 : 0));
      auto r = topo::request(c, "198.18.1.1", kNodePort, type, cport);
      ASSERT_EQ(r.error, "") << (type == SOCK_STREAM ? "TCP" : "UDP") << " from port " << cport;
      EXPECT_EQ(r.from, fmt::format("198.18.1.1:{}", kNodePort)) << "the frontend answers";
      EXPECT_EQ(r.text, fmt::format("10.244.9.2:8080 198.18.1.2:{}", cport))
          << "the backend sees the client's own address";
      ++answers;
    }
  }
  const uint64_t aAfter = rxPackets("d1"), cAfter = rxPackets("c1", c);
  EXPECT_GE(rxPackets("d0") - inBefore, static_cast<uint64_t>(answers))
      << "the requests entered A (the counters are read where they are kept)";
  EXPECT_EQ(aAfter - aBefore, 0u) << "no reply came back through node A";
  EXPECT_GE(cAfter - cBefore, static_cast<uint64_t>(answers))
      << "every answer reached the client over node B's own link";
}

std::pair<uint32_t, uint32_t> pinnedIds(const std::string& path, bool isLink) {
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return {0, 0};
  std::pair<uint32_t, uint32_t> out;
  if (isLink) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out = {info.id, info.prog_id};
  } else {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out = {info.id, info.key_size};
  }
  close(fd);
  return out;
}

uint32_t progId(int fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

// Programs at tcx ingress (46) or egress (47) of the interface (the kernel ABI values: this
// system's headers predate tcx), and whether it has an XDP program in the driver.
uint32_t tcxPrograms(int ifindex, int attachType) {
  uint32_t ids[8], count = 8;
  if (bpf_prog_query(ifindex, static_cast<bpf_attach_type>(attachType), 0, nullptr, ids, &count) !=
      0)
    return 0;
  return count;
}
bool hasXdp(int ifindex) {
  uint32_t id = 0;
  return bpf_xdp_query_id(ifindex, XDP_FLAGS_DRV_MODE, &id) == 0 && id != 0;
}

// A restart with --bpf-pin-dir: SIGTERM (the path destroyed) leaves the programs attached and
// answering; the next run swaps its programs into the same links and adopts the maps, so an
// established UDP flow keeps its backend (the Maglev table over the new backend set would send
// it elsewhere) and its SNAT port; --devices shrinking detaches from the interface left out; a
// pinned map whose layout changed is created anew; removePinned (sliceproxy cleanup) leaves no
// pin and no program on the interfaces.
TEST_F(NodePortTraffic, RestartAdoptsThePinnedPacketPathWithoutAGap) {
  ASSERT_FALSE(gPinDir.empty());
  NetworkConfig net;
  net.devices = {"n0", "n1"};
  net.bpfPinDir = gPinDir;
  const int n0 = static_cast<int>(if_nametoindex("n0"));
  const int n1 = static_cast<int>(if_nametoindex("n1"));
  ChangeTracker tracker{"node-a", {}};
  tracker.synced();
  NodeState state{"node-a"};
  SvcSpec s;
  s.name = "web";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::UDP, 80, kNodePort, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(
      slice("web-1", "web", {{"10.244.0.2", "node-b"}}, {{"http", Protocol::UDP, 8080}}));
  SvcSpec doomed = s;  // deleted while sliceproxy is down
  doomed.name = "doomed";
  doomed.clusterIPs = {"10.96.0.99"};
  doomed.ports = {{"http", Protocol::UDP, 80, kNodePort + 1, {8080, ""}}};
  tracker.upsertService(service(doomed));
  tracker.upsertSlice(
      slice("doomed-1", "doomed", {{"10.244.0.3", "node-b"}}, {{"http", Protocol::UDP, 8080}}));
  // A client port whose flow the table over both backends gives to 10.244.0.3.
  std::vector<EndpointKey> both = backends();
  const uint32_t size = maglevTableSizeFor(net.maglevTableSize, both.size());
  const auto table = maglevTable(both, size);
  auto pick = [&](uint16_t cport) {
    return both[table[flowHash({"203.0.113.2", "203.0.113.1", cport, kNodePort, IPPROTO_UDP}) %
                      size]];
  };
  std::vector<uint16_t> toThree;
  for (uint16_t p = 51000; p < 51200 && toThree.size() < 2; ++p) {
    if (pick(p) == both[1]) toThree.push_back(p);
  }
  ASSERT_EQ(toThree.size(), 2u);
  const uint16_t established = toThree[0], fresh = toThree[1];

  auto path = std::make_unique<backends::ebpf::NodePortPath>(net);
  EXPECT_EQ(path->xdp(), (std::vector<std::string>{"n0", "n1"}));
  state.apply(tracker.take(), false);
  ASSERT_EQ(path->fullSync(state.state()), "");
  auto first = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, established);
  ASSERT_EQ(first.error, "");
  ASSERT_EQ(first.text.rfind("10.244.0.2:8080 203.0.113.1:", 0), 0u) << first.text;
  const std::set<std::string> links = npPins("links");
  EXPECT_EQ(links, (std::set<std::string>{
                       fmt::format("np_ingress_{}", n0), fmt::format("np_egress_{}", n0),
                       fmt::format("np_xdp_{}", n0), fmt::format("np_ingress_{}", n1),
                       fmt::format("np_egress_{}", n1), fmt::format("np_xdp_{}", n1)}));
  std::map<std::string, uint32_t> linkIds;
  for (const auto& l : links) linkIds[l] = pinnedIds(gPinDir + "/links/" + l, true).first;
  const uint32_t ctMap = pinnedIds(gPinDir + "/maps/np_ct", false).first;
  ASSERT_NE(ctMap, 0u) << "np_ct pinned";

  // SIGTERM: the process goes, the data path stays and answers.
  path.reset();
  EXPECT_EQ(tcxPrograms(n0, 46), 1u);
  EXPECT_TRUE(hasXdp(n0));
  auto between = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 51500);
  EXPECT_EQ(between.error, "") << "answered while no sliceproxy runs";

  // The next run, with one more endpoint: same links, now running its programs; same maps.
  tracker.deleteService({"default", "doomed"});
  tracker.upsertSlice(slice("web-1", "web", {{"10.244.0.2", "node-b"}, {"10.244.0.3", "node-b"}},
                            {{"http", Protocol::UDP, 8080}}));
  path = std::make_unique<backends::ebpf::NodePortPath>(net);
  EXPECT_EQ(path->programs().updatedLinks(), 6);
  EXPECT_TRUE(path->programs().recreatedMaps().empty());
  EXPECT_FALSE(path->programs().adoptedMaps().empty());
  for (const auto& l : links) {
    const auto [id, prog] = pinnedIds(gPinDir + "/links/" + l, true);
    EXPECT_EQ(id, linkIds[l]) << l << ": the same link";
    const int want = l.rfind("np_ingress", 0) == 0  ? path->programs().ingressFd()
                     : l.rfind("np_egress", 0) == 0 ? path->programs().egressFd()
                                                    : path->programs().xdpFd();
    EXPECT_EQ(prog, progId(want)) << l << ": runs the new run's program";
  }
  EXPECT_EQ(tcxPrograms(n0, 46), 1u) << "one program at n0's ingress, not two";
  EXPECT_EQ(pinnedIds(gPinDir + "/maps/np_ct", false).first, ctMap) << "np_ct adopted";
  auto beforeSync = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 51501);
  EXPECT_EQ(beforeSync.error, "") << "the previous run's entries serve until the first sync";
  state.apply(tracker.take(), false);
  ASSERT_EQ(path->fullSync(state.state()), "");
  auto again = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, established);
  ASSERT_EQ(again.error, "");
  EXPECT_EQ(again.text, first.text)
      << "the established flow keeps its backend and SNAT port across the restart";
  auto other = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, fresh);
  ASSERT_EQ(other.error, "");
  EXPECT_EQ(other.text.rfind("10.244.0.3:8080 203.0.113.1:", 0), 0u)
      << "a new flow follows the new table: " << other.text;
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort + 1, SOCK_DGRAM, 51503).error,
            "ECONNREFUSED")
      << "the service deleted while sliceproxy was down is gone after the first sync";
  // What the previous run wrote and this one did not take over is gone: web's two groups
  // (NodePort, ClusterIP from outside) x two backends, 10.244.0.2 keeping its ids.
  const int backendsMap = bpf_obj_get((gPinDir + "/maps/np_backends").c_str());
  ASSERT_GE(backendsMap, 0);
  uint32_t key = 0, next = 0, entries = 0;
  for (const uint32_t* prev = nullptr; bpf_map_get_next_key(backendsMap, prev, &next) == 0;
       prev = &key) {
    key = next;
    ++entries;
  }
  close(backendsMap);
  EXPECT_EQ(entries, 4u);

  // --devices without n1: the next run detaches from it.
  path.reset();
  net.devices = {"n0"};
  path = std::make_unique<backends::ebpf::NodePortPath>(net);
  EXPECT_EQ(tcxPrograms(n1, 46) + tcxPrograms(n1, 47), 0u) << "n1 is no device any more";
  EXPECT_FALSE(hasXdp(n1));
  EXPECT_EQ(tcxPrograms(n0, 46), 1u);
  EXPECT_EQ(npPins("links").count(fmt::format("np_ingress_{}", n1)), 0u);

  // A map whose layout changed between versions: created anew, said so; the others adopted.
  path.reset();
  const std::string aff = gPinDir + "/maps/np_affinity";
  ASSERT_EQ(unlink(aff.c_str()), 0);
  const int old = bpf_map_create(BPF_MAP_TYPE_LRU_HASH, "np_affinity", 4, 4, 16, nullptr);
  ASSERT_GE(old, 0);
  ASSERT_EQ(bpf_obj_pin(old, aff.c_str()), 0);
  close(old);
  net.devices = {"n0", "n1"};
  path = std::make_unique<backends::ebpf::NodePortPath>(net);
  ASSERT_EQ(path->programs().recreatedMaps().size(), 1u);
  EXPECT_EQ(path->programs().recreatedMaps()[0].rfind("np_affinity (type", 0), 0u)
      << path->programs().recreatedMaps()[0];
  EXPECT_EQ(pinnedIds(aff, false).second, sizeof(np_aff_key)) << "this version's layout";
  ASSERT_EQ(path->fullSync(state.state()), "");
  auto third = topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, established);
  ASSERT_EQ(third.error, "");
  EXPECT_EQ(third.text, first.text);

  // sliceproxy cleanup: nothing pinned, nothing attached.
  path.reset();
  EXPECT_GT(NodePortPrograms::removePinned(gPinDir), 0u);
  EXPECT_TRUE(npPins("links").empty());
  EXPECT_TRUE(npPins("maps").empty());
  for (int ifindex : {n0, n1}) {
    EXPECT_EQ(tcxPrograms(ifindex, 46) + tcxPrograms(ifindex, 47), 0u) << ifindex;
    EXPECT_FALSE(hasXdp(ifindex)) << ifindex;
  }
  EXPECT_EQ(topo::request(gTopo.client, "203.0.113.1", kNodePort, SOCK_DGRAM, 51502).error,
            "ECONNREFUSED");
}

// The program of the netlink tc filter the packet path uses (handle 1, priority 0xc001) at the
// hook, 0 when there is none.
uint32_t tcFilterProgram(int ifindex, bpf_tc_attach_point point) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 0xc001);
  return bpf_tc_query(&hook, &opts) == 0 ? opts.prog_id : 0;
}

// Kernels before 6.6 (no tcx): the tc programs are netlink filters, which outlive the process
// by themselves. A new run replaces them in place, detaches from interfaces it no longer
// attaches to, removePinned finds them on the interfaces; and a tcx run replaces a filter an
// earlier version left (one program per hook, never two).
// An older run whose packet path had no prefilter maps (np_fe_ports, np_rnat_sources): the
// new run fills them from the adopted frontends and reverse entries as it loads, before a link
// runs its programs, so neither the frontends nor the replies of flows made before it pass by.
TEST_F(NodePortTraffic, PrefiltersAreSeededFromAnOlderRunsMaps) {
  ASSERT_FALSE(gPinDir.empty());
  backends::ebpf::NodePortOptions opts;
  opts.pinDir = gPinDir;
  const np_fe_key fe = feKey(kNode, kNodePort, IPPROTO_TCP);
  np_rnat_key rk{};
  const auto backend = bytes16("10.244.0.7");
  std::memcpy(rk.backend, backend.data(), 16);
  rk.family = NP_FAMILY_V4;
  {
    NodePortPrograms old(opts);
    old.setFrontend(fe, {1, 0, 0, 0, 1, 0});
    np_rnat_value rv{};
    ASSERT_EQ(bpf_map_update_elem(old.rnatFd(), &rk, &rv, BPF_ANY), 0);
  }
  // As an older version left them: no prefilter maps pinned.
  for (const char* m : {"np_fe_ports", "np_rnat_sources"}) {
    ASSERT_EQ(unlink((gPinDir + "/maps/" + m).c_str()), 0) << m;
  }
  NodePortPrograms next(opts);
  const uint32_t word = kNodePort >> 5;
  uint32_t bits = 0;
  ASSERT_EQ(bpf_map_lookup_elem(next.frontendPortsFd(), &word, &bits), 0);
  EXPECT_NE(bits & (1u << (kNodePort & 31)), 0u) << "the adopted frontend's port has no bit";
  const uint32_t src = NodePortPrograms::rnatSourceKey(backend.data(), NP_FAMILY_V4);
  uint8_t one = 0;
  EXPECT_EQ(bpf_map_lookup_elem(next.rnatSourcesFd(), &src, &one), 0)
      << "the adopted reverse entry's backend is not a reply source";
  EXPECT_GT(NodePortPrograms::removePinned(gPinDir), 0u);
}

TEST_F(NodePortTraffic, NetlinkFiltersAreReplacedInPlaceAndFoundByCleanup) {
  ASSERT_FALSE(gPinDir.empty());
  const int n0 = static_cast<int>(if_nametoindex("n0"));
  const int n1 = static_cast<int>(if_nametoindex("n1"));
  backends::ebpf::NodePortOptions opts;
  opts.pinDir = gPinDir;
  opts.tcx = false;
  auto first = std::make_unique<NodePortPrograms>(opts);
  first->attach(n0);
  first->attach(n1);
  EXPECT_STREQ(first->tcMode(), "tc filter");
  const uint32_t firstIngress = progId(first->ingressFd());
  first.reset();
  EXPECT_EQ(tcFilterProgram(n0, BPF_TC_INGRESS), firstIngress) << "the filter outlives the run";
  auto second = std::make_unique<NodePortPrograms>(opts);
  second->attach(n0);
  EXPECT_EQ(tcFilterProgram(n0, BPF_TC_INGRESS), progId(second->ingressFd())) << "replaced";
  EXPECT_EQ(tcFilterProgram(n0, BPF_TC_EGRESS), progId(second->egressFd()));
  EXPECT_EQ(second->detachOthers(), 2) << "n1's two filters: n1 is no device of this run";
  EXPECT_EQ(tcFilterProgram(n1, BPF_TC_INGRESS), 0u);
  second.reset();
  // An upgrade to tcx: the filter left behind goes once the link is in place.
  opts.tcx = true;
  auto third = std::make_unique<NodePortPrograms>(opts);
  third->attach(n0);
  EXPECT_STREQ(third->tcMode(), "tcx");
  EXPECT_EQ(tcFilterProgram(n0, BPF_TC_INGRESS), 0u);
  EXPECT_EQ(tcxPrograms(n0, 46), 1u);
  third.reset();
  EXPECT_GT(NodePortPrograms::removePinned(gPinDir), 0u);
  EXPECT_EQ(tcxPrograms(n0, 46) + tcxPrograms(n0, 47), 0u);
  // And cleanup after a netlink run: the filters are found on the interfaces.
  opts.tcx = false;
  auto fourth = std::make_unique<NodePortPrograms>(opts);
  fourth->attach(n0);
  fourth.reset();
  EXPECT_EQ(NodePortPrograms::removePinned(gPinDir), 2u + 14u) << "two filters, fourteen maps";
  EXPECT_EQ(tcFilterProgram(n0, BPF_TC_INGRESS) + tcFilterProgram(n0, BPF_TC_EGRESS), 0u);
  EXPECT_TRUE(npPins("maps").empty());
}

}  // namespace
}  // namespace sliceproxy::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Fails loudly rather than skipping: this suite exists to run against the real kernel. Its
  // own network namespace, so nothing here can touch the machine's interfaces.
  if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) {
    std::perror("kernel tests need root: unshare(CLONE_NEWNET | CLONE_NEWNS)");
    return 1;
  }
  // Pins go to a private bpf filesystem, never the machine's.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    std::perror("making mounts private");
    return 1;
  }
  char dir[] = "/tmp/sliceproxy-nodeport-XXXXXX";
  if (!mkdtemp(dir) || mount("bpf", dir, "bpf", 0, nullptr) != 0) {
    std::perror("mounting a private bpf filesystem");
    return 1;
  }
  sliceproxy::testing::gPinDir = std::string(dir) + "/sliceproxy";
  const int rc = RUN_ALL_TESTS();
  umount2(dir, MNT_DETACH);
  rmdir(dir);
  return rc;
}
