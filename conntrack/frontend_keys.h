#pragma once
// Hash keys for looking a flow's original destination up: an exact address and port, or (for
// NodePorts, which answer on any local address) a family, protocol and port.

#include <cstddef>
#include <cstdint>

#include "proxier/model/ip.h"

namespace sliceproxy::conntrack {

struct AddrPortKey {
  proxier::IpAddr ip;
  uint16_t port = 0;
  uint8_t proto = 0;
  friend bool operator==(const AddrPortKey&, const AddrPortKey&) = default;
};

struct NodePortKey {
  proxier::IpFamily family = proxier::IpFamily::V4;
  uint8_t proto = 0;
  uint16_t port = 0;
  friend bool operator==(const NodePortKey&, const NodePortKey&) = default;
};

struct AddrPortKeyHash {
  size_t operator()(const AddrPortKey& k) const noexcept {
    return proxier::IpAddrHash{}(k.ip) ^
           ((static_cast<size_t>(k.port) << 8 | k.proto) * 0x9E3779B97F4A7C15ULL);
  }
};

struct NodePortKeyHash {
  size_t operator()(const NodePortKey& k) const noexcept {
    return (static_cast<size_t>(k.family) << 24 | static_cast<size_t>(k.proto) << 16 | k.port) *
           0x9E3779B97F4A7C15ULL;
  }
};

}  // namespace sliceproxy::conntrack
