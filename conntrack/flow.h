#pragma once
// One tracked flow as a cleaner sees it: both tuples, in binary form, independent of the kernel
// interface that reported it (libnetfilter_conntrack today, an eBPF map later).

#include <cstdint>
#include <string>

#include "proxier/model/ip.h"

namespace sliceproxy::conntrack {

using proxier::IpAddr;
using proxier::IpFamily;

struct Tuple {
  IpAddr src, dst;
  uint16_t sport = 0, dport = 0;  // host byte order
  friend bool operator==(const Tuple&, const Tuple&) = default;
};

struct Flow {
  IpFamily family = IpFamily::V4;
  uint8_t proto = 0;  // IPPROTO_UDP, IPPROTO_SCTP, ...
  Tuple orig;         // as the client sent it: dst is the service frontend
  Tuple reply;        // as the backend answers: src is the endpoint after DNAT
  uint32_t id = 0;    // the kernel's id, so a delete never hits a newer flow with the same tuple
  uint16_t zone = 0;
  bool hasZone = false;

  // True when the destination was rewritten (DNAT to an endpoint): the reply does not come from
  // the address and port the client sent to.
  bool translated() const { return reply.src != orig.dst || reply.sport != orig.dport; }
  // "UDP 10.0.0.1:5000 -> 10.96.0.10:53 (reply from 10.244.1.5:53)", for logs.
  std::string str() const;
};

const char* protoName(uint8_t proto);
std::string hostPort(const IpAddr& a, uint16_t port);

}  // namespace sliceproxy::conntrack
