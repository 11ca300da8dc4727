#include "backends/ipvs/netlink_link.h"

#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>

namespace sliceproxy::backends::ipvs {

namespace {

nlmsghdr* linkRequest(char* buf, uint16_t type) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  return nlh;
}

}  // namespace

int findLink(NetlinkSocket& sock, const std::string& name, LinkInfo& out) {
  out = {};
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = linkRequest(buf, RTM_GETLINK);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  int rc = sock.query(nlh, [&](const nlmsghdr* reply) {
    if (reply->nlmsg_type != RTM_NEWLINK) return;
    out.exists = true;
    out.index = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(reply))->ifi_index;
    forEachAttr(reply, sizeof(ifinfomsg), [&](const nlattr* attr) {
      if (mnl_attr_get_type(attr) != IFLA_LINKINFO) return;
      forEachNested(attr, [&](const nlattr* nested) {
        if (mnl_attr_get_type(nested) == IFLA_INFO_KIND) out.kind = mnl_attr_get_str(nested);
      });
    });
  });
  return rc == ENODEV ? 0 : rc;
}

int deleteLink(NetlinkSocket& sock, int index) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = linkRequest(buf, RTM_DELLINK);
  static_cast<ifinfomsg*>(mnl_nlmsg_get_payload(nlh))->ifi_index = index;
  return sock.query(nlh);
}

}  // namespace sliceproxy::backends::ipvs
