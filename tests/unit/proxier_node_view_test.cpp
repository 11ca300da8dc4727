// The node-local selection table: which endpoints serve internal and external traffic here.

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

class NodeViewTest : public ProxierFixture {};

TEST_F(NodeViewTest, ReadyOnly) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a"},
                             {"10.244.2.1", "node-b", false},
                             {"10.244.2.2", "node-b", false, true, true}}));
  sync();
  auto* v = view();
  ASSERT_TRUE(v);
  EXPECT_EQ(internal(v), (Strings{"10.244.1.1:8080"}));
  EXPECT_EQ(v->modes().cluster, ClusterMode::AllReady);
  EXPECT_EQ(v->modes().local, LocalMode::Unused);
  EXPECT_TRUE(v->hasAnyEndpoints());
}

TEST_F(NodeViewTest, AllTerminatingFallsBackToServingTerminating) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", false, true, true},
                             {"10.244.2.1", "node-b", false, false, true},
                             {"10.244.2.2", "node-b", false, true, true}}));
  sync();
  auto* v = view();
  EXPECT_EQ(v->modes().cluster, ClusterMode::ServingTerminating);
  // The terminating endpoint that no longer serves is never used.
  EXPECT_EQ(internal(v), (Strings{"10.244.1.1:8080", "10.244.2.2:8080"}));
}

TEST_F(NodeViewTest, NotReadyNotTerminatingIsNeverUsed) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.2.1", "node-b", false, true, false}}));
  sync();
  auto* v = view();
  EXPECT_EQ(v->modes().cluster, ClusterMode::None);
  EXPECT_TRUE(internal(v).empty());
  EXPECT_FALSE(v->hasAnyEndpoints());
}

TEST_F(NodeViewTest, NilConditionsMeanReadyAndServing) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(
      slice("s1", "svc", {{"10.244.2.1", "node-b", std::nullopt, std::nullopt, std::nullopt}}));
  sync();
  EXPECT_EQ(internal(view()), (Strings{"10.244.2.1:8080"}));
}

SvcSpec etpLocal() {
  SvcSpec s;
  s.type = ServiceType::NodePort;
  s.ports = {{"http", Protocol::TCP, 80, 30080, {8080, ""}}};
  s.etp = TrafficPolicy::Local;
  return s;
}

TEST_F(NodeViewTest, ExternalPolicyLocalWithLocalEndpoints) {
  tracker.upsertService(service(etpLocal()));
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}}));
  sync();
  auto* v = view();
  EXPECT_EQ(external(v), (Strings{"10.244.1.1:8080"}));
  // Internal traffic (and external traffic short-circuited from pods) uses the whole cluster.
  EXPECT_EQ(internal(v), (Strings{"10.244.1.1:8080", "10.244.2.1:8080"}));
  EXPECT_EQ(v->localCount(), 1u);
}

TEST_F(NodeViewTest, ExternalPolicyLocalWithoutLocalEndpoints) {
  tracker.upsertService(service(etpLocal()));
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.2.1", "node-b"}}));
  sync();
  auto* v = view();
  EXPECT_TRUE(external(v).empty());
  EXPECT_EQ(v->modes().local, LocalMode::None);
  // Endpoints exist elsewhere: external traffic is dropped, not rejected.
  EXPECT_TRUE(v->hasAnyEndpoints());
  EXPECT_EQ(internal(v), (Strings{"10.244.2.1:8080"}));
}

TEST_F(NodeViewTest, ExternalPolicyLocalPrefersLocalReadyOverLocalTerminating) {
  tracker.upsertService(service(etpLocal()));
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", false, true, true},
                             {"10.244.1.2", "node-a"},
                             {"10.244.2.1", "node-b"}}));
  sync();
  EXPECT_EQ(external(view()), (Strings{"10.244.1.2:8080"}));
  // The ready local endpoint goes away: the local serving+terminating one takes over, even
  // though ready endpoints remain on other nodes.
  tracker.upsertSlice(
      slice("s1", "svc", {{"10.244.1.1", "node-a", false, true, true}, {"10.244.2.1", "node-b"}}));
  sync();
  EXPECT_EQ(view()->modes().local, LocalMode::ServingTerminating);
  EXPECT_EQ(external(view()), (Strings{"10.244.1.1:8080"}));
}

TEST_F(NodeViewTest, ExternalPolicyLocalIgnoredOnClusterIPService) {
  SvcSpec s;
  s.etp = TrafficPolicy::Local;  // meaningless without a way in from outside
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.2.1", "node-b"}}));
  sync();
  EXPECT_FALSE(view()->info()->externalPolicyLocal);
  EXPECT_EQ(internal(view()), (Strings{"10.244.2.1:8080"}));
}

TEST_F(NodeViewTest, InternalPolicyLocal) {
  SvcSpec s;
  s.itp = TrafficPolicy::Local;
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}}));
  sync();
  auto* v = view();
  EXPECT_EQ(internal(v), (Strings{"10.244.1.1:8080"}));
  EXPECT_EQ(v->modes().cluster, ClusterMode::Unused);
  // No local endpoint: internal traffic has nowhere to go, but the service has endpoints.
  tracker.upsertSlice(slice("s1", "svc", {{"10.244.2.1", "node-b"}}));
  sync();
  EXPECT_TRUE(internal(view()).empty());
  EXPECT_TRUE(view()->hasAnyEndpoints());
}

class ZoneHintsTest : public ProxierFixture {
 protected:
  void SetUp() override {
    tracker.upsertNode(node("node-a", "zone-a"));
    tracker.upsertService(service({}));
  }
};

TEST_F(ZoneHintsTest, AllPresentUsesOwnZone) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}},
                             {"10.244.3.1", "node-c", true, {}, {}, {"zone-a"}}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::PreferSameZone);
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080", "10.244.3.1:8080"}));
}

TEST_F(ZoneHintsTest, OneMissingIgnoresHints) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {}}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::AllReady);
  EXPECT_EQ(internal(view()).size(), 2u);
}

TEST_F(ZoneHintsTest, MissingHintOnNotReadyEndpointDoesNotMatter) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}},
                             {"10.244.2.2", "node-b", false}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::PreferSameZone);
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080"}));
}

TEST_F(ZoneHintsTest, NoMatchIgnoresHints) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}},
                             {"10.244.3.1", "node-c", true, {}, {}, {"zone-c"}}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::AllReady);
  EXPECT_EQ(internal(view()).size(), 2u);
}

TEST_F(ZoneHintsTest, NodeZoneChangeRedecides) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}}}));
  sync();
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080"}));
  tracker.upsertNode(node("node-a", "zone-b"));
  Diff d = sync();
  EXPECT_EQ(internal(view()), (Strings{"10.244.2.1:8080"}));
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_EQ(d.upserts[0].endpoints.size(), 2u);
}

TEST_F(ZoneHintsTest, NodeHintsWinOverZoneHints) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}, {"node-a"}},
                             {"10.244.1.2", "node-x", true, {}, {}, {"zone-a"}, {"node-x"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}, {"node-b"}}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::PreferSameNode);
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080"}));
}

TEST_F(ZoneHintsTest, NodeHintsWithoutMatchFallBackToZone) {
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.2", "node-x", true, {}, {}, {"zone-a"}, {"node-x"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}, {"node-b"}}}));
  sync();
  EXPECT_EQ(view()->modes().cluster, ClusterMode::PreferSameZone);
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.2:8080"}));
}

TEST_F(ZoneHintsTest, TopologyNotAppliedToLocalPolicy) {
  auto s = etpLocal();
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("s1", "svc",
                            {{"10.244.1.1", "node-a", true, {}, {}, {"zone-b"}},
                             {"10.244.2.1", "node-b", true, {}, {}, {"zone-a"}}}));
  sync();
  EXPECT_EQ(external(view()), (Strings{"10.244.1.1:8080"}));
  EXPECT_EQ(internal(view()), (Strings{"10.244.2.1:8080"}));
}

TEST_F(NodeViewTest, DualStackYieldsOnePortPerFamily) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.1", "fd00:96::1"};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("v4", "svc", {{"10.244.2.1"}}));
  tracker.upsertSlice(slice("v6", "svc", {{"fd00:244::1"}}));
  sync();
  EXPECT_EQ(internal(view("svc", "http", IpFamily::V4)), (Strings{"10.244.2.1:8080"}));
  EXPECT_EQ(internal(view("svc", "http", IpFamily::V6)), (Strings{"[fd00:244::1]:8080"}));
  EXPECT_EQ(view("svc", "http", IpFamily::V6)->info()->clusterIP, ip("fd00:96::1"));
}

TEST_F(NodeViewTest, SingleStackIgnoresOtherFamilySlices) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("v6", "svc", {{"fd00:244::1"}}));
  sync();
  auto* v6 = view("svc", "http", IpFamily::V6);
  ASSERT_TRUE(v6);  // tracked, ready for a second clusterIP, but not programmed
  EXPECT_FALSE(v6->active());
  EXPECT_EQ(state.state().ports.size(), 1u);
}

}  // namespace
}  // namespace sliceproxy::testing
