// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "proxier/cmd/kube_proxy_cleanup/ipvs_services.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "backends/ipvs/ipvs_netlink.h"
#include "proxier/cmd/kube_proxy_cleanup/netlink_query.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

using backends::ipvs::genlHeader;

namespace {

void parseService(const nlattr* nest, IpvsService& svc) {
  const void* addr = nullptr;
  forEachNested(nest, [&](const nlattr* a) {
    switch (mnl_attr_get_type(a)) {
      case IPVS_SVC_ATTR_AF:
        svc.af = mnl_attr_get_u16(a);
        break;
      case IPVS_SVC_ATTR_PROTOCOL:
        svc.protocol = mnl_attr_get_u16(a);
        break;
      case IPVS_SVC_ATTR_ADDR:
        if (mnl_attr_get_payload_len(a) >= 16) addr = mnl_attr_get_payload(a);
        break;
      case IPVS_SVC_ATTR_PORT:
        svc.port = ntohs(mnl_attr_get_u16(a));
        break;
      case IPVS_SVC_ATTR_FWMARK:
        svc.fwmark = mnl_attr_get_u32(a);
        break;
      default:
        break;
    }
  });
  if (addr && svc.fwmark == 0) {
    proxier::IpAddr ip;
    ip.family = svc.af == AF_INET6 ? proxier::IpFamily::V6 : proxier::IpFamily::V4;
    std::memcpy(ip.bytes.data(), addr, ip.size());
    svc.addr = ip;
  }
}

}  // namespace

std::string IpvsService::str() const {
  if (fwmark != 0 || !addr) {
    return fmt::format("FWM {} ({})", fwmark, af == AF_INET6 ? "IPv6" : "IPv4");
  }
  const char* proto = protocol == IPPROTO_TCP    ? "TCP"
                      : protocol == IPPROTO_UDP  ? "UDP"
                      : protocol == IPPROTO_SCTP ? "SCTP"
                                                 : "proto";
  std::string a = addr->isV4() ? addr->str() : fmt::format("[{}]", addr->str());
  return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP
             ? fmt::format("{} {}:{}", proto, a, port)
             : fmt::format("proto {} {}:{}", protocol, a, port);
}

int Ipvs::open() {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0);
  mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME);
  return netlinkQuery(NETLINK_GENERIC, nlh, [&](const nlmsghdr* reply) {
    forEachAttr(reply, sizeof(genlmsghdr), [&](const nlattr* a) {
      if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID) family_ = mnl_attr_get_u16(a);
    });
  });
}

int Ipvs::listServices(std::vector<IpvsService>& out) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, IPVS_CMD_GET_SERVICE, NLM_F_DUMP);
  return netlinkQuery(NETLINK_GENERIC, nlh, [&](const nlmsghdr* reply) {
    forEachAttr(reply, sizeof(genlmsghdr), [&](const nlattr* a) {
      if (mnl_attr_get_type(a) != IPVS_CMD_ATTR_SERVICE) return;
      IpvsService svc;
      parseService(a, svc);
      out.push_back(svc);
    });
  });
}

int Ipvs::deleteService(const IpvsService& svc) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, IPVS_CMD_DEL_SERVICE, 0);
  nlattr* nest = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_AF, svc.af);
  if (svc.fwmark != 0 || !svc.addr) {
    mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_FWMARK, svc.fwmark);
  } else {
    uint8_t addr[16] = {};
    std::memcpy(addr, svc.addr->bytes.data(), svc.addr->size());
    mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PROTOCOL, svc.protocol);
    mnl_attr_put(nlh, IPVS_SVC_ATTR_ADDR, sizeof(addr), addr);
    mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PORT, htons(svc.port));
  }
  mnl_attr_nest_end(nlh, nest);
  return netlinkQuery(NETLINK_GENERIC, nlh);
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
