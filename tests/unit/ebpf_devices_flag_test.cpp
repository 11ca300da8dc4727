// --devices belongs to the eBPF backend: another backend refuses it instead of ignoring it.

#include <gtest/gtest.h>

#include "backends/registry.h"

namespace sliceproxy::testing {
namespace {

TEST(DevicesFlag, NftablesBackendRefusesIt) {
  proxier::NetworkConfig net;
  net.devices = {"eth0"};
  for (const auto& b : backends::registry()) {
    if (std::string(b.name) != "nftables") continue;
    try {
      b.make(net);
      ADD_FAILURE() << "nftables accepted --devices";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--devices"), std::string::npos) << e.what();
    }
    return;
  }
  FAIL() << "no nftables backend registered";
}

}  // namespace
}  // namespace sliceproxy::testing
