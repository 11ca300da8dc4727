#pragma once
// kube-proxy's IPVS mode binds every service address to a dummy interface, kube-ipvs0; it is
// found and deleted as the IPVS backend handles its own link (backends/ipvs/netlink_link.h).

#include <linux/netlink.h>

#include <string>

#include "backends/ipvs/netlink_link.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

inline constexpr const char* kKubeIpvsLink = "kube-ipvs0";

using backends::ipvs::LinkInfo;

inline int findLink(const std::string& name, LinkInfo& out) {
  backends::ipvs::NetlinkSocket sock(NETLINK_ROUTE);
  return backends::ipvs::findLink(sock, name, out);
}

inline int deleteLink(int index) {
  backends::ipvs::NetlinkSocket sock(NETLINK_ROUTE);
  return backends::ipvs::deleteLink(sock, index);
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
