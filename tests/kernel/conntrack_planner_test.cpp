// The planner alone: which selectors a service port's transition yields. No kernel involved.

#include <gtest/gtest.h>
#include <netinet/in.h>

#include "../unit/builders.h"
#include "conntrack/dump_plan.h"
#include "conntrack/frontends.h"
#include "conntrack/planner.h"

namespace sliceproxy::testing {
namespace {

using conntrack::EndpointTransition;
using conntrack::FlowSelector;
using conntrack::PortTransition;
using conntrack::StaleReason;

ServicePortInfoPtr info(const SvcSpec& s) {
  return buildServicePortInfos(*service(s)).front();
}

SvcSpec udp() {
  SvcSpec s;
  s.type = ServiceType::LoadBalancer;
  s.clusterIPs = {"10.96.0.10"};
  s.ports = {{"dns", Protocol::UDP, 53, 30053, {5353, ""}}};
  s.externalIPs = {"192.0.2.10"};
  s.lbIPs = {"203.0.113.10"};
  return s;
}

std::vector<FlowSelector> plan(const PortTransition& t) {
  std::vector<FlowSelector> out;
  conntrack::planTransition(t, out);
  return out;
}

std::vector<std::string> describe(const std::vector<FlowSelector>& sels) {
  std::vector<std::string> out;
  for (const auto& s : sels) out.push_back(s.str().substr(0, s.str().find(" (")));
  return out;
}

EndpointKey ep(const char* a) {
  return EndpointKey{ip(a), 5353};
}

TEST(ConntrackPlanner, FrontendsOfALoadBalancerPort) {
  auto f = conntrack::frontendsOf(*info(udp()));
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0].kind, conntrack::FrontendKind::Internal);
  EXPECT_TRUE(f[3].nodePort);
  EXPECT_EQ(f[3].port, 30053);
}

TEST(ConntrackPlanner, EndpointGoneFromEveryFrontendItServed) {
  auto i = info(udp());
  std::vector<EndpointTransition> eps = {{ep("10.244.1.1"), epset::kCluster, 0},
                                         {ep("10.244.1.2"), 0, epset::kCluster}};
  auto sels = plan({i, i, 2, 0, 2, 0, eps});
  EXPECT_EQ(describe(sels), (std::vector<std::string>{
                                "UDP to 10.96.0.10:53 answered by 10.244.1.1:5353",
                                "UDP to 192.0.2.10:53 answered by 10.244.1.1:5353",
                                "UDP to 203.0.113.10:53 answered by 10.244.1.1:5353",
                                "UDP to any local address:30053 answered by 10.244.1.1:5353"}));
  for (const auto& s : sels) EXPECT_EQ(s.proto, IPPROTO_UDP);
}

TEST(ConntrackPlanner, ZeroToNMakesEveryFrontendsUntranslatedFlowsStale) {
  auto i = info(udp());
  std::vector<EndpointTransition> eps = {{ep("10.244.1.1"), 0, epset::kCluster}};
  auto sels = plan({i, i, 0, 0, 1, 0, eps});
  ASSERT_EQ(sels.size(), 4u);
  for (const auto& s : sels) EXPECT_EQ(s.reason, StaleReason::Untranslated) << s.str();
  // Created with endpoints: the same.
  EXPECT_EQ(plan({nullptr, i, 0, 0, 1, 0, eps}).size(), 4u);
  // Created without: nothing to do.
  EXPECT_TRUE(plan({nullptr, i, 0, 0, 0, 0, {}}).empty());
}

TEST(ConntrackPlanner, NToZeroIsOnlyEndpointsGone) {
  auto i = info(udp());
  std::vector<EndpointTransition> eps = {{ep("10.244.1.1"), epset::kCluster, 0}};
  auto sels = plan({i, i, 1, 0, 0, 0, eps});
  ASSERT_EQ(sels.size(), 4u);
  for (const auto& s : sels) EXPECT_EQ(s.reason, StaleReason::EndpointGone);
}

TEST(ConntrackPlanner, ChangedNodePortRemovesTheOldAndActivatesTheNew) {
  auto before = info(udp());
  SvcSpec s = udp();
  s.ports[0].nodePort = 30054;
  auto after = info(s);
  auto sels = plan({before, after, 1, 0, 1, 0, {}});
  EXPECT_EQ(describe(sels),
            (std::vector<std::string>{"UDP to any local address:30053 translated",
                                      "UDP to any local address:30054 never translated"}));
}

TEST(ConntrackPlanner, DeletedPortRemovesEveryFrontend) {
  auto sels = plan({info(udp()), nullptr, 3, 0, 0, 0, {}});
  ASSERT_EQ(sels.size(), 4u);
  for (const auto& s : sels) EXPECT_EQ(s.reason, StaleReason::FrontendRemoved);
}

TEST(ConntrackPlanner, ExternalTrafficPolicyLocalServesExternalFrontendsFromBothSets) {
  SvcSpec s = udp();
  s.etp = TrafficPolicy::Local;
  auto i = info(s);
  EXPECT_EQ(conntrack::servingSets(*i, conntrack::FrontendKind::External),
            epset::kCluster | epset::kLocal);
  EXPECT_EQ(conntrack::servingSets(*i, conntrack::FrontendKind::Internal), epset::kCluster);
  // A local endpoint leaves the local set only (it is not ready, the cluster set falls back
  // to serving+terminating including it): nothing is stale, it still serves every frontend.
  std::vector<EndpointTransition> eps = {
      {ep("10.244.1.1"), epset::kCluster | epset::kLocal, epset::kCluster}};
  EXPECT_TRUE(plan({i, i, 1, 1, 1, 0, eps}).empty());
}

TEST(ConntrackPlanner, PolicyChangeIsDetected) {
  SvcSpec s = udp();
  s.itp = TrafficPolicy::Local;
  EXPECT_TRUE(conntrack::servingChanged(*info(udp()), *info(s)));
  SvcSpec t = udp();
  t.externalIPs = {"192.0.2.11"};
  EXPECT_FALSE(conntrack::servingChanged(*info(udp()), *info(t)));
}

}  // namespace
}  // namespace sliceproxy::testing

namespace sliceproxy::testing {
namespace {

TEST(ConntrackDumpPlan, OneEndpointGoneFromManyFrontendsIsOneWalkByReplySource) {
  auto i = info(udp());
  std::vector<EndpointTransition> eps = {{ep("10.244.1.1"), epset::kCluster, 0}};
  auto sels = plan({i, i, 2, 0, 1, 0, eps});
  ASSERT_EQ(sels.size(), 4u);
  auto walks = conntrack::planDumps(sels, 8);
  ASSERT_EQ(walks.size(), 1u);
  EXPECT_EQ(walks[0].str(), "IPv4 UDP answered by 10.244.1.1:5353");
}

TEST(ConntrackDumpPlan, ClusterIpOnlyServiceIsNarrowedOnBothTuples) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.10"};
  s.ports = {{"dns", Protocol::UDP, 53, 0, {5353, ""}}};
  auto i = info(s);
  std::vector<EndpointTransition> eps = {{ep("10.244.1.1"), epset::kCluster, 0}};
  auto walks = conntrack::planDumps(plan({i, i, 2, 0, 1, 0, eps}), 8);
  ASSERT_EQ(walks.size(), 1u);
  EXPECT_EQ(walks[0].str(), "IPv4 UDP to 10.96.0.10:53 answered by 10.244.1.1:5353");
}

TEST(ConntrackDumpPlan, ManyEndpointsOfOneFrontendAreOneWalkByDestination) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.10"};
  s.ports = {{"dns", Protocol::UDP, 53, 0, {5353, ""}}};
  auto i = info(s);
  std::vector<EndpointTransition> eps;
  for (int n = 1; n <= 5; ++n) {
    eps.push_back({EndpointKey{ip("10.244.1." + std::to_string(n)), 5353}, epset::kCluster, 0});
  }
  auto walks = conntrack::planDumps(plan({i, i, 6, 0, 1, 0, eps}), 8);
  ASSERT_EQ(walks.size(), 1u);
  EXPECT_EQ(walks[0].str(), "IPv4 UDP to 10.96.0.10:53");
}

TEST(ConntrackDumpPlan, PastTheLimitOneWalkPerProtocolAndFamily) {
  std::vector<FlowSelector> sels;
  for (int n = 1; n <= 20; ++n) {
    FlowSelector f;
    f.reason = StaleReason::Untranslated;
    f.proto = IPPROTO_UDP;
    f.dst = ip("10.96.1." + std::to_string(n));
    f.dport = 53;
    sels.push_back(f);
  }
  sels.back().proto = IPPROTO_SCTP;
  auto walks = conntrack::planDumps(sels, 8);
  ASSERT_EQ(walks.size(), 2u);
  EXPECT_EQ(walks[0].str(), "IPv4 UDP");
  EXPECT_EQ(walks[1].str(), "IPv4 SCTP");
}

}  // namespace
}  // namespace sliceproxy::testing
