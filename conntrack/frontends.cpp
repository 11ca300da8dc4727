#include "conntrack/frontends.h"

#include <netinet/in.h>

namespace sliceproxy::conntrack {

using proxier::epset::kCluster;
using proxier::epset::kLocal;

Frontends frontendsOf(const proxier::ServicePortInfo& info) {
  Frontends out;
  auto add = [&](const Frontend& f) {
    for (const auto& o : out) {
      if (o.nodePort == f.nodePort && o.ip == f.ip && o.port == f.port) return;
    }
    out.push_back(f);
  };
  add({FrontendKind::Internal, false, info.clusterIP, info.port});
  for (const auto& a : info.externalIPs) add({FrontendKind::External, false, a, info.port});
  for (const auto& a : info.loadBalancerIPs) add({FrontendKind::External, false, a, info.port});
  if (info.nodePort) add({FrontendKind::External, true, {}, info.nodePort});
  return out;
}

uint8_t servingSets(const proxier::ServicePortInfo& info, FrontendKind kind) {
  if (kind == FrontendKind::Internal) return info.internalPolicyLocal ? kLocal : kCluster;
  return info.externalPolicyLocal ? (kLocal | kCluster) : kCluster;
}

uint32_t servingCount(const proxier::ServicePortInfo& info, FrontendKind kind, uint32_t cluster,
                      uint32_t local) {
  const uint8_t sets = servingSets(info, kind);
  return ((sets & kCluster) ? cluster : 0) + ((sets & kLocal) ? local : 0);
}

uint8_t ipProto(proxier::Protocol p) {
  switch (p) {
    case proxier::Protocol::TCP:
      return IPPROTO_TCP;
    case proxier::Protocol::UDP:
      return IPPROTO_UDP;
    case proxier::Protocol::SCTP:
      return IPPROTO_SCTP;
  }
  return 0;
}

}  // namespace sliceproxy::conntrack
