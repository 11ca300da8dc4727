// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/local_traffic.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

bool matchLocalTraffic(RuleBuilder& b, const NodeFamily& fam, const Cidr* nodePodCIDR,
                       bool negate) {
  const NetworkConfig& net = *fam.net;
  switch (net.detectLocal) {
    case LocalDetectMode::ClusterCIDR:
      if (const Cidr* c = net.clusterCIDR(fam.family)) {
        b.matchAddr(true, *c, negate);
        return true;
      }
      return false;
    case LocalDetectMode::NodeCIDR:
      if (nodePodCIDR) {
        b.matchAddr(true, *nodePodCIDR, negate);
        return true;
      }
      return false;
    case LocalDetectMode::InterfaceNamePrefix:
      b.iifname(net.podInterfacePrefix, true, negate);
      return true;
    case LocalDetectMode::BridgeInterface:
      b.iifname(net.podBridgeInterface, false, negate);
      return true;
    case LocalDetectMode::None:
      return false;
  }
  return false;
}

}  // namespace sliceproxy::backends::nft
