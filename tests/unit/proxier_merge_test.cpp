// Lazy merge: union of a service's slices, deduplicated by address:port, in a stable order.

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

class MergeTest : public ProxierFixture {};

TEST_F(MergeTest, UnionOfSlices) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}, {"10.244.1.2"}}));
  tracker.upsertSlice(slice("b", "svc", {{"10.244.2.1"}}));
  sync();
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080", "10.244.1.2:8080", "10.244.2.1:8080"}));
}

TEST_F(MergeTest, DuplicatePrefersNonTerminatingCopy) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1", "node-a", false, true, true}}));
  tracker.upsertSlice(slice("b", "svc", {{"10.244.1.1", "node-a", true}}));
  sync();
  auto* v = view();
  ASSERT_EQ(v->endpointCount(), 1u);
  EXPECT_TRUE(v->sortedEndpoints()[0]->ready());
  EXPECT_FALSE(v->sortedEndpoints()[0]->terminating());
  // The ready copy goes: the terminating copy remains and is used as the fallback.
  tracker.deleteSlice({"default", "b"});
  sync();
  ASSERT_EQ(view()->endpointCount(), 1u);
  EXPECT_TRUE(view()->sortedEndpoints()[0]->terminating());
  EXPECT_EQ(view()->modes().cluster, ClusterMode::ServingTerminating);
}

TEST_F(MergeTest, OrderDoesNotDependOnArrival) {
  auto run = [](bool reversed) {
    ChangeTracker t("node-a", {});
    t.synced();
    NodeState s("node-a");
    std::vector<SlicePtr> slices = {slice("a", "svc", {{"10.244.3.1"}, {"10.244.1.1"}}),
                                    slice("b", "svc", {{"10.244.2.1"}, {"10.244.1.1", "node-x"}})};
    if (reversed) std::reverse(slices.begin(), slices.end());
    t.upsertService(service({}));
    for (auto& sl : slices) t.upsertSlice(sl);
    s.apply(t.take());
    std::vector<std::string> out;
    auto* v = s.find({{"default", "svc"}, {"http", Protocol::TCP, IpFamily::V4}});
    for (auto* e : v->sortedEndpoints())
      out.push_back(endpointString(e->key) + "@" + e->source().nodeName);
    return out;
  };
  EXPECT_EQ(run(false), run(true));
  EXPECT_EQ(run(false), (Strings{"10.244.1.1:8080@node-b", "10.244.2.1:8080@node-b",
                                 "10.244.3.1:8080@node-b"}));
}

TEST_F(MergeTest, SamePortNameDifferentNumbersAreDistinctEndpoints) {
  // During a rollout that changes targetPort, old and new pods expose different numbers.
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}, {{"http", Protocol::TCP, 8080}}));
  tracker.upsertSlice(slice("b", "svc", {{"10.244.1.2"}}, {{"http", Protocol::TCP, 9090}}));
  sync();
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080", "10.244.1.2:9090"}));
}

TEST_F(MergeTest, PortsAreMatchedByNameAndProtocol) {
  SvcSpec s;
  s.ports = {{"dns", Protocol::UDP, 53, 0, {53, ""}}, {"dns-tcp", Protocol::TCP, 53, 0, {53, ""}}};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}},
                            {{"dns", Protocol::UDP, 5353}, {"dns-tcp", Protocol::TCP, 5354}}));
  sync();
  EXPECT_EQ(internal(view("svc", "dns", IpFamily::V4, Protocol::UDP)),
            (Strings{"10.244.1.1:5353"}));
  EXPECT_EQ(internal(view("svc", "dns-tcp")), (Strings{"10.244.1.1:5354"}));
}

TEST_F(MergeTest, SlicesBeforeServiceAreKeptUntilItArrives) {
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
  Diff d1 = sync();
  EXPECT_TRUE(d1.upserts.empty());
  tracker.upsertService(service({}));
  Diff d2 = sync();
  ASSERT_EQ(d2.upserts.size(), 1u);
  EXPECT_TRUE(d2.upserts[0].created);
  EXPECT_EQ(internal(view()), (Strings{"10.244.1.1:8080"}));
}

TEST_F(MergeTest, ServiceDeletedThenEndpointsGoneLeavesNothing) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
  sync();
  tracker.deleteService({"default", "svc"});
  Diff d = sync();
  ASSERT_EQ(d.deletes.size(), 1u);
  EXPECT_EQ(d.deletes[0].endpoints.size(), 1u);
  tracker.deleteSlice({"default", "a"});
  sync();
  EXPECT_EQ(state.serviceCount(), 0u);
}

TEST_F(MergeTest, EndpointWithoutAddressIsSkipped) {
  tracker.upsertService(service({}));
  auto s = std::make_shared<EndpointSlice>(*slice("a", "svc", {{"10.244.1.1"}}));
  s->endpoints.push_back(Endpoint{});
  tracker.upsertSlice(s);
  sync();
  EXPECT_EQ(view()->endpointCount(), 1u);
}

TEST_F(MergeTest, SliceMovingToAnotherServiceLeavesTheFirst) {
  tracker.upsertService(service({.name = "one"}));
  tracker.upsertService(service({.name = "two", .clusterIPs = {"10.96.0.2"}}));
  tracker.upsertSlice(slice("s", "one", {{"10.244.1.1"}}));
  sync();
  EXPECT_EQ(internal(view("one")).size(), 1u);
  tracker.upsertSlice(slice("s", "two", {{"10.244.1.1"}}));
  sync();
  EXPECT_TRUE(internal(view("one")).empty());
  EXPECT_EQ(internal(view("two")).size(), 1u);
}

}  // namespace
}  // namespace sliceproxy::testing
