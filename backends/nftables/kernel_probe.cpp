#include "backends/nftables/kernel_probe.h"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace sliceproxy::backends::nft {

std::string kernelSupport() {
  std::unique_ptr<mnl_socket, decltype(&mnl_socket_close)> nl(mnl_socket_open(NETLINK_NETFILTER),
                                                              &mnl_socket_close);
  if (!nl) return fmt::format("netlink netfilter socket: {}", std::strerror(errno));
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return fmt::format("netlink netfilter socket: {}", std::strerror(errno));
  }
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = 1;
  auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  if (mnl_socket_sendto(nl.get(), nlh, nlh->nlmsg_len) < 0) {
    return fmt::format("nf_tables request: {}", std::strerror(errno));
  }
  const unsigned portid = mnl_socket_get_portid(nl.get());
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl.get(), buf.data(), buf.size());
    if (n < 0) return fmt::format("nf_tables answer: {}", std::strerror(errno));
    int ret = mnl_cb_run(buf.data(), static_cast<size_t>(n), 1, portid, nullptr, nullptr);
    if (ret == MNL_CB_STOP) return "";
    if (ret < 0) {
      if (errno == EPERM) return "nf_tables: permission denied (needs CAP_NET_ADMIN)";
      return fmt::format(
          "nf_tables (the kernel's nftables: CONFIG_NF_TABLES, module nf_tables) does not "
          "answer: {}",
          std::strerror(errno));
    }
  }
}

}  // namespace sliceproxy::backends::nft
