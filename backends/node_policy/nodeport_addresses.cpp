// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/nodeport_addresses.h"

#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>

#include "backends/nftnl/elements.h"
#include "backends/nftnl/set_spec.h"
#include "backends/node_policy/main_table.h"

namespace sliceproxy::backends::nft {

std::vector<std::function<void(RuleBuilder&)>> nodePortMatches(const NodeFamily& fam) {
  std::vector<std::function<void(RuleBuilder&)>> out;
  if (fam.net->nodePortPrimaryOnly) {
    out.push_back([&fam](RuleBuilder& b) {
      b.loadAddr(false, fam.family, NFT_REG_1).lookup(NFT_REG_1, mainSetName(kNodePortIps));
    });
  }
  for (const auto& c : fam.net->nodePortAddresses) {
    if (c.addr.family != fam.family) continue;
    out.push_back([c](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      b.matchAddr(false, c);
    });
  }
  if (!fam.net->nodePortPrimaryOnly && fam.net->nodePortAddresses.empty()) {
    const bool v4 = fam.family == proxier::IpFamily::V4;
    out.push_back([v4](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      proxier::Cidr loop =
          v4 ? *proxier::Cidr::parse("127.0.0.0/8") : *proxier::Cidr::parse("::1/128");
      b.matchAddr(false, loop, true);
    });
  }
  return out;
}

void addNodePortIps(Transaction& tx, const NodeFamily& fam, const std::string& table,
                    const proxier::NodeContext* node) {
  addSet(tx, table, mainSetName(kNodePortIps), {ipType(fam.family), fam.addrLen()});
  if (!fam.net->nodePortPrimaryOnly) return;
  std::vector<nftnl_set_elem*> elems;
  if (node) {
    for (const auto& ip : node->primaryIps) {
      if (ip.family == fam.family) elems.push_back(makeElem(Bytes().addr(ip), nullptr));
    }
  }
  if (!elems.empty()) tx.addElements(table, mainSetName(kNodePortIps), elems, "NodePort addresses");
}

}  // namespace sliceproxy::backends::nft
