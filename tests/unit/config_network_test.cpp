// --nodeport-addresses and friends, validated into a NetworkConfig.

#include <gtest/gtest.h>

#include "proxier/config/network_config.h"

namespace sliceproxy::proxier {
namespace {

std::string build(std::vector<std::string> nodePortAddresses) {
  NetworkConfig net;
  return buildNetworkConfig(net, {}, "", {}, nodePortAddresses, 14);
}

TEST(NodePortAddresses, LoopbackOnlyCidrsAreRefusedWithAReason) {
  for (const char* text : {"127.0.0.1/32", "127.0.0.0/8", "::1/128"}) {
    auto err = build({"10.0.0.0/8", text});
    EXPECT_NE(err.find("--nodeport-addresses"), std::string::npos) << text;
    EXPECT_NE(err.find(text), std::string::npos) << err;
    EXPECT_NE(err.find("localhost"), std::string::npos) << err;
  }
}

TEST(NodePortAddresses, BroaderCidrsAndPrimaryAreAccepted) {
  for (const char* text : {"0.0.0.0/0", "::/0", "10.0.0.0/8", "primary", "fd00::/8"}) {
    EXPECT_EQ(build({text}), "") << text;
  }
}

// kube-proxy's --bind-address: not a socket address but "this node's primary IP".
TEST(BindAddress, UnspecifiedMeansNoOverrideAndAnythingElseMustBeAnAddress) {
  NetworkConfig net;
  for (const char* none : {"", "0.0.0.0", "::"}) {
    EXPECT_EQ(setNodeIpOverride(net, none), "") << none;
    EXPECT_FALSE(net.nodeIpOverride) << none;
  }
  EXPECT_EQ(setNodeIpOverride(net, "198.18.0.7"), "");
  ASSERT_TRUE(net.nodeIpOverride);
  EXPECT_EQ(net.nodeIpOverride->str(), "198.18.0.7");
  EXPECT_EQ(setNodeIpOverride(net, "fd00::7"), "");
  EXPECT_EQ(net.nodeIpOverride->str(), "fd00::7");
  auto err = setNodeIpOverride(net, "node-a.example");
  EXPECT_NE(err.find("--bind-address"), std::string::npos) << err;
  EXPECT_NE(err.find("node-a.example"), std::string::npos) << err;
  EXPECT_FALSE(net.nodeIpOverride);
}

}  // namespace
}  // namespace sliceproxy::proxier
