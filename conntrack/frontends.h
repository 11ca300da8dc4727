#pragma once
// The addresses a service port answers on, and which of its endpoint sets serve each of them,
// exactly as the data planes translate them: the clusterIP is served by the internal set; NodePort,
// externalIPs and load-balancer IPs by the external set (plus, under externalTrafficPolicy Local,
// the cluster-wide set that pods and the node itself are short-circuited to).

#include <boost/container/small_vector.hpp>
#include <cstdint>

#include "proxier/core/endpoint_selection.h"
#include "proxier/core/service_port.h"

namespace sliceproxy::conntrack {

enum class FrontendKind : uint8_t { Internal, External };

struct Frontend {
  FrontendKind kind = FrontendKind::Internal;
  bool nodePort = false;  // any local address, port = the NodePort
  proxier::IpAddr ip;     // unless nodePort
  uint16_t port = 0;
  friend bool operator==(const Frontend&, const Frontend&) = default;
};

using Frontends = boost::container::small_vector<Frontend, 4>;

Frontends frontendsOf(const proxier::ServicePortInfo& info);

// The epset bits whose endpoints receive traffic sent to a frontend of this kind.
uint8_t servingSets(const proxier::ServicePortInfo& info, FrontendKind kind);

// How many endpoints serve a frontend of this kind, from the port's set sizes.
uint32_t servingCount(const proxier::ServicePortInfo& info, FrontendKind kind, uint32_t cluster,
                      uint32_t local);

// IPPROTO_* of a service protocol.
uint8_t ipProto(proxier::Protocol p);

}  // namespace sliceproxy::conntrack
