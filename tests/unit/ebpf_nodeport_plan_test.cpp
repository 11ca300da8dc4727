// What the packet-path load balancer holds for a service port (backends/ebpf/nodeport_plan.*):
// the proxier's node-local view, encoded. Every case goes through the real tracker and
// NodeState, so the traffic-policy decisions are the proxier's own.

#include "backends/ebpf/nodeport_plan.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

using backends::ebpf::planNodePort;

std::string feStr(const np_fe_key& k) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(k.family == NP_FAMILY_V4 ? AF_INET : AF_INET6, k.addr, buf, sizeof(buf));
  return fmt::format("{}:{}/{}", buf, ntohs(k.port), k.proto == IPPROTO_TCP ? "tcp" : "udp");
}

class NodePortPlanTest : public ProxierFixture {
 protected:
  std::vector<std::string> frontends(const backends::ebpf::NodePortPlan& p) {
    std::vector<std::string> out;
    for (auto& k : p.frontends) out.push_back(feStr(k));
    return out;
  }
  std::vector<std::string> backendsOf(const backends::ebpf::NodePortPlan& p) {
    std::vector<std::string> out;
    for (auto& e : p.backends) out.push_back(endpointString(e));
    return out;
  }
  void nodePortService(TrafficPolicy etp, std::vector<Ep> eps, Protocol proto = Protocol::TCP) {
    SvcSpec s;
    s.type = ServiceType::LoadBalancer;
    s.ports = {{"http", proto, 80, 30080, {8080, ""}}};
    s.etp = etp;
    s.externalIPs = {"198.18.0.5"};
    s.lbIPs = {"198.18.0.6", "fd00::6"};
    tracker.upsertService(service(s));
    tracker.upsertSlice(slice("svc-1", "svc", std::move(eps), {{"http", proto, 8080}}));
    sync();
  }
  const std::vector<IpAddr> nodeIPs = {ip("192.168.0.10"), ip("192.168.1.10"), ip("fd00::10")};
};

TEST_F(NodePortPlanTest, ClusterPolicyServesEveryEndpointAndSnats) {
  nodePortService(TrafficPolicy::Cluster, {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}});
  auto p = planNodePort(*view(), nodeIPs);
  EXPECT_EQ(frontends(p), (Strings{"192.168.0.10:30080/tcp", "192.168.1.10:30080/tcp",
                                   "198.18.0.5:80/tcp", "198.18.0.6:80/tcp"}))
      << "node addresses x nodePort, externalIPs and LB addresses x port, this family only";
  EXPECT_EQ(backendsOf(p), (Strings{"10.244.1.1:8080", "10.244.2.1:8080"}));
  EXPECT_EQ(p.flags, NP_F_SNAT);
}

TEST_F(NodePortPlanTest, DirectServerReturnMarksClusterPolicyFrontendsOnly) {
  nodePortService(TrafficPolicy::Cluster, {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}});
  EXPECT_EQ(planNodePort(*view(), nodeIPs, true).flags, NP_F_SNAT | NP_F_DSR)
      << "SNAT stays for the node's own flows; flows from outside go DSR";
  EXPECT_EQ(backends::ebpf::planClusterIpFromOutside(*view()).flags,
            NP_F_SNAT | NP_F_POD_KEEPS_SOURCE)
      << "a ClusterIP reached from outside is always SNATed, this node's pods only on hairpin";
  nodePortService(TrafficPolicy::Local, {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}});
  EXPECT_EQ(planNodePort(*view(), nodeIPs, true).flags, 0u) << "eTP Local keeps the client anyway";
  nodePortService(TrafficPolicy::Cluster, {});
  EXPECT_EQ(planNodePort(*view(), nodeIPs, true).flags, NP_F_REJECT);
}

TEST_F(NodePortPlanTest, LocalPolicyServesLocalEndpointsAndKeepsTheClientAddress) {
  nodePortService(TrafficPolicy::Local, {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}});
  auto p = planNodePort(*view(), nodeIPs);
  EXPECT_EQ(backendsOf(p), (Strings{"10.244.1.1:8080"}));
  EXPECT_EQ(p.flags, 0u);
}

TEST_F(NodePortPlanTest, LocalPolicyWithoutLocalEndpointsDrops) {
  nodePortService(TrafficPolicy::Local, {{"10.244.2.1", "node-b"}});
  auto p = planNodePort(*view(), nodeIPs);
  EXPECT_TRUE(p.backends.empty());
  EXPECT_EQ(p.flags, NP_F_DROP);
}

TEST_F(NodePortPlanTest, NoEndpointsAnywhereRejects) {
  nodePortService(TrafficPolicy::Cluster, {});
  auto p = planNodePort(*view(), nodeIPs);
  EXPECT_EQ(p.flags, NP_F_REJECT);
  EXPECT_EQ(p.frontends.size(), 4u);
}

TEST_F(NodePortPlanTest, UdpPortsGetUdpFrontendsAndSctpNone) {
  nodePortService(TrafficPolicy::Cluster, {{"10.244.1.1", "node-a"}}, Protocol::UDP);
  auto p = planNodePort(*view("svc", "http", IpFamily::V4, Protocol::UDP), {ip("192.168.0.10")});
  EXPECT_EQ(frontends(p).front(), "192.168.0.10:30080/udp");
  SvcSpec s;
  s.name = "sctp";
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::SCTP, 80, 30081, {8080, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(
      slice("sctp-1", "sctp", {{"10.244.1.1", "node-a"}}, {{"http", Protocol::SCTP, 8080}}));
  sync();
  auto* v = view("sctp", "http", IpFamily::V4, Protocol::SCTP);
  ASSERT_NE(v, nullptr);
  EXPECT_TRUE(planNodePort(*v, nodeIPs).frontends.empty());
}

TEST_F(NodePortPlanTest, SourceRangesGuardTheLoadBalancerAddressesOnly) {
  SvcSpec s;
  s.type = ServiceType::LoadBalancer;
  s.ports = {{"http", Protocol::TCP, 80, 30080, {8080, ""}}};
  s.externalIPs = {"198.18.0.5"};
  s.lbIPs = {"198.18.0.6", "fd00::6"};
  auto svc = std::const_pointer_cast<Service>(service(s));
  svc->loadBalancerSourceRanges = {*Cidr::parse("203.0.113.0/24"), *Cidr::parse("2001:db8::/32")};
  tracker.upsertService(svc);
  tracker.upsertSlice(slice("svc-1", "svc", {{"10.244.1.1", "node-a"}}));
  sync();
  auto p = planNodePort(*view(), nodeIPs);
  ASSERT_EQ(p.rangedFrontends.size(), 1u);
  EXPECT_EQ(feStr(p.rangedFrontends[0]), "198.18.0.6:80/tcp");
  ASSERT_EQ(p.sourceRanges.size(), 1u) << "this family's ranges only";
  EXPECT_EQ(p.sourceRanges[0].str(), "203.0.113.0/24");
  const np_range_key k = backends::ebpf::rangeKey(7, p.sourceRanges[0]);
  EXPECT_EQ(k.prefixlen, 64u + 24u);
  EXPECT_EQ(k.ranges_id, 7u);
}

TEST_F(NodePortPlanTest, ClusterIpServiceHasNoFrontendFromOutside) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("svc-1", "svc", {{"10.244.1.1", "node-a"}}));
  sync();
  const auto p = planNodePort(*view(), nodeIPs);
  EXPECT_TRUE(p.frontends.empty());
  EXPECT_TRUE(p.backends.empty()) << "nothing to plan: its endpoints are not even read";
}

// A packet from outside to a ClusterIP: the internal set, masqueraded.
TEST_F(NodePortPlanTest, ClusterIpFromOutsideUsesTheInternalSetAndSnats) {
  SvcSpec s;
  s.itp = TrafficPolicy::Local;
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("svc-1", "svc", {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}}));
  sync();
  auto p = backends::ebpf::planClusterIpFromOutside(*view());
  EXPECT_EQ(frontends(p), (Strings{"10.96.0.1:80/tcp"}));
  EXPECT_EQ(backendsOf(p), (Strings{"10.244.1.1:8080"})) << "iTP Local: the local endpoint";
  EXPECT_EQ(p.flags, NP_F_SNAT | NP_F_POD_KEEPS_SOURCE);
  EXPECT_EQ(backends::ebpf::planClusterIpFromOutside(*view(), false).flags, NP_F_SNAT)
      << "--masquerade-all: pods too";
  tracker.upsertSlice(slice("svc-1", "svc", {{"10.244.2.1", "node-b"}}));
  sync();
  EXPECT_EQ(backends::ebpf::planClusterIpFromOutside(*view()).flags, NP_F_DROP);
  tracker.upsertSlice(slice("svc-1", "svc", {}));
  sync();
  EXPECT_EQ(backends::ebpf::planClusterIpFromOutside(*view()).flags, NP_F_REJECT);
}

}  // namespace
}  // namespace sliceproxy::testing
