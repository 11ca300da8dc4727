// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/source_ranges.h"

#include <fmt/format.h>
#include <linux/netfilter.h>

#include "backends/nftnl/rule_builder.h"
#include "backends/node_policy/main_table.h"

namespace sliceproxy::backends::nft {

std::string firewallChainName(uint32_t id, const std::string& tag,
                              const proxier::ServicePortInfo& info) {
  if (info.loadBalancerIPs.empty() || info.loadBalancerSourceRanges.empty()) return {};
  return fmt::format("fw-{}-{}", id, tag);
}

void addFirewallRules(Transaction& tx, const proxier::ServicePortInfo& info,
                      const std::string& chain) {
  const std::string svc = info.key.str();
  for (const auto& range : info.loadBalancerSourceRanges) {
    RuleBuilder b;
    b.matchAddr(true, range).verdict(NFT_RETURN);
    tx.addRule(kMainTableName, chain, b.release(), svc + ": allowed source " + range.str());
  }
  RuleBuilder b;
  b.verdict(NF_DROP);
  tx.addRule(kMainTableName, chain, b.release(), svc + ": other sources");
}

}  // namespace sliceproxy::backends::nft
