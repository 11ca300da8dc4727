// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "proxier/cmd/kube_proxy_cleanup/nft_tables.h"

#include <fmt/format.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <cstring>
#include <stdexcept>

#include "proxier/cmd/kube_proxy_cleanup/netlink_query.h"
#include "backends/nftnl/transaction.h"

namespace sliceproxy::proxier::kube_proxy_cleanup {

namespace {

// Dumps one kind of nftables object (all families) and hands each message to onReply.
int dump(uint16_t type, const std::function<void(const nlmsghdr*)>& onReply) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_UNSPEC, NLM_F_DUMP, 0);
  return netlinkQuery(NETLINK_NETFILTER, nlh, onReply);
}

}  // namespace

std::string nftFamilyName(uint16_t family) {
  switch (family) {
    case NFPROTO_IPV4:
      return "ip";
    case NFPROTO_IPV6:
      return "ip6";
    case NFPROTO_INET:
      return "inet";
    case NFPROTO_ARP:
      return "arp";
    case NFPROTO_BRIDGE:
      return "bridge";
    case NFPROTO_NETDEV:
      return "netdev";
    default:
      return fmt::format("family {}", family);
  }
}

int listNftTables(std::vector<NftTable>& out) {
  return dump(NFT_MSG_GETTABLE, [&](const nlmsghdr* nlh) {
    nftnl_table* t = nftnl_table_alloc();
    if (nftnl_table_nlmsg_parse(nlh, t) == 0) {
      out.push_back({static_cast<uint16_t>(nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY)),
                     nftnl_table_get_str(t, NFTNL_TABLE_NAME)});
    }
    nftnl_table_free(t);
  });
}

int countNftObjects(uint16_t family, const std::string& name, size_t& chains, size_t& sets) {
  chains = sets = 0;
  int rc = dump(NFT_MSG_GETCHAIN, [&](const nlmsghdr* nlh) {
    nftnl_chain* c = nftnl_chain_alloc();
    if (nftnl_chain_nlmsg_parse(nlh, c) == 0 &&
        nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY) == family &&
        name == nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE)) {
      ++chains;
    }
    nftnl_chain_free(c);
  });
  if (rc != 0) return rc;
  return dump(NFT_MSG_GETSET, [&](const nlmsghdr* nlh) {
    nftnl_set* s = nftnl_set_alloc();
    if (nftnl_set_nlmsg_parse(nlh, s) == 0 && nftnl_set_get_u32(s, NFTNL_SET_FAMILY) == family &&
        name == nftnl_set_get_str(s, NFTNL_SET_TABLE)) {
      ++sets;
    }
    nftnl_set_free(s);
  });
}

std::string deleteNftTable(uint16_t family, const std::string& name) {
  // The caller names the table; the kernel's refusal is about deleting it.
  const std::string what = "the table's deletion";
  try {
    backends::nft::Socket sock;
    backends::nft::Transaction tx(sock, family);
    tx.deleteTable(name, what);
    auto res = tx.commit();
    return res.ok ? "" : res.error;
  } catch (const std::exception& e) {
    return fmt::format("{}: {}", what, e.what());
  }
}

}  // namespace sliceproxy::proxier::kube_proxy_cleanup
