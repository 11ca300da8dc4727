#pragma once
// Links by name over rtnetlink: the IPVS backend's dummy link and cleanup-kube-proxy's
// kube-ipvs0 are found and deleted the same way.

#include <string>

#include "backends/ipvs/netlink_socket.h"

namespace sliceproxy::backends::ipvs {

struct LinkInfo {
  bool exists = false;
  int index = 0;
  std::string kind;  // IFLA_INFO_KIND: "dummy", "bridge", ... ("" for a device without one)
};

// Looks the link up by name. Returns 0 (exists=false when there is no such link) or the errno.
int findLink(NetlinkSocket& sock, const std::string& name, LinkInfo& out);

// Deletes the link with this index. Returns 0 or the errno.
int deleteLink(NetlinkSocket& sock, int index);

}  // namespace sliceproxy::backends::ipvs
