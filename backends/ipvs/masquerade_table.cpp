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

#include "backends/nftnl/elements.h"
#include "backends/nftnl/rule_builder.h"
#include "backends/nftnl/set_spec.h"
#include "backends/nftnl/transaction.h"
#include "backends/node_policy/local_traffic.h"
#include "backends/node_policy/packet_keys.h"

namespace sliceproxy::backends::ipvs {

using nft::RuleBuilder;
using nft::Transaction;
using proxier::IpAddr;

namespace {

const std::string kTable = kMasqueradeTable;
const char* kClusterSet = "cluster-ips";
const char* kExternalSet = "external";
const char* kExternalLocalSet = "external-local";
const char* kShortCircuitMap = "short-circuit";
const char* kHairpinSet = "hairpin";
const char* kChain = "nat-postrouting";

nft::Bytes keyOf(const IpAddr& a) {
  return nft::Bytes().addr(a);
}
nft::Bytes hairpinKey(const IpAddr& a) {
  return nft::Bytes().addr(a).addr(a);
}
// address . protocol . port, as the frontend map keys of the node policy.
nft::Bytes keyOf(const VirtualServiceKey& k) {
  nft::Bytes b = nft::Bytes().addr(k.addr);
  b.b[b.len] = static_cast<uint8_t>(k.protocol);
  b.len += 4;
  return b.port(k.port);
}

template <typename T, typename KeyFn>
void changeSet(Transaction& tx, const char* set, const std::set<T>& have, const std::set<T>& want,
               KeyFn key) {
  std::vector<nftnl_set_elem*> add, del;
  for (const auto& x : have) {
    if (!want.count(x)) del.push_back(nft::makeElem(key(x), nullptr));
  }
  for (const auto& x : want) {
    if (!have.count(x)) add.push_back(nft::makeElem(key(x), nullptr));
  }
  if (!del.empty()) tx.deleteElements(kTable, set, del, std::string("removing from set ") + set);
  if (!add.empty()) tx.addElements(kTable, set, add, std::string("adding to set ") + set);
}

void changeMap(Transaction& tx, const std::map<VirtualServiceKey, VirtualServiceKey>& have,
               const std::map<VirtualServiceKey, VirtualServiceKey>& want) {
  std::vector<nftnl_set_elem*> add, del;
  for (const auto& [k, v] : have) {
    auto w = want.find(k);
    if (w == want.end() || w->second != v) del.push_back(nft::makeElem(keyOf(k), nullptr));
  }
  for (const auto& [k, v] : want) {
    auto h = have.find(k);
    if (h != have.end() && h->second == v) continue;
    const nft::ElemValue to{nft::ElemValue::Data, "", nft::Bytes().addr(v.addr).port(v.port)};
    add.push_back(nft::makeElem(keyOf(k), &to));
  }
  if (!del.empty()) tx.deleteElements(kTable, kShortCircuitMap, del, "removing short-circuits");
  if (!add.empty()) tx.addElements(kTable, kShortCircuitMap, add, "adding short-circuits");
}

// ct original ip daddr @set (ip6 daddr)
void originalDaddrIn(RuleBuilder& b, const char* set, bool v4) {
  b.ct(v4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, NFT_REG_1, IP_CT_DIR_ORIGINAL).lookup(NFT_REG_1, set);
}

// ct original daddr . protocol . proto-dst @set
void originalFrontendIn(RuleBuilder& b, const char* set, bool v4) {
  const uint32_t aw = v4 ? 1 : 4;
  b.ct(v4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, nft::reg32(0), IP_CT_DIR_ORIGINAL);
  b.ct(NFT_CT_PROTOCOL, nft::reg32(aw), IP_CT_DIR_ORIGINAL);
  b.ct(NFT_CT_PROTO_DST, nft::reg32(aw + 1), IP_CT_DIR_ORIGINAL);
  b.lookup(nft::reg32(0), set);
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

std::string MasqueradeTable::replace(const MasqueradeState& want,
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
  const uint32_t ip = nft::ipType(family_);
  const uint32_t frontend = nft::concatType({ip, nft::kTypeProto, nft::kTypeService});
  nft::addSet(tx, kTable, kClusterSet, nft::SetSpec{ip, al});
  nft::addSet(tx, kTable, kExternalSet, nft::SetSpec{frontend, al + 8});
  nft::addSet(tx, kTable, kExternalLocalSet, nft::SetSpec{frontend, al + 8});
  nft::addSet(tx, kTable, kShortCircuitMap,
              nft::SetSpec{frontend, al + 8, NFT_SET_MAP, nft::concatType({ip, nft::kTypeService}),
                           al + 4});
  nft::addSet(tx, kTable, kHairpinSet, nft::SetSpec{nft::concatType({ip, ip}), 2 * al});
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
    originalFrontendIn(b, kExternalSet, v4);
    rule(b, "masquerade traffic to an external address or NodePort");
  }
  {
    RuleBuilder b;
    originalFrontendIn(b, kExternalLocalSet, v4);
    b.fibAddrTypeLocal(true);
    rule(b, "masquerade the node's own traffic to an externalTrafficPolicy Local frontend");
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
  nft::NodeFamily fam{family_, nfproto_, &net_};
  {
    // To a clusterIP: masquerade what does not come from pods (--detect-local-mode), or all of
    // it with --masquerade-all; with no detection, only the rules above.
    RuleBuilder b;
    originalDaddrIn(b, kClusterSet, v4);
    bool any = net_.masqueradeAll || nft::matchLocalTraffic(b, fam, nodePodCIDR, true);
    if (any) {
      rule(b, net_.masqueradeAll ? "masquerade all traffic to a clusterIP"
                                 : "masquerade traffic to a clusterIP from outside the pods");
    }
  }
  {
    // externalTrafficPolicy Local short-circuit, before IPVS (input 99, output -98): pods and
    // the node go to the clusterIP's virtual service, outside clients stay on the frontend's.
    auto dnat = [&](RuleBuilder& b) {
      nft::loadFrontend(b, fam);
      b.mapLookup(nft::reg32(0), kShortCircuitMap, nft::reg32(0));
      b.nat(NFT_NAT_DNAT, nfproto_, nft::reg32(0), nft::reg32(al / 4), 0);
    };
    nft::Hook pre{"nat", NF_INET_PRE_ROUTING, -100}, out{"nat", NF_INET_LOCAL_OUT, -100};
    tx.addChain(kTable, "nat-prerouting", &pre);
    tx.addChain(kTable, "nat-output", &out);
    RuleBuilder b;
    if (nft::matchLocalTraffic(b, fam, nodePodCIDR, false)) {
      dnat(b);
      tx.addRule(kTable, "nat-prerouting", b.release(),
                 "pods to an externalTrafficPolicy Local frontend: its clusterIP");
    }
    RuleBuilder n;
    n.fibAddrTypeLocal(true);
    dnat(n);
    tx.addRule(kTable, "nat-output", n.release(),
               "the node to an externalTrafficPolicy Local frontend: its clusterIP");
  }
  MasqueradeState none;
  changeSet(tx, kClusterSet, none.cluster, want.cluster, [](const IpAddr& a) { return keyOf(a); });
  changeSet(tx, kExternalSet, none.external, want.external,
            [](const VirtualServiceKey& k) { return keyOf(k); });
  changeSet(tx, kExternalLocalSet, none.externalLocal, want.externalLocal,
            [](const VirtualServiceKey& k) { return keyOf(k); });
  changeMap(tx, none.shortCircuit, want.shortCircuit);
  changeSet(tx, kHairpinSet, none.hairpin, want.hairpin, hairpinKey);
  auto res = tx.commit();
  if (!res.ok) return res.error;
  have_ = want;
  podCIDR_ = nodePodCIDR ? std::optional<proxier::Cidr>(*nodePodCIDR) : std::nullopt;
  built_ = true;
  return "";
}

std::string MasqueradeTable::update(const MasqueradeState& want, const proxier::Cidr* nodePodCIDR) {
  std::optional<proxier::Cidr> pod =
      nodePodCIDR ? std::optional<proxier::Cidr>(*nodePodCIDR) : std::nullopt;
  if (!built_ || pod != podCIDR_) return replace(want, nodePodCIDR);
  if (want == have_) return "";
  Transaction tx(sock(), nfproto_);
  changeSet(tx, kClusterSet, have_.cluster, want.cluster, [](const IpAddr& a) { return keyOf(a); });
  changeSet(tx, kExternalSet, have_.external, want.external,
            [](const VirtualServiceKey& k) { return keyOf(k); });
  changeSet(tx, kExternalLocalSet, have_.externalLocal, want.externalLocal,
            [](const VirtualServiceKey& k) { return keyOf(k); });
  changeMap(tx, have_.shortCircuit, want.shortCircuit);
  changeSet(tx, kHairpinSet, have_.hairpin, want.hairpin, hairpinKey);
  if (!tx.empty()) {
    auto res = tx.commit();
    if (!res.ok) {
      built_ = false;  // the next update replaces the table (another program may have removed it)
      return res.error;
    }
  }
  have_ = want;
  return "";
}

std::string MasqueradeTable::remove() {
  auto tables = nft::listTables(sock(), nfproto_);
  if (!tables.ok) return tables.error;
  built_ = false;
  have_ = {};
  if (std::find(tables.names.begin(), tables.names.end(), kTable) == tables.names.end()) return "";
  Transaction tx(sock(), nfproto_);
  tx.deleteTable(kTable, std::string(family_ == proxier::IpFamily::V4 ? "removing table ip "
                                                                      : "removing table ip6 ") +
                             kTable);
  auto res = tx.commit();
  return res.ok ? "" : res.error;
}

}  // namespace sliceproxy::backends::ipvs
