#pragma once
// One netlink request and its replies (a dump or an acknowledgement), over a fresh socket:
// the cleanup sends a handful of requests once, so nothing is worth keeping open.

#include <libmnl/libmnl.h>

#include <functional>

namespace sliceproxy::proxier::kube_proxy_cleanup {

// Sends the request (NLM_F_ACK is added) on a socket of netlink `bus` and calls onReply for every
// reply message until the kernel says it is done. Returns 0, or the errno the kernel (or the
// socket) answered.
int netlinkQuery(int bus, nlmsghdr* request,
                 const std::function<void(const nlmsghdr*)>& onReply = nullptr);

// Calls fn(const nlattr*) for each attribute of a message after its `offset`-byte fixed header,
// or of a nested attribute (libmnl's iteration macros do not compile as C++).
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

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
