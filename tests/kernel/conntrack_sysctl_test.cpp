// conntrack settings (KubeProxyConfiguration `conntrack`, --conntrack-* flags) against the real
// kernel, in the private network namespace conntrack_tests runs in: the per-namespace timeouts
// are written and read back; nf_conntrack_max, which only the initial namespace may change, is
// reported as not writable and stops nothing.

#include <gtest/gtest.h>

#include <fstream>

#include "conntrack/sysctl_settings.h"
#include "tests/kernel/conntrack_test_util.h"

namespace sliceproxy::conntrack {
namespace {

using namespace std::chrono_literals;

int64_t readSysctl(const std::string& rel) {
  std::ifstream in("/proc/sys/" + rel);
  int64_t v = -1;
  in >> v;
  return v;
}

TEST(ConntrackSysctls, PlanFollowsKubeProxy) {
  proxier::ConntrackSettings s;  // kube-proxy's defaults
  auto plan = plannedSysctls(s, 2);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].path, "net/netfilter/nf_conntrack_max");
  EXPECT_EQ(plan[0].value, 131072);  // 2 x 32768 is below min
  EXPECT_EQ(plan[1].value, 86400);
  EXPECT_EQ(plan[2].value, 3600);
  EXPECT_EQ(plannedSysctls(s, 8)[0].value, 8 * 32768);
  s.maxPerCore = 0;  // leave the limit alone
  s.tcpEstablishedTimeout = 0s;
  s.tcpCloseWaitTimeout = 0s;
  EXPECT_TRUE(plannedSysctls(s, 8).empty());
  s.tcpBeLiberal = true;
  s.udpTimeout = 30s;
  s.udpStreamTimeout = 2min;
  plan = plannedSysctls(s, 8);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].path, "net/netfilter/nf_conntrack_tcp_be_liberal");
  EXPECT_EQ(plan[1].value, 30);
  EXPECT_EQ(plan[2].value, 120);
}

TEST(ConntrackSysctls, AppliedToTheNamespaceAndReadBack) {
  // The first conntrack use in this namespace registers its sysctls.
  testing::ct::run("nft add table ip ct-sysctl-test && nft delete table ip ct-sysctl-test");
  ASSERT_GE(readSysctl("net/netfilter/nf_conntrack_tcp_timeout_established"), 0)
      << "nf_conntrack is not loaded";
  proxier::ConntrackSettings s;
  s.tcpEstablishedTimeout = 2h + 17s;
  s.tcpCloseWaitTimeout = 61min;
  s.tcpBeLiberal = true;
  s.udpTimeout = 31s;
  s.udpStreamTimeout = 121s;
  auto report = applyConntrackSettings(s, 2);
  EXPECT_FALSE(report.missing);
  EXPECT_EQ(readSysctl("net/netfilter/nf_conntrack_tcp_timeout_established"), 7217);
  EXPECT_EQ(readSysctl("net/netfilter/nf_conntrack_tcp_timeout_close_wait"), 3660);
  EXPECT_EQ(readSysctl("net/netfilter/nf_conntrack_tcp_be_liberal"), 1);
  EXPECT_EQ(readSysctl("net/netfilter/nf_conntrack_udp_timeout"), 31);
  EXPECT_EQ(readSysctl("net/netfilter/nf_conntrack_udp_timeout_stream"), 121);
  // nf_conntrack_max belongs to the initial namespace: a raise is refused here and reported,
  // with nothing else lost; a limit already higher than wanted is left as it is.
  s.min = static_cast<int32_t>(readSysctl("net/netfilter/nf_conntrack_max") + 1);
  report = applyConntrackSettings(s, 2);
  ASSERT_EQ(report.failed.size(), 1u);
  EXPECT_EQ(report.failed[0], "net/netfilter/nf_conntrack_max");
  EXPECT_EQ(report.unchanged.size(), 5u);
  s.min = 1024;
  // A second run finds everything as wanted and writes nothing.
  auto again = applyConntrackSettings(s, 2);
  EXPECT_TRUE(again.written.empty());
  EXPECT_EQ(again.unchanged.size() + again.failed.size(), 6u);
}

TEST(ConntrackSysctls, MissingSysctlsAreReportedForLater) {
  proxier::ConntrackSettings s;
  auto report = applyConntrackSettings(s, 2, "/nonexistent-sysctl-root");
  EXPECT_TRUE(report.missing);
  EXPECT_TRUE(report.written.empty());
}

}  // namespace
}  // namespace sliceproxy::conntrack
