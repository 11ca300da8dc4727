#pragma once
// One netlink request and its replies (a dump or an acknowledgement), over a fresh socket:
// the cleanup sends a handful of requests once, so nothing is worth keeping open. The socket
// and the attribute iteration are the IPVS backend's (backends/ipvs/netlink_socket.h).

#include <functional>

#include "backends/ipvs/netlink_socket.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

using backends::ipvs::forEachAttr;
using backends::ipvs::forEachNested;

// Sends the request (NLM_F_ACK is added) on a socket of netlink `bus` and calls onReply for every
// reply message until the kernel says it is done. Returns 0, or the errno the kernel (or the
// socket) answered.
inline int netlinkQuery(int bus, nlmsghdr* request,
                        const std::function<void(const nlmsghdr*)>& onReply = nullptr) {
  return backends::ipvs::NetlinkSocket(bus).query(request, onReply);
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
