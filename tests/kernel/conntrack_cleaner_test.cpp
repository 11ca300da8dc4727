// The conntrack cleaner against the real kernel, in a network namespace this test process
// creates for itself (main() unshares it before any test runs): flows are inserted through
// ctnetlink exactly as the kernel would track them (both tuples), then cleaned.

#include <gtest/gtest.h>
#include <sched.h>

#include "conntrack/netfilter_cleaner.h"
#include "conntrack_test_util.h"

namespace sliceproxy::testing {
namespace {

using conntrack::FlowSelector;
using conntrack::NetfilterCleaner;
using conntrack::StaleReason;
using namespace ct;

FlowSelector endpointGone(std::string_view vip, uint16_t port, std::string_view ep, uint16_t eport,
                          uint8_t proto = IPPROTO_UDP) {
  FlowSelector s;
  s.reason = StaleReason::EndpointGone;
  s.dst = addr(vip);
  s.family = s.dst.family;
  s.proto = proto;
  s.dport = port;
  s.endpoint = addr(ep);
  s.endpointPort = eport;
  return s;
}

FlowSelector nodePort(StaleReason reason, uint16_t port, std::string_view ep = "",
                      uint16_t eport = 0) {
  FlowSelector s;
  s.reason = reason;
  s.proto = IPPROTO_UDP;
  s.anyLocalAddress = true;
  s.dport = port;
  if (!ep.empty()) s.endpoint = addr(ep);
  s.endpointPort = eport;
  return s;
}

FlowSelector frontend(StaleReason reason, std::string_view vip, uint16_t port) {
  FlowSelector s;
  s.reason = reason;
  s.dst = addr(vip);
  s.family = s.dst.family;
  s.proto = IPPROTO_UDP;
  s.dport = port;
  return s;
}

class CleanerTest : public ::testing::Test {
 protected:
  void SetUp() override { flush(); }
  void TearDown() override { flush(); }
  NetfilterCleaner cleaner;
};

TEST_F(CleanerTest, EndpointGoneDeletesOnlyItsUdpFlowsToThatFrontendAndTheKernelFilters) {
  const Flow stale = natFlow("172.30.0.2", 40001, "10.96.0.10", 53, "10.244.1.1", 5353);
  const std::vector<Flow> keep = {
      natFlow("172.30.0.3", 40002, "10.96.0.10", 53, "10.244.1.2", 5353),  // another endpoint
      natFlow("172.30.0.2", 40003, "10.96.0.10", 53, "10.244.1.1", 5353, IPPROTO_TCP),
      natFlow("172.30.0.2", 40004, "10.96.0.11", 53, "10.244.1.1", 5353),  // another service
      plainFlow("172.30.0.2", 40005, "10.244.1.1", 5353),                  // straight to the pod
      natFlow("172.30.0.2", 40006, "10.96.0.10", 54, "10.244.1.1", 5353),  // another port
  };
  std::vector<Flow> all = keep;
  all.push_back(stale);
  ASSERT_EQ(insert(all), all.size());

  FlowSelector sel = endpointGone("10.96.0.10", 53, "10.244.1.1", 5353);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 1u);
  EXPECT_EQ(r.errors, 0u);
  EXPECT_EQ(r.dumps, 1u);
  // The kernel applied the filter: only the one candidate crossed into userspace.
  EXPECT_EQ(r.examined, 1u);
  auto t = table();
  EXPECT_FALSE(present(t, stale));
  for (const auto& f : keep) EXPECT_TRUE(present(t, f)) << f.str();
  EXPECT_EQ(cleaner.deletedTotal(), 1u);
  EXPECT_EQ(cleaner.errorsTotal(), 0u);
}

TEST_F(CleanerTest, NodePortMatchesAnyLocalAddressAndOnlyLocalAddresses) {
  const std::vector<Flow> stale = {
      natFlow("172.30.0.2", 41001, "192.168.50.1", 30053, "10.244.1.1", 5353),
      natFlow("172.30.0.2", 41004, "127.0.0.1", 30053, "10.244.1.1", 5353),
  };
  const std::vector<Flow> keep = {
      natFlow("172.30.0.2", 41002, "192.168.50.1", 30053, "10.244.1.2", 5353),
      natFlow("172.30.0.2", 41003, "203.0.113.9", 30053, "10.244.1.1", 5353),  // not ours
  };
  std::vector<Flow> all = keep;
  all.insert(all.end(), stale.begin(), stale.end());
  ASSERT_EQ(insert(all), all.size());

  FlowSelector sel = nodePort(StaleReason::EndpointGone, 30053, "10.244.1.1", 5353);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 2u);
  EXPECT_EQ(r.examined, 3u) << "port and reply filtered in the kernel, address in userspace";
  auto t = table();
  for (const auto& f : stale) EXPECT_FALSE(present(t, f)) << f.str();
  for (const auto& f : keep) EXPECT_TRUE(present(t, f)) << f.str();
}

TEST_F(CleanerTest, UntranslatedDeletesFlowsStuckFromBeforeTheServiceHadEndpoints) {
  const Flow stuckVip = plainFlow("172.30.0.2", 42001, "10.96.0.10", 53);
  const Flow stuckNodePort = plainFlow("172.30.0.2", 42003, "192.168.50.1", 30053);
  const Flow served = natFlow("172.30.0.3", 42002, "10.96.0.10", 53, "10.244.1.1", 5353);
  const Flow elsewhere = plainFlow("172.30.0.2", 42004, "203.0.113.9", 30053);
  ASSERT_EQ(insert({stuckVip, stuckNodePort, served, elsewhere}), 4u);

  std::vector<FlowSelector> sels = {frontend(StaleReason::Untranslated, "10.96.0.10", 53),
                                    nodePort(StaleReason::Untranslated, 30053)};
  auto r = cleaner.deleteFlows(sels);
  EXPECT_EQ(r.deleted, 2u);
  EXPECT_EQ(r.dumps, 2u);
  auto t = table();
  EXPECT_FALSE(present(t, stuckVip));
  EXPECT_FALSE(present(t, stuckNodePort));
  EXPECT_TRUE(present(t, served));
  EXPECT_TRUE(present(t, elsewhere));
}

TEST_F(CleanerTest, FrontendRemovedDeletesTranslatedFlowsOnly) {
  const Flow translated = natFlow("172.30.0.2", 43001, "10.96.0.10", 53, "10.244.1.1", 5353);
  const Flow plain = plainFlow("172.30.0.2", 43002, "10.96.0.10", 53);
  ASSERT_EQ(insert({translated, plain}), 2u);
  FlowSelector sel = frontend(StaleReason::FrontendRemoved, "10.96.0.10", 53);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 1u);
  auto t = table();
  EXPECT_FALSE(present(t, translated));
  EXPECT_TRUE(present(t, plain));
}

TEST_F(CleanerTest, Ipv6FlowsAreMatchedByAddressInUserspace) {
  const Flow stale = natFlow("fd00:30::2", 44001, "fd00:96::10", 53, "fd00:244::1", 5353);
  const std::vector<Flow> keep = {
      natFlow("fd00:30::2", 44002, "fd00:96::11", 53, "fd00:244::1", 5353),
      natFlow("fd00:30::2", 44003, "fd00:96::10", 53, "fd00:244::2", 5353),
      natFlow("172.30.0.2", 44004, "10.96.0.10", 53, "10.244.1.1", 5353),
  };
  std::vector<Flow> all = keep;
  all.push_back(stale);
  ASSERT_EQ(insert(all), all.size());
  FlowSelector sel = endpointGone("fd00:96::10", 53, "fd00:244::1", 5353);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 1u);
  EXPECT_EQ(r.errors, 0u);
  auto t = table();
  EXPECT_FALSE(present(t, stale));
  for (const auto& f : keep) EXPECT_TRUE(present(t, f)) << f.str();
}

TEST_F(CleanerTest, SctpFlowsAreCleanedWhenTheKernelTracksSctp) {
  ASSERT_TRUE(cleaner.sctpTracked()) << "this kernel tracks SCTP (nf_conntrack_sctp sysctls)";
  EXPECT_TRUE(cleaner.handles(proxier::Protocol::SCTP));
  EXPECT_FALSE(cleaner.handles(proxier::Protocol::TCP));
  const Flow stale =
      natFlow("172.30.0.2", 45001, "10.96.0.10", 3868, "10.244.1.1", 3868, IPPROTO_SCTP);
  const Flow keep =
      natFlow("172.30.0.2", 45002, "10.96.0.10", 3868, "10.244.1.2", 3868, IPPROTO_SCTP);
  ASSERT_EQ(insert({stale, keep}), 2u);
  FlowSelector sel = endpointGone("10.96.0.10", 3868, "10.244.1.1", 3868, IPPROTO_SCTP);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 1u);
  auto t = table();
  EXPECT_FALSE(present(t, stale));
  EXPECT_TRUE(present(t, keep));
}

TEST_F(CleanerTest, ManyFrontendsShareOneWalkPerProtocolAndFamily) {
  std::vector<Flow> flows;
  std::vector<FlowSelector> sels;
  for (int i = 0; i < 12; ++i) {
    const std::string vip = "10.96.1." + std::to_string(i + 1);
    flows.push_back(
        natFlow("172.30.0.2", static_cast<uint16_t>(46000 + i), vip, 53, "10.244.1.1", 5353));
    flows.push_back(
        natFlow("172.30.0.3", static_cast<uint16_t>(46100 + i), vip, 53, "10.244.1.2", 5353));
    sels.push_back(endpointGone(vip, 53, "10.244.1.1", 5353));
  }
  ASSERT_EQ(insert(flows), flows.size());
  auto r = cleaner.deleteFlows(sels);
  EXPECT_EQ(r.dumps, 1u);
  EXPECT_EQ(r.deleted, 12u);
  EXPECT_EQ(table().size(), 12u);
}

TEST_F(CleanerTest, SeveralEndpointsOfOneFrontendShareOneWalk) {
  std::vector<Flow> flows;
  for (int ep = 1; ep <= 3; ++ep) {
    for (int i = 0; i < 5; ++i) {
      flows.push_back(natFlow("172.30.0.2", static_cast<uint16_t>(47000 + ep * 10 + i),
                              "10.96.0.10", 53, "10.244.1." + std::to_string(ep), 5353));
    }
  }
  ASSERT_EQ(insert(flows), flows.size());
  std::vector<FlowSelector> sels = {endpointGone("10.96.0.10", 53, "10.244.1.1", 5353),
                                    endpointGone("10.96.0.10", 53, "10.244.1.2", 5353)};
  auto r = cleaner.deleteFlows(sels);
  EXPECT_EQ(r.dumps, 1u);
  EXPECT_EQ(r.examined, 15u);
  EXPECT_EQ(r.deleted, 10u);
  EXPECT_EQ(table().size(), 5u);
}

TEST_F(CleanerTest, ThousandsOfFlowsAreDeletedInBatches) {
  std::vector<Flow> flows;
  for (int i = 0; i < 2000; ++i) {
    flows.push_back(natFlow("172.31." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1),
                            static_cast<uint16_t>(20000 + i), "10.96.0.10", 53, "10.244.1.1",
                            5353));
  }
  for (int i = 0; i < 100; ++i) {
    flows.push_back(natFlow("172.30.0.9", static_cast<uint16_t>(30000 + i), "10.96.0.10", 53,
                            "10.244.1.2", 5353));
  }
  ASSERT_EQ(insert(flows), flows.size());
  FlowSelector sel = endpointGone("10.96.0.10", 53, "10.244.1.1", 5353);
  auto r = cleaner.deleteFlows({&sel, 1});
  EXPECT_EQ(r.deleted, 2000u);
  EXPECT_EQ(r.errors, 0u);
  EXPECT_EQ(table().size(), 100u);
}

TEST_F(CleanerTest, DeleteNamesTheFlowByIdSoAnotherFlowWithTheSameTupleSurvives) {
  const Flow f = natFlow("172.30.0.2", 48001, "10.96.0.10", 53, "10.244.1.1", 5353);
  ASSERT_EQ(insert({f}), 1u);
  auto t = table();
  ASSERT_EQ(t.size(), 1u);
  ASSERT_NE(t[0].id, 0u);
  // The flow as dumped before it was replaced by a newer one with the same tuple (the kernel
  // derives ids from the entry's address, so a real replacement may even reuse the id; a
  // different id is what this checks).
  Flow old = t[0];
  old.id ^= 1;
  auto s = socket();
  std::vector<int> res;
  const Flow* p = &old;
  ASSERT_EQ(s->deleteFlows({&p, 1}, res), 0);
  ASSERT_EQ(res.size(), 1u);
  EXPECT_EQ(res[0], ENOENT);
  EXPECT_EQ(table().size(), 1u);
  p = &t[0];
  ASSERT_EQ(s->deleteFlows({&p, 1}, res), 0);
  EXPECT_EQ(res[0], 0);
  EXPECT_TRUE(table().empty());
}

}  // namespace
}  // namespace sliceproxy::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Fails loudly rather than skipping: this suite exists to run against the real kernel.
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("conntrack tests need root to create a network namespace: unshare(CLONE_NEWNET)");
    return 1;
  }
  // A node address for NodePort flows (and loopback, which is local too).
  const std::string out = sliceproxy::testing::ct::run(
      "ip link set lo up && ip addr add 192.168.50.1/32 dev lo && "
      "ip addr add fd00:50::1/128 dev lo && echo ok");
  if (out.find("ok") == std::string::npos) {
    std::fprintf(stderr, "cannot set up the test namespace: %s\n", out.c_str());
    return 1;
  }
  return RUN_ALL_TESTS();
}
