// This node's primary IPs, as kube-proxy detects them (detectNodeIPs over GetNodeHostIPs).

#include <gtest/gtest.h>

#include "proxier/core/node_state.h"
#include "proxier/model/node_ips.h"

namespace sliceproxy::proxier {
namespace {

Node nodeWith(std::vector<std::pair<std::string, std::string>> addrs) {
  Node n;
  n.key = ObjectKey{"", "node-a"};
  for (auto& [type, text] : addrs) n.addresses.push_back({type, IpAddr::parse(text), text});
  return n;
}

std::string show(const std::vector<IpAddr>& ips) {
  std::string out;
  for (const auto& ip : ips) out += (out.empty() ? "" : ",") + ip.str();
  return out;
}

TEST(PrimaryNodeIps, AsKubeProxyDetectsThem) {
  struct Case {
    const char* what;
    std::vector<std::pair<std::string, std::string>> addrs;
    const char* bindAddress;  // "" = none
    const char* want;
  };
  const std::vector<Case> cases = {
      {"first InternalIP only",
       {{"InternalIP", "10.0.0.1"}, {"InternalIP", "10.0.0.2"}},
       "",
       "10.0.0.1"},
      {"InternalIP before an earlier ExternalIP",
       {{"ExternalIP", "203.0.113.1"}, {"InternalIP", "10.0.0.1"}},
       "",
       "10.0.0.1"},
      {"ExternalIP when there is no InternalIP",
       {{"Hostname", "node-a"}, {"ExternalIP", "203.0.113.1"}},
       "",
       "203.0.113.1"},
      {"dual-stack: the first address's family first, then the other's first",
       {{"InternalIP", "fd00::1"}, {"InternalIP", "fd00::2"}, {"InternalIP", "10.0.0.1"}},
       "",
       "fd00::1,10.0.0.1"},
      {"the other family may come from an ExternalIP",
       {{"InternalIP", "10.0.0.1"}, {"ExternalIP", "2001:db8::1"}},
       "",
       "10.0.0.1,2001:db8::1"},
      {"--bind-address replaces its family's and becomes primary",
       {{"InternalIP", "fd00::1"}, {"InternalIP", "10.0.0.1"}},
       "198.18.0.9",
       "198.18.0.9,fd00::1"},
      {"--bind-address without a Node address", {}, "fd00::9", "fd00::9"},
      {"loopback is never a NodePort address", {{"InternalIP", "127.0.0.1"}}, "", ""},
      {"no addresses", {{"Hostname", "node-a"}}, "", ""},
  };
  for (const auto& c : cases) {
    Node n = nodeWith(c.addrs);
    std::optional<IpAddr> over;
    if (*c.bindAddress) over = IpAddr::parse(c.bindAddress);
    EXPECT_EQ(show(primaryNodeIps(&n, over)), c.want) << c.what;
  }
  EXPECT_EQ(show(primaryNodeIps(nullptr, std::nullopt)), "");
}

TEST(PrimaryNodeIps, NodeStateKeepsThemWithTheNodeAndTheOverride) {
  NodeState state("node-a");
  state.setNodeIpOverride(IpAddr::parse("198.18.0.9"));
  // Before the Node is seen, the override alone.
  EXPECT_EQ(show(state.node().primaryIps), "198.18.0.9");
  PendingChanges changes;
  changes.nodeChanged = true;
  changes.node = std::make_shared<const Node>(
      nodeWith({{"InternalIP", "10.0.0.1"}, {"InternalIP", "fd00::1"}}));
  Diff d = state.apply(std::move(changes));
  EXPECT_TRUE(d.nodeChanged);
  EXPECT_EQ(show(d.node->primaryIps), "198.18.0.9,fd00::1");
}

}  // namespace
}  // namespace sliceproxy::proxier
