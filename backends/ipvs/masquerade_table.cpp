// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/ipvs/masquerade_table.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tuple_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "backends/nftnl/rule_builder.h"
#include "backends/nftnl/set_spec.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/local_traffic.h"

namespace sliceproxy::backends::ipvs {

using nft::RuleBuilder;
using nft::Transaction;
using proxier::IpAddr;

namespace {

const std::string kTable = kMasqueradeTable;
const char* kClusterSet = "cluster-ips";
const char* kExternalSet = "external-ips";
const char* kHairpinSet = "hairpin";
const char* kChain = "nat-postrouting";

// One address per element, or, for the hairpin set, the address twice (saddr . daddr).
std::vector<nftnl_set_elem*> elems(const std::vector<IpAddr>& addrs, bool twice) {
  std::vector<nftnl_set_elem*> out;
  for (const auto& a : addrs) {
    nftnl_set_elem* e = nftnl_set_elem_alloc();
    uint8_t key[32];
    const size_t n = a.size();
    std::memcpy(key, a.bytes.data(), n);
    if (twice) std::memcpy(key + n, a.bytes.data(), n);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, static_cast<uint32_t>(twice ? 2 * n : n));
    out.push_back(e);
  }
  return out;
}

void changeSet(Transaction& tx, const char* set, const std::set<IpAddr>& have,
               const std::set<IpAddr>& want) {
  std::vector<IpAddr> add, del;
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(add));
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(del));
  const bool twice = std::string_view(set) == kHairpinSet;
  auto a = elems(add, twice), d = elems(del, twice);
  if (!d.empty()) tx.deleteElements(kTable, set, d, std::string("removing from set ") + set);
  if (!a.empty()) tx.addElements(kTable, set, a, std::string("adding to set ") + set);
}

// ct original ip daddr @set (ip6 daddr)
void originalDaddrIn(RuleBuilder& b, const char* set, bool v4) {
  b.ct(v4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, NFT_REG_1, IP_CT_DIR_ORIGINAL).lookup(NFT_REG_1, set);
}

}  // namespace

MasqueradeTable::MasqueradeTable(const proxier::NetworkConfig& net, proxier::IpFamily family)
    : net_(net),
      family_(family),
      nfproto_(family == proxier::IpFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6) {}
MasqueradeTable::~MasqueradeTable() = default;

nft::Socket& MasqueradeTable::sock() {
  if (!sock_) sock_ = std::make_unique<nft::Socket>();
  return *sock_;
}

std::string MasqueradeTable::replace(const std::set<IpAddr>& clusterIps,
                                     const std::set<IpAddr>& externalIps,
                                     const std::set<IpAddr>& hairpin,
                                     const proxier::Cidr* nodePodCIDR) {
  const bool v4 = family_ == proxier::IpFamily::V4;
  auto tables = nft::listTables(sock(), nfproto_);
  if (!tables.ok) return tables.error;
  Transaction tx(sock(), nfproto_);
  if (std::find(tables.names.begin(), tables.names.end(), kTable) != tables.names.end()) {
    tx.deleteTable(kTable,
                   std::string(v4 ? "replacing table ip " : "replacing table ip6 ") + kTable);
  }
  tx.addTable(kTable);
  const uint32_t al = v4 ? 4 : 16;
  nft::addSet(tx, kTable, kClusterSet, nft::SetSpec{nft::ipType(family_), al});
  nft::addSet(tx, kTable, kExternalSet, nft::SetSpec{nft::ipType(family_), al});
  nft::addSet(tx, kTable, kHairpinSet,
              nft::SetSpec{nft::concatType({nft::ipType(family_), nft::ipType(family_)}), 2 * al});
  nft::Hook hook{"nat", NF_INET_POST_ROUTING, 100};
  tx.addChain(kTable, kChain, &hook);
  const IpAddr* snat = net_.snatAddress(family_);
  auto rule = [&](RuleBuilder& b, const std::string& what) {
    // --snat-address: SNAT to that address instead of the egress interface's.
    if (snat) {
      b.immediate(NFT_REG_1, snat->bytes.data(), al);
      b.nat(NFT_NAT_SNAT, nfproto_, NFT_REG_1, 0, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
    } else {
      b.masq(NF_NAT_RANGE_PROTO_RANDOM_FULLY);
    }
    tx.addRule(kTable, kChain, b.release(), "rule " + what + " in chain " + kChain);
  };
  {
    RuleBuilder b;
    originalDaddrIn(b, kExternalSet, v4);
    rule(b, "masquerade traffic from outside to an external address or NodePort");
  }
  {
    // Hairpin: IPVS sent a pod's connection to a clusterIP back to that pod.
    RuleBuilder b;
    originalDaddrIn(b, kClusterSet, v4);
    b.loadAddr(true, family_, nft::reg32(0)).loadAddr(false, family_, nft::reg32(al / 4));
    b.lookup(nft::reg32(0), kHairpinSet);
    rule(b, "masquerade a pod that reached itself through a clusterIP");
  }
  {
    RuleBuilder b;
    originalDaddrIn(b, kClusterSet, v4);
    b.fibAddrTypeLocal(true);
    rule(b, "masquerade the node's own traffic to a clusterIP");
  }
  {
    // To a clusterIP: masquerade what does not come from pods (--detect-local-mode), or all of
    // it with --masquerade-all; with no detection, only the rules above.
    RuleBuilder b;
    originalDaddrIn(b, kClusterSet, v4);
    nft::NodeFamily fam{family_, nfproto_, &net_};
    bool any = net_.masqueradeAll || nft::matchLocalTraffic(b, fam, nodePodCIDR, true);
    if (any) {
      rule(b, net_.masqueradeAll ? "masquerade all traffic to a clusterIP"
                                 : "masquerade traffic to a clusterIP from outside the pods");
    }
  }
  changeSet(tx, kClusterSet, {}, clusterIps);
  changeSet(tx, kExternalSet, {}, externalIps);
  changeSet(tx, kHairpinSet, {}, hairpin);
  auto res = tx.commit();
  if (!res.ok) return res.error;
  cluster_ = clusterIps;
  external_ = externalIps;
  hairpin_ = hairpin;
  podCIDR_ = nodePodCIDR ? std::optional<proxier::Cidr>(*nodePodCIDR) : std::nullopt;
  built_ = true;
  return "";
}

std::string MasqueradeTable::update(const std::set<IpAddr>& clusterIps,
                                    const std::set<IpAddr>& externalIps,
                                    const std::set<IpAddr>& hairpin,
                                    const proxier::Cidr* nodePodCIDR) {
  std::optional<proxier::Cidr> pod =
      nodePodCIDR ? std::optional<proxier::Cidr>(*nodePodCIDR) : std::nullopt;
  if (!built_ || pod != podCIDR_) return replace(clusterIps, externalIps, hairpin, nodePodCIDR);
  if (clusterIps == cluster_ && externalIps == external_ && hairpin == hairpin_) return "";
  Transaction tx(sock(), nfproto_);
  changeSet(tx, kClusterSet, cluster_, clusterIps);
  changeSet(tx, kExternalSet, external_, externalIps);
  changeSet(tx, kHairpinSet, hairpin_, hairpin);
  if (!tx.empty()) {
    auto res = tx.commit();
    if (!res.ok) return res.error;
  }
  cluster_ = clusterIps;
  external_ = externalIps;
  hairpin_ = hairpin;
  return "";
}

std::string MasqueradeTable::remove() {
  auto tables = nft::listTables(sock(), nfproto_);
  if (!tables.ok) return tables.error;
  built_ = false;
  cluster_.clear();
  external_.clear();
  hairpin_.clear();
  if (std::find(tables.names.begin(), tables.names.end(), kTable) == tables.names.end()) return "";
  Transaction tx(sock(), nfproto_);
  tx.deleteTable(kTable, std::string(family_ == proxier::IpFamily::V4 ? "removing table ip "
                                                                      : "removing table ip6 ") +
                             kTable);
  auto res = tx.commit();
  return res.ok ? "" : res.error;
}

}  // namespace sliceproxy::backends::ipvs
