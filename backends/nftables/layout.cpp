// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/layout.h"

#include <fmt/format.h>

#include <functional>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>

#include "backends/nftables/elements.h"
#include "backends/nftables/rule_builder.h"

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

void addSet(Transaction& tx, const std::string& name, const SetSpec& s) {
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
  tx.addSet(kTable, set, "set " + name);
}

void addSet(Transaction& tx, uint8_t id, const SetSpec& s) { addSet(tx, setName(id), s); }

}  // namespace

const char* setName(uint8_t id) {
  static const char* names[kSetCount] = {
      "service-ips",          "service-nodeports",     "cluster-ips",  "nodeport-ips",
      "no-endpoint-services", "no-endpoint-nodeports", "firewall-ips", "endpoints",
      "hairpin"};
  return id < kSetCount ? names[id] : "?";
}

std::string elemSetName(uint8_t set, uint8_t shard) {
  if (set == kEndpoints) return fmt::format("endpoints-{:02x}", shard);
  return setName(set);
}

void buildSkeleton(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node) {
  const bool v4 = ctx.family == IpFamily::V4;
  const uint32_t ipType = v4 ? kTypeIp4 : kTypeIp6, al = ctx.addrLen();
  const uint32_t frontendType = concat({ipType, kTypeProto, kTypeService});
  const uint32_t epData = concat({ipType, kTypeService});

  addSet(tx, kServiceIps, {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, kServiceNodePorts, {concat({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, kClusterIps, {ipType, al});
  addSet(tx, kNodePortIps, {ipType, al});
  addSet(tx, kNoEndpointServices, {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, kNoEndpointNodePorts,
         {concat({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, kFirewallIps, {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  for (uint32_t shard = 0; shard < kEndpointShards; ++shard) {
    addSet(tx, elemSetName(kEndpoints, static_cast<uint8_t>(shard)),
           {concat({kTypeMark, kTypeMark}), 8, NFT_SET_MAP, epData, al + 4});
  }
  addSet(tx, kHairpin, {concat({ipType, ipType}), 2 * al});

  const Hook natPre{"nat", NF_INET_PRE_ROUTING, -100}, natOut{"nat", NF_INET_LOCAL_OUT, -100},
      natPost{"nat", NF_INET_POST_ROUTING, 100}, fwPre{"filter", NF_INET_PRE_ROUTING, -110},
      fwOut{"filter", NF_INET_LOCAL_OUT, -110}, fIn{"filter", NF_INET_LOCAL_IN, 0},
      fFwd{"filter", NF_INET_FORWARD, 0}, fOut{"filter", NF_INET_LOCAL_OUT, 0};
  for (const char* c : {"services", "masquerading", "mark-for-masquerade", "firewall-check",
                        "endpoints-check", "reject-chain", "cluster-ips-check"}) {
    tx.addChain(kTable, c);
  }
  tx.addChain(kTable, "nat-prerouting", &natPre);
  tx.addChain(kTable, "nat-output", &natOut);
  tx.addChain(kTable, "nat-postrouting", &natPost);
  tx.addChain(kTable, "filter-prerouting-pre-dnat", &fwPre);
  tx.addChain(kTable, "filter-output-pre-dnat", &fwOut);
  tx.addChain(kTable, "filter-input", &fIn);
  tx.addChain(kTable, "filter-forward", &fFwd);
  tx.addChain(kTable, "filter-output", &fOut);

  auto rule = [&](const char* chain, RuleBuilder& b, const char* what) {
    tx.addRule(kTable, chain, b.release(), what);
  };
  const uint32_t mark = ctx.net->masqueradeMark;
  {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "services");
    rule("nat-prerouting", b, "to services");
  }
  {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "services");
    rule("nat-output", b, "to services");
  }
  {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "masquerading");
    rule("nat-postrouting", b, "to masquerading");
  }
  {
    RuleBuilder b;
    b.markSet(mark);
    rule("mark-for-masquerade", b, "set the masquerade mark");
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
  auto loadFrontend = [&](RuleBuilder& b) {
    b.loadAddr(false, ctx.family, reg32(0));
    b.meta(NFT_META_L4PROTO, reg32(ctx.addrWords()));
    b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(ctx.addrWords() + 1));
  };
  auto loadNodePort = [&](RuleBuilder& b) {
    b.meta(NFT_META_L4PROTO, reg32(0));
    b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(1));
  };
  // NodePorts answer on every local address but loopback (as kube-proxy's nftables mode), or on
  // the local addresses inside the --nodeport-addresses CIDRs (one rule per CIDR, so addresses
  // added to interfaces later are covered), or on the Node's InternalIPs for "primary".
  std::vector<std::function<void(RuleBuilder&)>> nodePortMatches;
  if (ctx.net->nodePortPrimaryOnly) {
    nodePortMatches.push_back([&](RuleBuilder& b) {
      b.loadAddr(false, ctx.family, NFT_REG_1).lookup(NFT_REG_1, setName(kNodePortIps));
    });
  }
  for (const auto& c : ctx.net->nodePortAddresses) {
    if (c.addr.family != ctx.family) continue;
    nodePortMatches.push_back([&ctx, c](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      b.matchAddr(false, c);
    });
  }
  if (!ctx.net->nodePortPrimaryOnly && ctx.net->nodePortAddresses.empty()) {
    nodePortMatches.push_back([&](RuleBuilder& b) {
      b.fibAddrTypeLocal(false);
      proxier::Cidr loop = v4 ? *proxier::Cidr::parse("127.0.0.0/8") : *proxier::Cidr::parse("::1/128");
      b.matchAddr(false, loop, true);
    });
  }
  {
    RuleBuilder b;
    loadFrontend(b);
    b.mapLookup(reg32(0), setName(kServiceIps), NFT_REG_VERDICT);
    rule("services", b, "service frontends");
  }
  for (const auto& match : nodePortMatches) {
    RuleBuilder b;
    match(b);
    loadNodePort(b);
    b.mapLookup(reg32(0), setName(kServiceNodePorts), NFT_REG_VERDICT);
    rule("services", b, "NodePorts");
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
    loadFrontend(b);
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
    loadFrontend(b);
    b.mapLookup(reg32(0), setName(kNoEndpointServices), NFT_REG_VERDICT);
    rule("endpoints-check", b, "services without usable endpoints");
  }
  for (const auto& match : nodePortMatches) {
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

  if (ctx.net->nodePortPrimaryOnly) {
    std::vector<nftnl_set_elem*> elems;
    if (node && node->node) {
      for (const auto& a : node->node->addresses) {
        if (a.ip && a.ip->family == ctx.family && a.type == "InternalIP") {
          elems.push_back(makeElem(Bytes().addr(*a.ip), nullptr));
        }
      }
    }
    if (!elems.empty()) tx.addElements(kTable, setName(kNodePortIps), elems, "NodePort addresses");
  }
}

}  // namespace sliceproxy::backends::nft
