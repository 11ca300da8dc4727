#pragma once
// One netlink socket kept open for a backend's lifetime: a sync sends many small requests, and
// opening a socket per request would cost more than the requests themselves.

#include <libmnl/libmnl.h>

#include <functional>
#include <vector>

namespace sliceproxy::backends::ipvs {

class NetlinkSocket {
 public:
  explicit NetlinkSocket(int bus) : bus_(bus) {}
  ~NetlinkSocket();
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // Sends the request (NLM_F_ACK added) and calls onReply for every reply until the kernel says
  // it is done. Returns 0, or the errno the kernel (or the socket) answered.
  int query(nlmsghdr* request, const std::function<void(const nlmsghdr*)>& onReply = nullptr);

 private:
  int ensureOpen();
  int bus_;
  mnl_socket* nl_ = nullptr;
  unsigned portId_ = 0;
  uint32_t seq_ = 0;
  // An exchange ended early (a receive overrun, a kernel error in a dump): what it left queued
  // is discarded before the next request, which would otherwise read it as its own answer.
  bool dirty_ = false;
  std::vector<char> buf_;
};

// Calls fn(const nlattr*) for each attribute after a message's `offset`-byte fixed header, or
// inside a nested attribute (libmnl's iteration macros do not compile as C++).
template <class F>
void forEachAttr(const nlmsghdr* nlh, size_t offset, F fn) {
  const auto* begin = static_cast<const char*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  int len = static_cast<int>(static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh)) - begin);
  for (auto* a = reinterpret_cast<const nlattr*>(begin); mnl_attr_ok(a, len);) {
    fn(a);
    len -= MNL_ALIGN(a->nla_len);
    a = mnl_attr_next(a);
  }
}
template <class F>
void forEachNested(const nlattr* nest, F fn) {
  int len = static_cast<int>(mnl_attr_get_payload_len(nest));
  for (auto* a = static_cast<const nlattr*>(mnl_attr_get_payload(nest)); mnl_attr_ok(a, len);) {
    fn(a);
    len -= MNL_ALIGN(a->nla_len);
    a = mnl_attr_next(a);
  }
}

}  // namespace sliceproxy::backends::ipvs
