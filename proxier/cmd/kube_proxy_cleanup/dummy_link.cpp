#include "proxier/cmd/kube_proxy_cleanup/dummy_link.h"

#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <cerrno>

#include "proxier/cmd/kube_proxy_cleanup/netlink_query.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

int findLink(const std::string& name, LinkInfo& out) {
  out = {};
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  int rc = netlinkQuery(NETLINK_ROUTE, nlh, [&](const nlmsghdr* reply) {
    if (reply->nlmsg_type != RTM_NEWLINK) return;
    const auto* info = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(reply));
    out.exists = true;
    out.index = info->ifi_index;
    forEachAttr(reply, sizeof(ifinfomsg), [&](const nlattr* attr) {
      if (mnl_attr_get_type(attr) != IFLA_LINKINFO) return;
      forEachNested(attr, [&](const nlattr* nested) {
        if (mnl_attr_get_type(nested) == IFLA_INFO_KIND) out.kind = mnl_attr_get_str(nested);
      });
    });
  });
  return rc == ENODEV ? 0 : rc;
}

int deleteLink(int index) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_DELLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  return netlinkQuery(NETLINK_ROUTE, nlh);
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
