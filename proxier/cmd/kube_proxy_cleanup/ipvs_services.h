#pragma once
// IPVS virtual services over generic netlink (family "IPVS"): listing and deleting them.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxier/model/ip.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

struct IpvsService {
  uint16_t af = 0;        // AF_INET or AF_INET6
  uint16_t protocol = 0;  // IPPROTO_*; 0 for a firewall-mark service
  std::optional<proxier::IpAddr> addr;
  uint16_t port = 0;  // host order
  uint32_t fwmark = 0;
  std::string str() const;  // "TCP 10.96.0.1:443", "FWM 7 (IPv4)"
};

class Ipvs {
 public:
  // Resolves the generic netlink family. Returns 0, or the errno; ENOENT means this kernel
  // has no IPVS (the module is neither built in nor loaded).
  int open();
  int listServices(std::vector<IpvsService>& out);
  // Deleting a virtual service deletes its real servers with it.
  int deleteService(const IpvsService& svc);

 private:
  uint16_t family_ = 0;
};

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
