#include "backends/ipvs/netlink_socket.h"

#include <sys/socket.h>

#include <cerrno>

namespace sliceproxy::backends::ipvs {

namespace {

int onData(const nlmsghdr* nlh, void* data) {
  auto* cb = static_cast<const std::function<void(const nlmsghdr*)>*>(data);
  if (*cb) (*cb)(nlh);
  return MNL_CB_OK;
}

}  // namespace

NetlinkSocket::~NetlinkSocket() {
  if (nl_) mnl_socket_close(nl_);
}

int NetlinkSocket::ensureOpen() {
  if (nl_) return 0;
  nl_ = mnl_socket_open(bus_);
  if (!nl_) return errno;
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int e = errno;
    mnl_socket_close(nl_);
    nl_ = nullptr;
    return e;
  }
  portId_ = mnl_socket_get_portid(nl_);
  buf_.resize(1 << 16);  // a dump part fits in 32 KiB
  return 0;
}

int NetlinkSocket::query(nlmsghdr* request, const std::function<void(const nlmsghdr*)>& onReply) {
  if (int e = ensureOpen()) return e;
  if (dirty_) {
    for (;;) {
      const ssize_t n = recv(mnl_socket_get_fd(nl_), buf_.data(), buf_.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != ENOBUFS && errno != EINTR)) break;
    }
    dirty_ = false;
  }
  request->nlmsg_flags |= NLM_F_ACK;
  request->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(nl_, request, request->nlmsg_len) < 0) return errno;
  // A dump ends with NLMSG_DONE, a plain request with its acknowledgement: mnl_cb_run returns
  // MNL_CB_STOP for both, and -1 with errno set for an NLMSG_ERROR carrying an error.
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      dirty_ = true;
      return errno;
    }
    int rc = mnl_cb_run(buf_.data(), static_cast<size_t>(n), seq_, portId_, onData,
                        const_cast<std::function<void(const nlmsghdr*)>*>(&onReply));
    if (rc == MNL_CB_STOP) return 0;
    if (rc < 0) {
      const int e = errno;
      dirty_ = true;
      return e;
    }
  }
}

}  // namespace sliceproxy::backends::ipvs
