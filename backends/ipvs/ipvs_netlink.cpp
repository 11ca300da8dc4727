// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/ipvs/ipvs_netlink.h"
#include "backends/ipvs/kernel_error.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sliceproxy::backends::ipvs {

nlmsghdr* genlHeader(char* buf, uint16_t family, uint8_t cmd, uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = family;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  auto* g = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  g->cmd = cmd;
  g->version = family == GENL_ID_CTRL ? 1 : IPVS_GENL_VERSION;
  return nlh;
}

namespace {

uint16_t afOf(const proxier::IpAddr& a) {
  return a.isV4() ? AF_INET : AF_INET6;
}

void putAddr(nlmsghdr* nlh, uint16_t type, const proxier::IpAddr& a) {
  // The kernel reads a union nf_inet_addr: always 16 bytes, IPv4 in the first 4.
  uint8_t raw[16] = {};
  std::memcpy(raw, a.bytes.data(), a.size());
  mnl_attr_put(nlh, type, sizeof(raw), raw);
}

proxier::IpAddr getAddr(const nlattr* a, uint16_t af) {
  proxier::IpAddr ip;
  ip.family = af == AF_INET6 ? proxier::IpFamily::V6 : proxier::IpFamily::V4;
  size_t n = std::min<size_t>(mnl_attr_get_payload_len(a), ip.size());
  std::memcpy(ip.bytes.data(), mnl_attr_get_payload(a), n);
  return ip;
}

void putServiceKey(nlmsghdr* nlh, const VirtualServiceKey& k) {
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_AF, afOf(k.addr));
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PROTOCOL, k.protocol);
  putAddr(nlh, IPVS_SVC_ATTR_ADDR, k.addr);
  mnl_attr_put_u16(nlh, IPVS_SVC_ATTR_PORT, htons(k.port));
}

std::string protoName(uint16_t p) {
  switch (p) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    case IPPROTO_SCTP:
      return "SCTP";
    default:
      return fmt::format("proto {}", p);
  }
}

std::string hostPort(const proxier::IpAddr& a, uint16_t port) {
  return a.isV4() ? fmt::format("{}:{}", a.str(), port) : fmt::format("[{}]:{}", a.str(), port);
}

}  // namespace

std::string VirtualServiceKey::str() const {
  return protoName(protocol) + " " + hostPort(addr, port);
}

std::string VirtualService::str() const {
  std::string s = fmt::format("{} scheduler {}", key.str(), scheduler);
  if (flags & IP_VS_SVC_F_PERSISTENT) s += fmt::format(" persistent {}s", timeout);
  return s;
}

std::string RealServerKey::str() const {
  return hostPort(addr, port);
}

IpvsNetlink::IpvsNetlink() : sock_(NETLINK_GENERIC) {}

std::string IpvsNetlink::open() {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0);
  mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME);
  ++requests_;
  int rc = sock_.query(nlh, [&](const nlmsghdr* reply) {
    forEachAttr(reply, sizeof(genlmsghdr), [&](const nlattr* a) {
      if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID) family_ = mnl_attr_get_u16(a);
    });
  });
  if (rc == ENOENT) {
    return "resolving generic netlink family IPVS: this kernel has no IPVS (module ip_vs neither "
           "built in nor loaded; modprobe ip_vs)";
  }
  if (rc != 0) return kernelError("resolving generic netlink family IPVS", rc);
  if (family_ == 0) return "resolving generic netlink family IPVS: no family id in the answer";
  return "";
}

std::string IpvsNetlink::serviceRequest(uint8_t cmd, const VirtualService& svc, bool full,
                                        const std::string& what) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, cmd, 0);
  nlattr* nest = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
  putServiceKey(nlh, svc.key);
  if (full) {
    // New and changed services need every setting (the kernel's "full entry").
    mnl_attr_put_strz(nlh, IPVS_SVC_ATTR_SCHED_NAME, svc.scheduler.c_str());
    ip_vs_flags flags{svc.flags, ~0u};
    mnl_attr_put(nlh, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags);
    mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_TIMEOUT, svc.timeout);
    // The persistence granularity: one client address (a /32, or a /128 in IPv6 where the
    // kernel reads a prefix length).
    mnl_attr_put_u32(nlh, IPVS_SVC_ATTR_NETMASK, svc.key.addr.isV4() ? 0xffffffffu : 128u);
  }
  mnl_attr_nest_end(nlh, nest);
  ++requests_;
  int rc = sock_.query(nlh);
  return rc == 0 ? "" : kernelError(what, rc);
}

std::string IpvsNetlink::addService(const VirtualService& svc) {
  return serviceRequest(IPVS_CMD_NEW_SERVICE, svc, true,
                        "adding IPVS virtual service " + svc.str());
}

std::string IpvsNetlink::editService(const VirtualService& svc) {
  return serviceRequest(IPVS_CMD_SET_SERVICE, svc, true,
                        "changing IPVS virtual service " + svc.str());
}

std::string IpvsNetlink::deleteService(const VirtualServiceKey& key) {
  VirtualService svc;
  svc.key = key;
  return serviceRequest(IPVS_CMD_DEL_SERVICE, svc, false,
                        "deleting IPVS virtual service " + key.str());
}

std::string IpvsNetlink::destRequest(uint8_t cmd, const VirtualServiceKey& svc,
                                     const RealServer& rs, bool full, const std::string& what) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, cmd, 0);
  nlattr* s = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
  putServiceKey(nlh, svc);
  mnl_attr_nest_end(nlh, s);
  nlattr* d = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_DEST);
  putAddr(nlh, IPVS_DEST_ATTR_ADDR, rs.key.addr);
  mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_PORT, htons(rs.key.port));
  mnl_attr_put_u16(nlh, IPVS_DEST_ATTR_ADDR_FAMILY, afOf(rs.key.addr));
  if (full) {
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_FWD_METHOD, rs.fwdMethod & IP_VS_CONN_F_FWD_MASK);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_WEIGHT, rs.weight);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_U_THRESH, 0);
    mnl_attr_put_u32(nlh, IPVS_DEST_ATTR_L_THRESH, 0);
  }
  mnl_attr_nest_end(nlh, d);
  ++requests_;
  int rc = sock_.query(nlh);
  return rc == 0 ? "" : kernelError(what, rc);
}

std::string IpvsNetlink::addRealServer(const VirtualServiceKey& svc, const RealServer& rs) {
  return destRequest(IPVS_CMD_NEW_DEST, svc, rs, true,
                     fmt::format("adding real server {} weight {} (masquerade) to IPVS virtual "
                                 "service {}",
                                 rs.key.str(), rs.weight, svc.str()));
}

std::string IpvsNetlink::editRealServer(const VirtualServiceKey& svc, const RealServer& rs) {
  return destRequest(IPVS_CMD_SET_DEST, svc, rs, true,
                     fmt::format("setting real server {} of IPVS virtual service {} to weight {}",
                                 rs.key.str(), svc.str(), rs.weight));
}

std::string IpvsNetlink::deleteRealServer(const VirtualServiceKey& svc, const RealServerKey& rs) {
  RealServer r;
  r.key = rs;
  return destRequest(
      IPVS_CMD_DEL_DEST, svc, r, false,
      fmt::format("deleting real server {} from IPVS virtual service {}", rs.str(), svc.str()));
}

std::string IpvsNetlink::listServices(std::vector<VirtualService>& out) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, IPVS_CMD_GET_SERVICE, NLM_F_DUMP);
  ++requests_;
  int rc = sock_.query(nlh, [&](const nlmsghdr* reply) {
    forEachAttr(reply, sizeof(genlmsghdr), [&](const nlattr* nest) {
      if (mnl_attr_get_type(nest) != IPVS_CMD_ATTR_SERVICE) return;
      VirtualService svc;
      uint16_t af = AF_INET;
      const nlattr* addr = nullptr;
      uint32_t fwmark = 0;
      forEachNested(nest, [&](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
          case IPVS_SVC_ATTR_AF:
            af = mnl_attr_get_u16(a);
            break;
          case IPVS_SVC_ATTR_PROTOCOL:
            svc.key.protocol = mnl_attr_get_u16(a);
            break;
          case IPVS_SVC_ATTR_ADDR:
            addr = a;
            break;
          case IPVS_SVC_ATTR_PORT:
            svc.key.port = ntohs(mnl_attr_get_u16(a));
            break;
          case IPVS_SVC_ATTR_FWMARK:
            fwmark = mnl_attr_get_u32(a);
            break;
          case IPVS_SVC_ATTR_SCHED_NAME:
            svc.scheduler = mnl_attr_get_str(a);
            break;
          case IPVS_SVC_ATTR_FLAGS:
            if (mnl_attr_get_payload_len(a) >= sizeof(ip_vs_flags)) {
              // HASHED is the kernel's bookkeeping, not a setting anyone programs.
              svc.flags = static_cast<const ip_vs_flags*>(mnl_attr_get_payload(a))->flags &
                          ~IP_VS_SVC_F_HASHED;
            }
            break;
          case IPVS_SVC_ATTR_TIMEOUT:
            svc.timeout = mnl_attr_get_u32(a);
            break;
          default:
            break;
        }
      });
      if (fwmark != 0 || !addr) return;  // not ours: sliceproxy programs no fwmark services
      svc.key.addr = getAddr(addr, af);
      out.push_back(std::move(svc));
    });
  });
  return rc == 0 ? "" : kernelError("listing IPVS virtual services", rc);
}

std::string IpvsNetlink::listRealServers(const VirtualServiceKey& svc,
                                         std::vector<RealServer>& out) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = genlHeader(buf, family_, IPVS_CMD_GET_DEST, NLM_F_DUMP);
  nlattr* s = mnl_attr_nest_start(nlh, IPVS_CMD_ATTR_SERVICE);
  putServiceKey(nlh, svc);
  mnl_attr_nest_end(nlh, s);
  ++requests_;
  int rc = sock_.query(nlh, [&](const nlmsghdr* reply) {
    forEachAttr(reply, sizeof(genlmsghdr), [&](const nlattr* nest) {
      if (mnl_attr_get_type(nest) != IPVS_CMD_ATTR_DEST) return;
      RealServer rs;
      uint16_t af = afOf(svc.addr);
      const nlattr* addr = nullptr;
      forEachNested(nest, [&](const nlattr* a) {
        switch (mnl_attr_get_type(a)) {
          case IPVS_DEST_ATTR_ADDR:
            addr = a;
            break;
          case IPVS_DEST_ATTR_ADDR_FAMILY:
            af = mnl_attr_get_u16(a);
            break;
          case IPVS_DEST_ATTR_PORT:
            rs.key.port = ntohs(mnl_attr_get_u16(a));
            break;
          case IPVS_DEST_ATTR_FWD_METHOD:
            rs.fwdMethod = mnl_attr_get_u32(a);
            break;
          case IPVS_DEST_ATTR_WEIGHT:
            rs.weight = mnl_attr_get_u32(a);
            break;
          case IPVS_DEST_ATTR_ACTIVE_CONNS:
            rs.activeConns = mnl_attr_get_u32(a);
            break;
          case IPVS_DEST_ATTR_INACT_CONNS:
            rs.inactiveConns = mnl_attr_get_u32(a);
            break;
          default:
            break;
        }
      });
      if (!addr) return;
      rs.key.addr = getAddr(addr, af);
      out.push_back(rs);
    });
  });
  return rc == 0 ? ""
                 : kernelError("listing the real servers of IPVS virtual service " + svc.str(), rc);
}

}  // namespace sliceproxy::backends::ipvs
