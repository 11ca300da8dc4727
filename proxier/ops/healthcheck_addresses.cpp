#include "proxier/ops/healthcheck_addresses.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sliceproxy::proxier {

HealthCheckAddresses HealthCheckAddresses::fromFlag(const std::vector<std::string>& values) {
  HealthCheckAddresses out;
  for (const auto& v : values) {
    if (v == "primary") {
      out.primary = true;
    } else if (auto c = Cidr::parse(v)) {
      out.cidrs.push_back(*c);
    }
  }
  return out;
}

std::vector<std::string> HealthCheckAddresses::hosts(
    const std::vector<IpAddr>& nodeInternalIPs) const {
  if (everyAddress()) return {""};
  std::vector<IpAddr> picked;
  auto add = [&](const IpAddr& a) {
    if (std::find(picked.begin(), picked.end(), a) == picked.end()) picked.push_back(a);
  };
  if (!cidrs.empty()) {
    for (const auto& a : localInterfaceAddresses()) {
      // Link-local IPv6 addresses need a scope to be bound; NodePorts never use them.
      const bool linkLocal =
          a.family == IpFamily::V6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80;
      if (linkLocal) continue;
      if (std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return c.contains(a); }))
        add(a);
    }
  }
  if (primary) {
    for (const auto& a : nodeInternalIPs) add(a);
  }
  std::vector<std::string> out;
  for (const auto& a : picked) out.push_back(a.str());
  return out;
}

std::vector<IpAddr> localInterfaceAddresses() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    spdlog::warn("health check ports: cannot list local addresses: {}", std::strerror(errno));
    return {};
  }
  std::vector<IpAddr> out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
      a.family = IpFamily::V4;
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr,
                  16);
      a.family = IpFamily::V6;
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

}  // namespace sliceproxy::proxier
