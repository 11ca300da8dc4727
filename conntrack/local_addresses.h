#pragma once
// This node's own addresses, read once per cleanup: a NodePort flow is one whose original
// destination is any of them.

#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::conntrack {

class LocalAddresses {
 public:
  LocalAddresses() = default;
  explicit LocalAddresses(std::vector<proxier::IpAddr> addrs) : addrs_(std::move(addrs)) {}
  // The addresses of every interface in this network namespace (getifaddrs); empty on error.
  static LocalAddresses read();

  bool contains(const proxier::IpAddr& a) const;
  const std::vector<proxier::IpAddr>& all() const { return addrs_; }

 private:
  std::vector<proxier::IpAddr> addrs_;
};

}  // namespace sliceproxy::conntrack
