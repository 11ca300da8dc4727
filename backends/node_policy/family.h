#pragma once
// One address family as the node policy programs it: which family, its netfilter protocol and
// the network configuration. A backend's own per-family context extends this.

#include <cstdint>

#include "proxier/config/network_config.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::nft {

struct NodeFamily {
  proxier::IpFamily family;
  uint16_t nfproto;  // NFPROTO_IPV4 / NFPROTO_IPV6
  const proxier::NetworkConfig* net;
  uint32_t addrLen() const { return family == proxier::IpFamily::V4 ? 4 : 16; }
  uint32_t addrWords() const { return addrLen() / 4; }
};

}  // namespace sliceproxy::backends::nft
