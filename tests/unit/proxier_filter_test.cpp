// kube-proxy's rules for what a service proxy ignores.

#include "proxier/core/filter.h"
#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

TEST(FilterTest, HeadlessServiceSkipped) {
  auto s = std::make_shared<Service>(*service({}));
  s->headless = true;
  s->clusterIPs.clear();
  EXPECT_TRUE(serviceSkipReason(*s, {}));
}

TEST(FilterTest, ServiceWithoutClusterIPSkipped) {
  EXPECT_TRUE(serviceSkipReason(*service({.clusterIPs = {}}), {}));
}

TEST(FilterTest, ExternalNameSkipped) {
  EXPECT_TRUE(serviceSkipReason(*service({.type = ServiceType::ExternalName}), {}));
}

TEST(FilterTest, ServiceProxyNameLabel) {
  auto labelled = service({.labels = {{"service.kubernetes.io/service-proxy-name", "other"}}});
  auto mine = service({.labels = {{"service.kubernetes.io/service-proxy-name", "sliceproxy"}}});
  auto plain = service({});
  EXPECT_TRUE(serviceSkipReason(*labelled, {}));
  EXPECT_FALSE(serviceSkipReason(*plain, {}));
  EXPECT_TRUE(serviceSkipReason(*mine, {}));
  // With --service-proxy-name, exactly the services labelled with that name are ours.
  FilterConfig named{"sliceproxy"};
  EXPECT_FALSE(serviceSkipReason(*mine, named));
  EXPECT_TRUE(serviceSkipReason(*labelled, named));
  EXPECT_TRUE(serviceSkipReason(*plain, named));
}

TEST(FilterTest, HeadlessLabelSkipped) {
  EXPECT_TRUE(
      serviceSkipReason(*service({.labels = {{"service.kubernetes.io/headless", ""}}}), {}));
  auto sl = std::make_shared<EndpointSlice>(*slice("a", "svc", {{"10.244.1.1"}}));
  sl->labels.set("service.kubernetes.io/headless", "");
  EXPECT_TRUE(sliceSkipReason(*sl, {}));
}

TEST(FilterTest, FqdnSliceSkipped) {
  auto sl = std::make_shared<EndpointSlice>(*slice("a", "svc", {}));
  sl->addressType = AddressType::FQDN;
  EXPECT_TRUE(sliceSkipReason(*sl, {}));
}

TEST(FilterTest, SliceWithoutServiceNameSkipped) {
  auto sl = std::make_shared<EndpointSlice>(*slice("a", "", {{"10.244.1.1"}}));
  EXPECT_TRUE(sliceSkipReason(*sl, {}));
  EXPECT_FALSE(sliceSkipReason(*slice("a", "svc", {{"10.244.1.1"}}), {}));
}

class FilterTrackerTest : public ProxierFixture {};

TEST_F(FilterTrackerTest, ServiceBecomingFilteredIsDeleted) {
  tracker.upsertService(service({}));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
  sync();
  ASSERT_TRUE(view()->active());
  tracker.upsertService(service({.labels = {{"service.kubernetes.io/service-proxy-name", "x"}}}));
  Diff d = sync();
  ASSERT_EQ(d.deletes.size(), 1u);
  EXPECT_EQ(state.state().ports.size(), 0u);
}

TEST_F(FilterTrackerTest, FqdnSliceNeverReachesTheModel) {
  tracker.upsertService(service({}));
  auto sl = std::make_shared<EndpointSlice>(*slice("a", "svc", {}));
  sl->addressType = AddressType::FQDN;
  tracker.upsertSlice(sl);
  sync();
  EXPECT_EQ(view()->endpointCount(), 0u);
}

TEST_F(FilterTrackerTest, OtherNodesAreIgnored) {
  tracker.upsertNode(node("node-b", "zone-b"));
  auto changes = tracker.take();
  EXPECT_FALSE(changes.nodeChanged);
  tracker.upsertNode(node("node-a", "zone-a"));
  changes = tracker.take();
  EXPECT_TRUE(changes.nodeChanged);
}

}  // namespace
}  // namespace sliceproxy::testing
