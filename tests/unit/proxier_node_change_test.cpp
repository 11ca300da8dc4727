// Node updates (issue 14, point 1): the kubelet rewrites its Node's status every few seconds;
// only what the proxier reads may cost work. A heartbeat programs nothing, a topology label
// change re-programs only the services whose endpoint choice it changes, an address change
// rebuilds the node-derived structure (a full sync). Driven through the real Proxier and the
// dry-run backend, whose every operation is a printed line.

#include <gtest/gtest.h>

#include <sstream>

#include "backends/dryrun/dry_run_backend.h"
#include "builders.h"
#include "proxier/core/change_tracker.h"
#include "proxier/core/proxier.h"

namespace sliceproxy::testing {
namespace {

Node nodeA(std::string zone, std::string rv, std::string address = "192.168.1.10") {
  Node n = *node("node-a", std::move(zone));
  n.resourceVersion = std::move(rv);
  n.addresses.push_back({"InternalIP", ip(address), address});
  return n;
}

NodePtr ptr(Node n) {
  return std::make_shared<const Node>(std::move(n));
}

class NodeChangeTest : public ::testing::Test {
 protected:
  NodeChangeTest() : tracker("node-a", {}), backend(out), proxy(tracker, backend, "node-a") {
    tracker.synced();
    tracker.upsertNode(ptr(nodeA("zone-a", "1")));
    // "hinted" follows topology hints, "plain" has none: only the first depends on the zone.
    tracker.upsertService(service({.name = "hinted", .clusterIPs = {"10.96.0.1"}}));
    tracker.upsertSlice(slice("hinted-1", "hinted",
                              {{"10.244.1.1", "node-a", true, {}, {}, {"zone-a"}},
                               {"10.244.2.1", "node-b", true, {}, {}, {"zone-b"}}}));
    tracker.upsertService(service({.name = "plain", .clusterIPs = {"10.96.0.2"}}));
    tracker.upsertSlice(slice("plain-1", "plain", {{"10.244.1.2", "node-a"}}));
    EXPECT_TRUE(proxy.syncOnce());
    EXPECT_EQ(proxy.stats().fullSyncs, 1u);
    out.str("");
  }

  // The backend's output since the last call, one JSON line per operation.
  std::vector<std::string> programmed() {
    std::vector<std::string> lines;
    std::istringstream in(out.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    out.str("");
    return lines;
  }

  ChangeTracker tracker;
  std::ostringstream out;
  backends::DryRunBackend backend;
  Proxier proxy;
};

TEST_F(NodeChangeTest, StatusHeartbeatsProgramNothing) {
  const auto before = proxy.stats();
  for (int i = 2; i < 1002; ++i) {
    tracker.upsertNode(ptr(nodeA("zone-a", std::to_string(i))));
    EXPECT_TRUE(tracker.take().empty()) << "heartbeat " << i << " became a change";
  }
  EXPECT_TRUE(proxy.syncOnce());
  EXPECT_EQ(proxy.stats().syncs, before.syncs);
  EXPECT_EQ(proxy.stats().fullSyncs, before.fullSyncs);
  EXPECT_TRUE(programmed().empty());
}

TEST_F(NodeChangeTest, UnreadLabelsAndTaintsReachHealthButNotTheBackend) {
  Node changed = nodeA("zone-a", "2");
  changed.labels.set("example.com/rack", "r1");
  changed.taints.push_back({"ToBeDeletedByClusterAutoscaler", "", "NoSchedule"});
  NodePtr n = ptr(changed);
  tracker.upsertNode(n);
  EXPECT_TRUE(proxy.syncOnce());
  EXPECT_TRUE(programmed().empty());
  EXPECT_EQ(proxy.stats().fullSyncs, 1u);
  EXPECT_EQ(proxy.nodeState().node().node, n);  // what /healthz reads
}

TEST_F(NodeChangeTest, ZoneChangeReprogramsOnlyHintedServices) {
  tracker.upsertNode(ptr(nodeA("zone-b", "2")));
  EXPECT_TRUE(proxy.syncOnce());
  EXPECT_EQ(proxy.stats().fullSyncs, 1u);
  auto lines = programmed();
  ASSERT_EQ(lines.size(), 1u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("default/hinted:http"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("10.244.2.1"), std::string::npos) << lines[0];
}

TEST_F(NodeChangeTest, AddressChangeIsAFullSync) {
  tracker.upsertNode(ptr(nodeA("zone-a", "2", "192.168.1.11")));
  EXPECT_TRUE(proxy.syncOnce());
  EXPECT_EQ(proxy.stats().fullSyncs, 2u);
}

// A value a decoder left out is reported (log and sliceproxy_object_values_skipped_total) when
// the object's content changes, not at every status heartbeat that carries it again.
TEST_F(NodeChangeTest, SkippedValuesCountedWhenTheNodeChangesNotAtHeartbeats) {
  auto withSkip = [](std::string rv, std::string zone) {
    Node n = nodeA(std::move(zone), std::move(rv));
    n.skipped.push_back({"status.addresses[1].address", "invalid_ip", "address left out"});
    return ptr(std::move(n));
  };
  tracker.upsertNode(withSkip("2", "zone-a"));
  for (int i = 3; i < 20; ++i) tracker.upsertNode(withSkip(std::to_string(i), "zone-a"));
  auto counts = tracker.skippedValues();
  EXPECT_EQ((counts[{"Node", "invalid_ip"}]), 1u);
  tracker.upsertNode(withSkip("20", "zone-b"));
  counts = tracker.skippedValues();
  EXPECT_EQ((counts[{"Node", "invalid_ip"}]), 2u);
}

// An EndpointSlice with an endpoint left out is served with the rest, and the skip is counted.
TEST_F(NodeChangeTest, SliceWithASkippedEndpointServesTheRest) {
  auto s = std::make_shared<EndpointSlice>(
      *slice("plain-1", "plain", {{"10.244.1.2", "node-a"}, {"10.244.1.3", "node-a"}}));
  s->skipped.push_back({"endpoints[2].addresses[0]", "invalid_ip", "endpoint left out"});
  tracker.upsertSlice(s);
  EXPECT_TRUE(proxy.syncOnce());
  auto lines = programmed();
  ASSERT_EQ(lines.size(), 1u) << ::testing::PrintToString(lines);
  EXPECT_NE(lines[0].find("10.244.1.3"), std::string::npos) << lines[0];
  EXPECT_EQ((tracker.skippedValues()[{"EndpointSlice", "invalid_ip"}]), 1u);
}

}  // namespace
}  // namespace sliceproxy::testing
