#pragma once
// Where the healthCheckNodePort servers listen: kube-proxy listens on 0.0.0.0 unless
// --nodeport-addresses narrows NodePorts, and then only on this node's addresses it selects, so
// a health check port is reachable exactly where the service's NodePort is.

#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier {

struct HealthCheckAddresses {
  std::vector<Cidr> cidrs;  // --nodeport-addresses CIDRs
  bool primary = false;     // --nodeport-addresses=primary: the Node's InternalIPs

  // Parses --nodeport-addresses values (already validated by buildNetworkConfig).
  static HealthCheckAddresses fromFlag(const std::vector<std::string>& values);
  bool everyAddress() const { return cidrs.empty() && !primary; }
  // The literal hosts to bind: {""} (0.0.0.0) when every address is selected, else the local
  // addresses in the CIDRs plus, for primary, the Node's InternalIPs. Empty when none matches.
  std::vector<std::string> hosts(const std::vector<IpAddr>& nodeInternalIPs) const;
};

// The addresses of every interface in this network namespace (getifaddrs); empty on error.
std::vector<IpAddr> localInterfaceAddresses();

}  // namespace sliceproxy::proxier
