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

}  // namespace
}  // namespace sliceproxy::proxier
