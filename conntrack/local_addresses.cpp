#include "conntrack/local_addresses.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sliceproxy::conntrack {

LocalAddresses LocalAddresses::read() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    spdlog::warn("conntrack: cannot list local addresses: {}", std::strerror(errno));
    return {};
  }
  std::vector<proxier::IpAddr> out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr) continue;
    proxier::IpAddr a;
    if (i->ifa_addr->sa_family == AF_INET) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      std::memcpy(a.bytes.data(), &sin->sin_addr, 4);
      a.family = proxier::IpFamily::V4;
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      std::memcpy(a.bytes.data(), &sin6->sin6_addr, 16);
      a.family = proxier::IpFamily::V6;
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  freeifaddrs(list);
  return LocalAddresses(std::move(out));
}

bool LocalAddresses::contains(const proxier::IpAddr& a) const {
  return std::find(addrs_.begin(), addrs_.end(), a) != addrs_.end();
}

}  // namespace sliceproxy::conntrack
