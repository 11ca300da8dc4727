#include "proxier/ops/local_addresses.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace sliceproxy::proxier {

std::vector<std::string> localAddressesIn(const std::vector<Cidr>& cidrs, std::string& error) {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    error = std::string("reading the interface addresses: ") + std::strerror(errno);
    return out;
  }
  std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> owner(list, freeifaddrs);
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      std::memcpy(a.bytes.data(), &sin->sin_addr, 4);
      a.family = IpFamily::V4;
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      // Link-local addresses need a scope to listen on; kube-proxy skips them too.
      if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;
      std::memcpy(a.bytes.data(), &sin6->sin6_addr, 16);
      a.family = IpFamily::V6;
    } else {
      continue;
    }
    for (const auto& c : cidrs) {
      if (c.addr.family == a.family && c.contains(a)) {
        const std::string s = a.str();
        bool seen = false;
        for (const auto& o : out) seen = seen || o == s;
        if (!seen) out.push_back(s);
        break;
      }
    }
  }
  return out;
}

}  // namespace sliceproxy::proxier
