#include "backends/ipvs/dummy_interface.h"

#include <fmt/format.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "backends/ipvs/kernel_error.h"
#include "backends/ipvs/netlink_link.h"

namespace sliceproxy::backends::ipvs {

DummyInterface::DummyInterface(std::string name) : name_(std::move(name)), sock_(NETLINK_ROUTE) {}

int DummyInterface::lookup() {
  LinkInfo link;
  const int rc = findLink(sock_, name_, link);
  index_ = link.index;
  return rc;
}

std::string DummyInterface::ensure() {
  if (int rc = lookup()) return kernelError("looking up link " + name_, rc);
  if (index_ == 0) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
    auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name_.c_str());
    nlattr* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "dummy");
    mnl_attr_nest_end(nlh, info);
    if (int rc = sock_.query(nlh)) {
      return kernelError(
          "creating dummy link " + name_ +
              (rc == EOPNOTSUPP ? " (this kernel has no dummy driver: modprobe dummy)" : ""),
          rc);
    }
    if (int rc = lookup()) return kernelError("looking up link " + name_, rc);
    if (index_ == 0) return "creating dummy link " + name_ + ": the link is not there afterwards";
  }
  // Like kube-ipvs0 the link stays down: its addresses still get local routes (so traffic to them
  // is delivered locally), but the node never answers ARP or NDP for them on its behalf.
  addrs_.clear();
  if (int rc = listAddresses(addrs_)) return kernelError("listing the addresses of " + name_, rc);
  return "";
}

int DummyInterface::listAddresses(std::set<proxier::IpAddr>& out) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETADDR;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_UNSPEC;
  return sock_.query(nlh, [&](const nlmsghdr* reply) {
    if (reply->nlmsg_type != RTM_NEWADDR) return;
    const auto* m = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(reply));
    if (static_cast<int>(m->ifa_index) != index_) return;
    forEachAttr(reply, sizeof(ifaddrmsg), [&](const nlattr* a) {
      if (mnl_attr_get_type(a) != IFA_ADDRESS) return;
      proxier::IpAddr ip;
      ip.family = m->ifa_family == AF_INET6 ? proxier::IpFamily::V6 : proxier::IpFamily::V4;
      if (mnl_attr_get_payload_len(a) < ip.size()) return;
      std::memcpy(ip.bytes.data(), mnl_attr_get_payload(a), ip.size());
      out.insert(ip);
    });
  });
}

std::string DummyInterface::missing() {
  if (index_ == 0) return "";  // not created yet: nothing to miss
  LinkInfo link;
  // A lookup that fails says nothing about the link; the next check asks again.
  if (findLink(sock_, name_, link) != 0) return "";
  if (!link.exists || link.index == 0) return "link " + name_ + " removed";
  if (link.index != index_) return "link " + name_ + " removed and created again";
  std::set<proxier::IpAddr> have;
  if (listAddresses(have) != 0) return "";
  size_t gone = 0;
  std::string first;
  for (const auto& a : addrs_) {
    if (have.count(a)) continue;
    if (gone++ == 0) first = a.str();
  }
  if (gone == 0) return "";
  return gone == 1 ? fmt::format("address {} removed from link {}", first, name_)
                   : fmt::format("{} addresses ({}, ...) removed from link {}", gone, first, name_);
}

std::string DummyInterface::addressRequest(uint16_t type, const proxier::IpAddr& a) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_REPLACE : 0);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = a.isV4() ? AF_INET : AF_INET6;
  ifa->ifa_prefixlen = a.isV4() ? 32 : 128;
  ifa->ifa_index = static_cast<unsigned>(index_);
  // No duplicate address detection: the address is a service's, not a host's.
  ifa->ifa_flags = a.isV4() ? 0 : IFA_F_NODAD;
  mnl_attr_put(nlh, IFA_LOCAL, a.size(), a.bytes.data());
  mnl_attr_put(nlh, IFA_ADDRESS, a.size(), a.bytes.data());
  if (!a.isV4() && type == RTM_NEWADDR) {
    // Deprecated (preferred lifetime 0, valid forever): IPv6 source selection then never picks
    // a service address for the node's own or masqueraded traffic, as it would by longest match.
    ifa_cacheinfo ci{};
    ci.ifa_prefered = 0;
    ci.ifa_valid = 0xffffffffu;
    mnl_attr_put(nlh, IFA_CACHEINFO, sizeof(ci), &ci);
  }
  int rc = sock_.query(nlh);
  if (type == RTM_DELADDR && rc == EADDRNOTAVAIL) rc = 0;  // already gone
  if (rc) {
    return kernelError(
        fmt::format("{} address {} {} {}", type == RTM_NEWADDR ? "adding" : "removing", a.str(),
                    type == RTM_NEWADDR ? "to" : "from", name_),
        rc);
  }
  return "";
}

std::string DummyInterface::addAddress(const proxier::IpAddr& a) {
  if (addrs_.count(a)) return "";
  std::string err = addressRequest(RTM_NEWADDR, a);
  if (err.empty()) addrs_.insert(a);
  return err;
}

std::string DummyInterface::removeAddress(const proxier::IpAddr& a) {
  if (!addrs_.count(a)) return "";
  std::string err = addressRequest(RTM_DELADDR, a);
  if (err.empty()) addrs_.erase(a);
  return err;
}

std::string DummyInterface::remove() {
  if (int rc = lookup()) return kernelError("looking up link " + name_, rc);
  addrs_.clear();
  if (index_ == 0) return "";
  int rc = deleteLink(sock_, index_);
  index_ = 0;
  return rc == 0 || rc == ENODEV ? "" : kernelError("deleting link " + name_, rc);
}

}  // namespace sliceproxy::backends::ipvs
