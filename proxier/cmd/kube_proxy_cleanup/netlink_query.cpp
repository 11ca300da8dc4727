#include "proxier/cmd/kube_proxy_cleanup/netlink_query.h"

#include <cerrno>
#include <memory>
#include <vector>

namespace sliceproxy::proxier::kube_proxy_cleanup {

namespace {

int onData(const nlmsghdr* nlh, void* data) {
  auto* cb = static_cast<const std::function<void(const nlmsghdr*)>*>(data);
  if (*cb) (*cb)(nlh);
  return MNL_CB_OK;
}

}  // namespace

int netlinkQuery(int bus, nlmsghdr* request, const std::function<void(const nlmsghdr*)>& onReply) {
  std::unique_ptr<mnl_socket, decltype(&mnl_socket_close)> nl(mnl_socket_open(bus),
                                                              mnl_socket_close);
  if (!nl) return errno;
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) return errno;
  const unsigned portId = mnl_socket_get_portid(nl.get());
  request->nlmsg_flags |= NLM_F_ACK;
  request->nlmsg_seq = 1;
  if (mnl_socket_sendto(nl.get(), request, request->nlmsg_len) < 0) return errno;
  // A dump ends with NLMSG_DONE, a plain request with its acknowledgement: mnl_cb_run returns
  // MNL_CB_STOP for both, and -1 with errno set for an NLMSG_ERROR carrying an error.
  std::vector<char> buf(1 << 16);  // a dump part fits in 32 KiB
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), 1, portId, onData,
                        const_cast<std::function<void(const nlmsghdr*)>*>(&onReply));
    if (rc == MNL_CB_STOP) return 0;
    if (rc < 0) return errno;
  }
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
