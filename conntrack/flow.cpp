#include "conntrack/flow.h"

#include <fmt/format.h>
#include <netinet/in.h>

namespace sliceproxy::conntrack {

const char* protoName(uint8_t proto) {
  switch (proto) {
    case IPPROTO_UDP:
      return "UDP";
    case IPPROTO_SCTP:
      return "SCTP";
    case IPPROTO_TCP:
      return "TCP";
    default:
      return "proto?";
  }
}

std::string hostPort(const IpAddr& a, uint16_t port) {
  return a.isV4() ? fmt::format("{}:{}", a.str(), port) : fmt::format("[{}]:{}", a.str(), port);
}

std::string Flow::str() const {
  std::string s = fmt::format("{} {} -> {}", protoName(proto), hostPort(orig.src, orig.sport),
                              hostPort(orig.dst, orig.dport));
  if (translated()) s += fmt::format(" (reply from {})", hostPort(reply.src, reply.sport));
  if (hasZone && zone) s += fmt::format(" zone {}", zone);
  return s;
}

}  // namespace sliceproxy::conntrack
