// A Diff holds what changed and nothing else.

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

class DiffTest : public ProxierFixture {
 protected:
  void seed(int services) {
    for (int i = 0; i < services; ++i) {
      std::string name = "svc-" + std::to_string(i);
      std::string cip = "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
      tracker.upsertService(service({.name = name, .clusterIPs = {cip}}));
      tracker.upsertSlice(
          slice(name + "-abc", name,
                {{"10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250)},
                 {"10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250)}}));
    }
    sync();
  }
};

TEST_F(DiffTest, OneSliceChangeInThousandServicesIsOneServiceDiff) {
  seed(1000);
  ASSERT_EQ(state.state().ports.size(), 1000u);
  tracker.upsertSlice(slice("svc-500-abc", "svc-500", {{"10.1.2.0"}, {"10.3.0.1"}}));
  Diff d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.deletes.empty());
  const auto& u = d.upserts[0];
  EXPECT_EQ(u.view->key().service.name, "svc-500");
  EXPECT_FALSE(u.created);
  EXPECT_FALSE(u.infoChanged);
  ASSERT_EQ(u.endpoints.size(), 2u);
  EXPECT_EQ(endpointString(u.endpoints[0].key), "10.2.2.0:8080");
  EXPECT_EQ(u.endpoints[0].oldSets, epset::kCluster);
  EXPECT_EQ(u.endpoints[0].newSets, 0);
  EXPECT_EQ(endpointString(u.endpoints[1].key), "10.3.0.1:8080");
  EXPECT_EQ(u.endpoints[1].oldSets, 0);
  EXPECT_EQ(u.endpoints[1].newSets, epset::kCluster);
}

TEST_F(DiffTest, UnchangedResendIsEmpty) {
  seed(10);
  tracker.upsertSlice(slice("svc-3-abc", "svc-3", {{"10.1.0.3"}, {"10.2.0.3"}}));
  tracker.upsertService(service({.name = "svc-4", .clusterIPs = {"10.96.0.5"}}));
  Diff d = sync();
  EXPECT_TRUE(d.empty());
}

TEST_F(DiffTest, ReadinessFlipIsOneEndpointChange) {
  seed(10);
  tracker.upsertSlice(slice("svc-3-abc", "svc-3", {{"10.1.0.3", "node-b", false}, {"10.2.0.3"}}));
  Diff d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  ASSERT_EQ(d.upserts[0].endpoints.size(), 1u);
  EXPECT_EQ(d.upserts[0].endpoints[0].newSets, 0);
}

TEST_F(DiffTest, ServiceChangeMarksInfoChanged) {
  seed(10);
  tracker.upsertService(service({.name = "svc-4",
                                 .clusterIPs = {"10.96.0.5"},
                                 .ports = {{"http", Protocol::TCP, 81, 0, {8080, ""}}}}));
  Diff d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.upserts[0].infoChanged);
  ASSERT_TRUE(d.upserts[0].previousInfo);
  EXPECT_EQ(d.upserts[0].previousInfo->port, 80);
  EXPECT_EQ(d.upserts[0].view->info()->port, 81);
  EXPECT_TRUE(d.upserts[0].endpoints.empty());
}

TEST_F(DiffTest, RenamedPortIsDeleteAndCreate) {
  seed(2);
  tracker.upsertService(service({.name = "svc-1",
                                 .clusterIPs = {"10.96.0.2"},
                                 .ports = {{"web", Protocol::TCP, 80, 0, {8080, ""}}}}));
  Diff d = sync();
  ASSERT_EQ(d.deletes.size(), 1u);
  EXPECT_EQ(d.deletes[0].key.port.portName, "http");
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.upserts[0].created);
  // The slice names its port "http": the renamed service port has no endpoints yet.
  EXPECT_FALSE(d.upserts[0].view->hasAnyEndpoints());
}

// iTP=Local ClusterIP: the remote endpoint is in no set this node uses, so losing it changes no
// set, yet the port goes from drop (endpoints elsewhere) to reject (none anywhere).
TEST_F(DiffTest, LastRemoteEndpointGoneUnderLocalPolicyIsAnUpsert) {
  SvcSpec spec;
  spec.itp = TrafficPolicy::Local;
  tracker.upsertService(service(spec));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.1", "node-b"}}));
  sync();
  ASSERT_TRUE(view()->hasAnyEndpoints());
  EXPECT_EQ(view()->localCount(), 0u);

  tracker.upsertSlice(slice("a", "svc", {}));
  Diff d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.upserts[0].anyEndpointsChanged);
  EXPECT_TRUE(d.upserts[0].endpoints.empty());
  EXPECT_FALSE(d.upserts[0].view->hasAnyEndpoints());

  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.2", "node-b"}}));
  d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.upserts[0].anyEndpointsChanged);
  EXPECT_TRUE(d.upserts[0].view->hasAnyEndpoints());

  // Another remote endpoint changes nothing this node does.
  tracker.upsertSlice(slice("a", "svc", {{"10.244.2.2", "node-b"}, {"10.244.2.3", "node-b"}}));
  EXPECT_TRUE(sync().empty());
}

TEST_F(DiffTest, ModeFlipRewritesWholeSet) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice(
      "a", "svc",
      {{"10.244.1.1", "node-b", false, true, true}, {"10.244.1.2", "node-b", false, true, true}}));
  sync();
  EXPECT_EQ(view()->clusterCount(), 2u);
  // One endpoint becomes ready: the terminating fallback ends for both of the others.
  tracker.upsertSlice(slice("b", "svc", {{"10.244.2.1"}}));
  Diff d = sync();
  ASSERT_EQ(d.upserts.size(), 1u);
  EXPECT_TRUE(d.upserts[0].modesChanged);
  EXPECT_EQ(d.upserts[0].endpoints.size(), 3u);
  EXPECT_EQ(internal(view()), (Strings{"10.244.2.1:8080"}));
  EXPECT_EQ(view()->clusterCount(), 1u);
}

TEST_F(DiffTest, FullStateIsSortedAndComplete) {
  seed(20);
  State s = state.state();
  ASSERT_EQ(s.ports.size(), 20u);
  for (size_t i = 1; i < s.ports.size(); ++i) EXPECT_LT(s.ports[i - 1]->key(), s.ports[i]->key());
}

TEST_F(DiffTest, WithoutDiffRequestedModelStillAdvances) {
  seed(5);
  tracker.upsertSlice(slice("svc-1-abc", "svc-1", {{"10.9.9.9"}}));
  Diff d = state.apply(tracker.take(), false);
  EXPECT_TRUE(d.upserts.empty());
  EXPECT_EQ(internal(view("svc-1")), (Strings{"10.9.9.9:8080"}));
}

// Input the decoder would normally reject still must not corrupt the model.
TEST_F(DiffTest, SliceListingAnAddressTwiceIsOneEndpoint) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}, {"10.244.1.1"}}));
  sync();
  EXPECT_EQ(view()->endpointCount(), 1u);
  tracker.deleteSlice({"default", "a"});
  sync();
  EXPECT_EQ(view()->endpointCount(), 0u);
  EXPECT_EQ(view()->clusterCount(), 0u);
}

TEST_F(DiffTest, MixedFamilySliceSplitsByAddress) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.1", "fd00:96::1"};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}, {"fd00:244::1"}}));
  sync();
  EXPECT_EQ(internal(view("svc", "http", IpFamily::V4)), (Strings{"10.244.1.1:8080"}));
  EXPECT_EQ(internal(view("svc", "http", IpFamily::V6)), (Strings{"[fd00:244::1]:8080"}));
}

}  // namespace
}  // namespace sliceproxy::testing
