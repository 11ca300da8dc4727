// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/layout.h"

#include <fmt/format.h>

#include <functional>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>

#include "backends/nftnl/elements.h"
#include "backends/nftnl/rule_builder.h"

namespace sliceproxy::backends::nft {

using proxier::IpFamily;

namespace {

// nft's datatype numbers, so that `nft list ruleset` shows these sets readably.
constexpr uint32_t kTypeVerdict = 1, kTypeIp4 = 7, kTypeIp6 = 8, kTypeProto = 12,
                   kTypeService = 13, kTypeMark = 19;

uint32_t concat(std::initializer_list<uint32_t> types) {
  uint32_t t = 0;
  for (uint32_t x : types) t = (t << 6) | x;
  return t;
}

struct SetSpec {
  uint32_t keyType, keyLen;
  uint32_t flags = 0;
  uint32_t dataType = 0, dataLen = 0;  // maps only
};

void addSet(Transaction& tx, const std::string& table, const std::string& name, const SetSpec& s) {
  nftnl_set* set = nftnl_set_alloc();
  nftnl_set_set_str(set, NFTNL_SET_NAME, name.c_str());
  nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, s.keyType);
  nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, s.keyLen);
  nftnl_set_set_u32(set, NFTNL_SET_FLAGS, s.flags);
  if (s.flags & NFT_SET_MAP) {
    nftnl_set_set_u32(set, NFTNL_SET_DATA_TYPE,
                      s.dataType == kTypeVerdict ? NFT_DATA_VERDICT : s.dataType);
    nftnl_set_set_u32(set, NFTNL_SET_DATA_LEN, s.dataLen);
  }
  tx.addSet(table, set, "set " + name);
}

// Matches of the local addresses that accept NodePorts: every local address but loopback (as
// kube-proxy's nftables mode), or the local addresses inside the --nodeport-addresses CIDRs (one
// rule per CIDR, so addresses added to interfaces later are covered), or the Node's InternalIPs
// for "primary" (in the table's nodeport-ips set).
std::vector<std::function<void(RuleBuilder&)>> nodePortMatches(const FamilyContext& ctx) {
  std::vector<std::function<void(RuleBuilder&)>> out;
  if (ctx.net->nodePortPrimaryOnly) {
    out.push_back([&ctx](RuleBuilder& b) {
      b.loadAddr(false, ctx.family, NFT_REG_1).lookup(NFT_REG_1, setName(kNodePortIps));
    });
  }
  for (const auto& c : ctx.net->nodePortAddresses) {
    if (c.addr.family != ctx.family) continue;
    out.push_back([c](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      b.matchAddr(false, c);
    });
  }
  if (!ctx.net->nodePortPrimaryOnly && ctx.net->nodePortAddresses.empty()) {
    const bool v4 = ctx.family == IpFamily::V4;
    out.push_back([v4](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      proxier::Cidr loop =
          v4 ? *proxier::Cidr::parse("127.0.0.0/8") : *proxier::Cidr::parse("::1/128");
      b.matchAddr(false, loop, true);
    });
  }
  return out;
}

void loadFrontend(RuleBuilder& b, const FamilyContext& ctx) {
  b.loadAddr(false, ctx.family, reg32(0));
  b.meta(NFT_META_L4PROTO, reg32(ctx.addrWords()));
  b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(ctx.addrWords() + 1));
}

void loadNodePort(RuleBuilder& b) {
  b.meta(NFT_META_L4PROTO, reg32(0));
  b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(1));
}

uint32_t ipType(const FamilyContext& ctx) {
  return ctx.family == IpFamily::V4 ? kTypeIp4 : kTypeIp6;
}

void addNodePortIps(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                    const proxier::NodeContext* node) {
  addSet(tx, table, setName(kNodePortIps), {ipType(ctx), ctx.addrLen()});
  if (!ctx.net->nodePortPrimaryOnly) return;
  std::vector<nftnl_set_elem*> elems;
  if (node && node->node) {
    for (const auto& a : node->node->addresses) {
      if (a.ip && a.ip->family == ctx.family && a.type == "InternalIP") {
        elems.push_back(makeElem(Bytes().addr(*a.ip), nullptr));
      }
    }
  }
  if (!elems.empty()) tx.addElements(table, setName(kNodePortIps), elems, "NodePort addresses");
}

}  // namespace

std::string serviceTableName(uint32_t shard) { return fmt::format("sliceproxy-svc-{}", shard); }

bool isOwnTable(const std::string& name) {
  return name == kTable || name.starts_with("sliceproxy-svc-");
}

uint32_t serviceTablesFor(size_t ports) {
  uint32_t k = 1;
  while (k < kMaxServiceTables && static_cast<size_t>(k) * 1024 < ports) k *= 2;
  return k;
}

const char* setName(uint8_t id) {
  static const char* names[kSetCount] = {
      "service-ips",          "service-nodeports",     "endpoints",    "cluster-ips",
      "nodeport-ips",         "no-endpoint-services", "no-endpoint-nodeports", "firewall-ips",
      "hairpin"};
  return id < kSetCount ? names[id] : "?";
}

std::string elemSetName(uint8_t set, uint8_t part) {
  if (set == kEndpoints) return fmt::format("endpoints-{:02x}", part);
  return setName(set);
}

void buildSkeleton(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node) {
  const bool v4 = ctx.family == IpFamily::V4;
  const uint32_t al = ctx.addrLen();
  const uint32_t frontendType = concat({ipType(ctx), kTypeProto, kTypeService});
  const std::string& t = kTable;

  addSet(tx, t, setName(kClusterIps), {ipType(ctx), al});
  addNodePortIps(tx, ctx, t, node);
  addSet(tx, t, setName(kNoEndpointServices), {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kNoEndpointNodePorts),
         {concat({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kFirewallIps), {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kHairpin), {concat({ipType(ctx), ipType(ctx)}), 2 * al});

  const Hook natPost{"nat", NF_INET_POST_ROUTING, 100}, fwPre{"filter", NF_INET_PRE_ROUTING, -110},
      fwOut{"filter", NF_INET_LOCAL_OUT, -110}, fIn{"filter", NF_INET_LOCAL_IN, 0},
      fFwd{"filter", NF_INET_FORWARD, 0}, fOut{"filter", NF_INET_LOCAL_OUT, 0};
  for (const char* c : {"masquerading", "firewall-check", "endpoints-check", "reject-chain",
                        "cluster-ips-check"}) {
    tx.addChain(t, c);
  }
  tx.addChain(t, "nat-postrouting", &natPost);
  tx.addChain(t, "filter-prerouting-pre-dnat", &fwPre);
  tx.addChain(t, "filter-output-pre-dnat", &fwOut);
  tx.addChain(t, "filter-input", &fIn);
  tx.addChain(t, "filter-forward", &fFwd);
  tx.addChain(t, "filter-output", &fOut);

  auto rule = [&](const char* chain, RuleBuilder& b, const char* what) {
    tx.addRule(t, chain, b.release(), what);
  };
  const uint32_t mark = ctx.net->masqueradeMark;
  {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "masquerading");
    rule("nat-postrouting", b, "to masquerading");
  }
  {
    // A pod reaching itself through a service must see another source, or it would answer
    // itself directly and the client would drop the reply.
    RuleBuilder b;
    uint32_t dnat = IPS_DST_NAT, zero = 0;
    b.ct(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &dnat, &zero);
    b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0);
    b.loadAddr(true, ctx.family, reg32(0)).loadAddr(false, ctx.family, reg32(ctx.addrWords()));
    b.lookup(reg32(0), setName(kHairpin)).markSet(mark);
    rule("masquerading", b, "hairpin");
  }
  {
    RuleBuilder b;
    b.markTest(mark, false).verdict(NFT_RETURN);
    rule("masquerading", b, "not marked");
  }
  {
    // The mark is cleared as it is used so it can never leak onto another flow (for example
    // the outer packet of a tunnel that encapsulates this one).
    RuleBuilder b;
    b.markSet(mark, true);
    rule("masquerading", b, "clear the masquerade mark");
  }
  {
    RuleBuilder b;
    if (const auto* snat = ctx.net->snatAddress(ctx.family)) {
      b.immediate(NFT_REG_1, snat->bytes.data(), al);
      b.nat(NFT_NAT_SNAT, ctx.nfproto, NFT_REG_1, 0, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
      rule("masquerading", b, "SNAT to --snat-address");
    } else {
      b.masq(NF_NAT_RANGE_PROTO_RANDOM_FULLY);
      rule("masquerading", b, "masquerade");
    }
  }
  for (const char* base : {"filter-prerouting-pre-dnat", "filter-output-pre-dnat"}) {
    RuleBuilder b;
    uint32_t isNew = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;
    b.ct(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &isNew, &zero);
    b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0).verdict(NFT_JUMP, "firewall-check");
    rule(base, b, "new connections to firewall-check");
  }
  {
    RuleBuilder b;
    loadFrontend(b, ctx);
    b.mapLookup(reg32(0), setName(kFirewallIps), NFT_REG_VERDICT);
    rule("firewall-check", b, "loadBalancerSourceRanges");
  }
  for (const char* base : {"filter-input", "filter-forward", "filter-output"}) {
    RuleBuilder b;
    uint32_t isNew = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;
    b.ct(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &isNew, &zero);
    b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0).verdict(NFT_JUMP, "endpoints-check");
    rule(base, b, "new connections to endpoints-check");
  }
  for (const char* base : {"filter-forward", "filter-output"}) {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "cluster-ips-check");
    rule(base, b, "to cluster-ips-check");
  }
  {
    RuleBuilder b;
    loadFrontend(b, ctx);
    b.mapLookup(reg32(0), setName(kNoEndpointServices), NFT_REG_VERDICT);
    rule("endpoints-check", b, "services without usable endpoints");
  }
  for (const auto& match : nodePortMatches(ctx)) {
    RuleBuilder b;
    match(b);
    loadNodePort(b);
    b.mapLookup(reg32(0), setName(kNoEndpointNodePorts), NFT_REG_VERDICT);
    rule("endpoints-check", b, "NodePorts without usable endpoints");
  }
  {
    // A clusterIP still undNATed here was sent to a port its service does not define.
    RuleBuilder b;
    b.loadAddr(false, ctx.family, NFT_REG_1).lookup(NFT_REG_1, setName(kClusterIps));
    b.verdict(NFT_GOTO, "reject-chain");
    rule("cluster-ips-check", b, "ports a service does not define");
  }
  {
    RuleBuilder b;
    b.reject(NFT_REJECT_ICMP_UNREACH, v4 ? 3 /* port unreachable */ : 4 /* ICMPv6 port unreachable */);
    rule("reject-chain", b, "reject");
  }
}

void buildServiceTable(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node,
                       uint8_t shard) {
  const uint32_t al = ctx.addrLen();
  const std::string t = serviceTableName(shard);
  tx.addTable(t);
  addSet(tx, t, setName(kServiceIps),
         {concat({ipType(ctx), kTypeProto, kTypeService}), al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kServiceNodePorts),
         {concat({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  for (uint32_t part = 0; part < ctx.endpointMaps(); ++part) {
    addSet(tx, t, elemSetName(kEndpoints, static_cast<uint8_t>(part)),
           {concat({kTypeMark, kTypeMark}), 8, NFT_SET_MAP, concat({ipType(ctx), kTypeService}),
            al + 4});
  }
  if (ctx.net->nodePortPrimaryOnly) addNodePortIps(tx, ctx, t, node);

  // Every new connection's first packet passes each service table's hooks (the nat hooks see
  // nothing else), so dispatch is inline: no jump, a hash lookup, and for NodePorts a cheap
  // membership test before the costlier address checks.
  const Hook natPre{"nat", NF_INET_PRE_ROUTING, -100}, natOut{"nat", NF_INET_LOCAL_OUT, -100};
  tx.addChain(t, "nat-prerouting", &natPre);
  tx.addChain(t, "nat-output", &natOut);
  const auto matches = nodePortMatches(ctx);
  for (const char* base : {"nat-prerouting", "nat-output"}) {
    {
      RuleBuilder b;
      loadFrontend(b, ctx);
      b.mapLookup(reg32(0), setName(kServiceIps), NFT_REG_VERDICT);
      tx.addRule(t, base, b.release(), "service frontends");
    }
    for (const auto& match : matches) {
      RuleBuilder b;
      loadNodePort(b);
      b.lookup(reg32(0), setName(kServiceNodePorts));
      match(b);
      loadNodePort(b);
      b.mapLookup(reg32(0), setName(kServiceNodePorts), NFT_REG_VERDICT);
      tx.addRule(t, base, b.release(), "NodePorts");
    }
  }
}

}  // namespace sliceproxy::backends::nft
