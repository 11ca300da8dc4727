// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/port_policy.h"

#include "backends/node_policy/main_table.h"
#include "backends/node_policy/packet_keys.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

std::vector<Elem> portPolicyElems(const ServicePortInfo& info, const PortEndpointCounts& counts,
                                  const std::string& fwChain) {
  std::vector<Elem> out;
  const auto proto = info.key.port.protocol;
  const ElemValue reject{ElemValue::Goto, kRejectChain, {}}, drop{ElemValue::Drop, "", {}};
  auto frontend = [&](const IpAddr& a) { return frontendKey(a, proto, info.port); };

  std::vector<IpAddr> externals = info.externalIPs;
  externals.insert(externals.end(), info.loadBalancerIPs.begin(), info.loadBalancerIPs.end());

  if (counts.hasAny) {
    // Endpoints exist, but none for this kind of traffic on this node: drop, do not reject,
    // so a client retries elsewhere instead of giving up.
    if (counts.internal == 0) out.push_back({kNoEndpointServices, frontend(info.clusterIP), drop});
    if (info.externallyAccessible() && counts.external == 0) {
      for (const auto& a : externals) out.push_back({kNoEndpointServices, frontend(a), drop});
      if (info.nodePort) {
        out.push_back({kNoEndpointNodePorts, nodePortKey(proto, info.nodePort), drop});
      }
    }
  } else {
    out.push_back({kNoEndpointServices, frontend(info.clusterIP), reject});
    for (const auto& a : externals) out.push_back({kNoEndpointServices, frontend(a), reject});
    if (info.nodePort) {
      out.push_back({kNoEndpointNodePorts, nodePortKey(proto, info.nodePort), reject});
    }
  }
  if (!fwChain.empty()) {
    const ElemValue toFirewall{ElemValue::Goto, fwChain, {}};
    for (const auto& a : info.loadBalancerIPs) {
      out.push_back({kFirewallIps, frontend(a), toFirewall});
    }
  }
  return out;
}

}  // namespace sliceproxy::backends::nft
