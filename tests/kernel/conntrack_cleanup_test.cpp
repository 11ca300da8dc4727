// StaleFlowCleanup driven the way the Proxier drives it (NodeState diffs, full syncs), with the
// netfilter cleaner on the real kernel: which flows each kind of sync makes stale, and the sweep.

#include <gtest/gtest.h>

#include "../unit/builders.h"
#include "conntrack/netfilter_cleaner.h"
#include "conntrack/stale_flow_cleanup.h"
#include "conntrack_test_util.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::testing {
namespace {

using namespace ct;

SvcSpec udpService(ServiceType type = ServiceType::NodePort) {
  SvcSpec s;
  s.type = type;
  s.clusterIPs = {"10.96.0.10"};
  s.ports = {{"dns",
              Protocol::UDP,
              53,
              static_cast<uint16_t>(type == ServiceType::ClusterIP ? 0 : 30053),
              {5353, ""}}};
  s.externalIPs = {"192.0.2.10"};
  return s;
}

SlicePtr udpSlice(std::vector<Ep> eps) {
  return slice("a", "svc", std::move(eps), {{"dns", Protocol::UDP, 5353}});
}

class CleanupTest : public ::testing::Test {
 protected:
  void SetUp() override { flush(); }
  void TearDown() override { flush(); }

  conntrack::CleanupOptions options() {
    conntrack::CleanupOptions o;
    o.worker = false;  // each test runs the deletes itself, in order
    o.sweepAfterStart = false;
    return o;
  }
  // A full sync as the Proxier runs it: no per-endpoint changes in the Diff.
  void fullSync() {
    state.apply(tracker.take(), false);
    Diff none;
    none.node = &state.node();
    cleanup.afterSync(none, true);
    cleanup.runPending();
  }
  void partialSync() {
    cleanup.afterSync(state.apply(tracker.take()), false);
    cleanup.runPending();
  }

  ChangeTracker tracker{"node-a", {}};
  NodeState state{"node-a"};
  conntrack::StaleFlowCleanup cleanup{std::make_unique<conntrack::NetfilterCleaner>(), state,
                                      nullptr, options()};
};

TEST_F(CleanupTest, RemovedEndpointLosesItsFlowsToEveryFrontendAfterThePartialSync) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  EXPECT_EQ(cleanup.trackedPorts(), 1u);
  const std::vector<Flow> stale = {
      natFlow("172.30.0.2", 50001, "10.96.0.10", 53, "10.244.1.1", 5353),
      natFlow("172.30.0.2", 50002, "192.168.50.1", 30053, "10.244.1.1", 5353),  // NodePort
      natFlow("172.30.0.2", 50003, "192.0.2.10", 53, "10.244.1.1", 5353),       // externalIP
  };
  const std::vector<Flow> keep = {
      natFlow("172.30.0.3", 50004, "10.96.0.10", 53, "10.244.1.2", 5353),
      natFlow("172.30.0.2", 50005, "10.96.0.10", 53, "10.244.1.1", 5353, IPPROTO_TCP),
  };
  std::vector<Flow> all = stale;
  all.insert(all.end(), keep.begin(), keep.end());
  ASSERT_EQ(insert(all), all.size());

  tracker.upsertSlice(udpSlice({{"10.244.1.2"}}));
  partialSync();
  auto t = table();
  for (const auto& f : stale) EXPECT_FALSE(present(t, f)) << f.str();
  for (const auto& f : keep) EXPECT_TRUE(present(t, f)) << f.str();
  EXPECT_EQ(cleanup.deletedTotal(), 3u);
  EXPECT_EQ(cleanup.errorsTotal(), 0u);
}

TEST_F(CleanupTest, TcpServicePortsAreNeverTracked) {
  SvcSpec s;
  s.clusterIPs = {"10.96.0.20"};
  tracker.upsertService(service(s));
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  EXPECT_EQ(cleanup.trackedPorts(), 0u);
  const Flow tcp = natFlow("172.30.0.2", 51001, "10.96.0.20", 80, "10.244.1.1", 8080, IPPROTO_TCP);
  ASSERT_EQ(insert({tcp}), 1u);
  tracker.upsertSlice(slice("a", "svc", {{"10.244.1.2"}}));
  partialSync();
  EXPECT_TRUE(present(table(), tcp));
  EXPECT_EQ(cleanup.cleaner().counters().dumps.load(), 0u) << "no kernel walk for TCP changes";
}

TEST_F(CleanupTest, ZeroToNDeletesFlowsStuckUntranslated) {
  tracker.upsertService(service(udpService()));
  fullSync();  // no endpoints: rejected
  const std::vector<Flow> stuck = {
      plainFlow("172.30.0.2", 52001, "10.96.0.10", 53),
      plainFlow("172.30.0.2", 52002, "192.168.50.1", 30053),
      plainFlow("172.30.0.2", 52003, "192.0.2.10", 53),
  };
  const Flow other = plainFlow("172.30.0.2", 52004, "10.96.0.11", 53);
  std::vector<Flow> all = stuck;
  all.push_back(other);
  ASSERT_EQ(insert(all), all.size());

  tracker.upsertSlice(udpSlice({{"10.244.1.1"}}));
  partialSync();
  auto t = table();
  for (const auto& f : stuck) EXPECT_FALSE(present(t, f)) << f.str();
  EXPECT_TRUE(present(t, other));
}

TEST_F(CleanupTest, ServiceCreatedWithEndpointsDeletesFlowsSentBeforeIt) {
  fullSync();
  const Flow early = plainFlow("172.30.0.2", 53001, "10.96.0.10", 53);
  ASSERT_EQ(insert({early}), 1u);
  tracker.upsertService(service(udpService(ServiceType::ClusterIP)));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}}));
  partialSync();
  EXPECT_FALSE(present(table(), early));
}

TEST_F(CleanupTest, FullSyncAfterAFailedSyncStillFindsTheRemovedEndpoint) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  const Flow stale = natFlow("172.30.0.2", 54001, "10.96.0.10", 53, "10.244.1.1", 5353);
  const Flow keep = natFlow("172.30.0.2", 54002, "10.96.0.10", 53, "10.244.1.2", 5353);
  ASSERT_EQ(insert({stale, keep}), 2u);
  // The partial sync that removed it failed (no observer call); the retry is a full sync.
  tracker.upsertSlice(udpSlice({{"10.244.1.2"}}));
  state.apply(tracker.take());
  fullSync();
  auto t = table();
  EXPECT_FALSE(present(t, stale));
  EXPECT_TRUE(present(t, keep));
}

TEST_F(CleanupTest, FirstFullSyncOnlyRecords) {
  const Flow f = natFlow("172.30.0.2", 55001, "10.96.0.10", 53, "10.244.1.9", 5353);
  ASSERT_EQ(insert({f}), 1u);
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}}));
  fullSync();
  EXPECT_TRUE(present(table(), f)) << "left to the sweep after start";
}

TEST_F(CleanupTest, DeletedServiceLosesItsTranslatedFlows) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}}));
  fullSync();
  const Flow translated = natFlow("172.30.0.2", 56001, "10.96.0.10", 53, "10.244.1.1", 5353);
  const Flow viaNodePort = natFlow("172.30.0.2", 56002, "192.168.50.1", 30053, "10.244.1.1", 5353);
  const Flow plain = plainFlow("172.30.0.2", 56003, "10.96.0.10", 53);
  ASSERT_EQ(insert({translated, viaNodePort, plain}), 3u);
  tracker.deleteService({"default", "svc"});
  partialSync();
  auto t = table();
  EXPECT_FALSE(present(t, translated));
  EXPECT_FALSE(present(t, viaNodePort));
  EXPECT_TRUE(present(t, plain));
  EXPECT_EQ(cleanup.trackedPorts(), 0u);
}

TEST_F(CleanupTest, RemovedExternalIpLosesItsFlowsButTheClusterIpKeepsThem) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}}));
  fullSync();
  const Flow viaExternal = natFlow("172.30.0.2", 57001, "192.0.2.10", 53, "10.244.1.1", 5353);
  const Flow viaCluster = natFlow("172.30.0.2", 57002, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({viaExternal, viaCluster}), 2u);
  SvcSpec s = udpService();
  s.externalIPs = {};
  tracker.upsertService(service(s));
  partialSync();
  auto t = table();
  EXPECT_FALSE(present(t, viaExternal));
  EXPECT_TRUE(present(t, viaCluster));
}

TEST_F(CleanupTest, InternalTrafficPolicyLocalDropsRemoteEndpointsFromTheClusterIp) {
  // iTP Cluster -> Local: the remote endpoint stays in the cluster-wide set (NodePort traffic
  // still uses it), so its own sets do not change, but it no longer serves the clusterIP.
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1", "node-a"}, {"10.244.2.1", "node-b"}}));
  fullSync();
  const Flow remoteViaCluster = natFlow("172.30.0.2", 58001, "10.96.0.10", 53, "10.244.2.1", 5353);
  const Flow remoteViaNodePort =
      natFlow("172.30.0.2", 58002, "192.168.50.1", 30053, "10.244.2.1", 5353);
  const Flow localViaCluster = natFlow("172.30.0.2", 58003, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({remoteViaCluster, remoteViaNodePort, localViaCluster}), 3u);
  SvcSpec s = udpService();
  s.itp = TrafficPolicy::Local;
  tracker.upsertService(service(s));
  partialSync();
  auto t = table();
  EXPECT_FALSE(present(t, remoteViaCluster));
  EXPECT_TRUE(present(t, remoteViaNodePort));
  EXPECT_TRUE(present(t, localViaCluster));
}

TEST_F(CleanupTest, EndpointPutBackBeforeTheDeletesRunKeepsItsFlows) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  const Flow f = natFlow("172.30.0.2", 61001, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({f}), 1u);
  tracker.upsertSlice(udpSlice({{"10.244.1.2"}}));
  cleanup.afterSync(state.apply(tracker.take()), false);  // queued, not yet deleted
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  cleanup.afterSync(state.apply(tracker.take()), false);
  cleanup.runPending();
  EXPECT_TRUE(present(table(), f));
  EXPECT_EQ(cleanup.deletedTotal(), 0u);
}

TEST_F(CleanupTest, EndpointGoneThenServiceDeletedInOneBatchStillDeletes) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  const Flow f = natFlow("172.30.0.2", 62001, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({f}), 1u);
  tracker.upsertSlice(udpSlice({{"10.244.1.2"}}));
  cleanup.afterSync(state.apply(tracker.take()), false);
  tracker.deleteService({"default", "svc"});
  cleanup.afterSync(state.apply(tracker.take()), false);
  cleanup.runPending();
  EXPECT_FALSE(present(table(), f));
}

TEST_F(CleanupTest, WorkerDeletesWithoutBlockingTheSync) {
  conntrack::CleanupOptions o;
  o.sweepAfterStart = false;
  conntrack::StaleFlowCleanup async(std::make_unique<conntrack::NetfilterCleaner>(), state, nullptr,
                                    o);
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  state.apply(tracker.take(), false);
  Diff none;
  async.afterSync(none, true);
  const Flow f = natFlow("172.30.0.2", 63001, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({f}), 1u);
  tracker.upsertSlice(udpSlice({{"10.244.1.2"}}));
  async.afterSync(state.apply(tracker.take()), false);
  async.waitIdle();
  EXPECT_FALSE(present(table(), f));
  EXPECT_EQ(async.deletedTotal(), 1u);
}

TEST_F(CleanupTest, SweepDeletesWhatEventsMissedAndNothingElse) {
  tracker.upsertService(service(udpService()));
  tracker.upsertSlice(udpSlice({{"10.244.1.1"}, {"10.244.1.2"}}));
  fullSync();
  const std::vector<Flow> stale = {
      natFlow("172.30.0.2", 59001, "10.96.0.10", 53, "10.244.1.9", 5353),  // gone endpoint
      natFlow("172.30.0.2", 59002, "192.168.50.1", 30053, "10.244.1.9", 5353),
      plainFlow("172.30.0.2", 59003, "10.96.0.10", 53),  // stuck
  };
  const std::vector<Flow> keep = {
      natFlow("172.30.0.2", 59004, "10.96.0.10", 53, "10.244.1.1", 5353),
      natFlow("172.30.0.2", 59005, "10.96.0.10", 53, "10.244.1.9", 5353, IPPROTO_TCP),
      natFlow("172.30.0.2", 59006, "10.96.0.10", 54, "10.244.1.9", 5353),  // not a service port
      plainFlow("172.30.0.2", 59007, "198.51.100.1", 53),
      natFlow("fd00:30::2", 59008, "fd00:96::10", 53, "fd00:244::9", 5353),  // no IPv6 service
  };
  std::vector<Flow> all = stale;
  all.insert(all.end(), keep.begin(), keep.end());
  ASSERT_EQ(insert(all), all.size());
  auto r = cleanup.sweepNow();
  EXPECT_EQ(r.deleted, stale.size());
  EXPECT_EQ(r.errors, 0u);
  auto t = table();
  for (const auto& f : stale) EXPECT_FALSE(present(t, f)) << f.str();
  for (const auto& f : keep) EXPECT_TRUE(present(t, f)) << f.str();
}

TEST_F(CleanupTest, SweepBeforeTheFirstSyncDoesNothing) {
  const Flow f = natFlow("172.30.0.2", 60001, "10.96.0.10", 53, "10.244.1.9", 5353);
  ASSERT_EQ(insert({f}), 1u);
  auto r = cleanup.sweepNow();
  EXPECT_EQ(r.dumps, 0u);
  EXPECT_TRUE(present(table(), f));
}

}  // namespace
}  // namespace sliceproxy::testing
