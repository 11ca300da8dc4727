#pragma once
// kube-proxy's IPVS mode binds every service address to a dummy interface, kube-ipvs0.

#include <string>

namespace sliceproxy::proxier::kube_proxy_cleanup {

inline constexpr const char* kKubeIpvsLink = "kube-ipvs0";

struct LinkInfo {
  bool exists = false;
  int index = 0;
  std::string kind;  // IFLA_INFO_KIND: "dummy", "bridge", ... ("" for a device without one)
};

// Looks the link up by name. Returns 0 (exists=false when there is no such link) or the errno.
int findLink(const std::string& name, LinkInfo& out);

// Deletes the link with this index. Returns 0 or the errno.
int deleteLink(int index);

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
