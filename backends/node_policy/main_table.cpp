// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/main_table.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>

#include <optional>
#include <string_view>

#include "backends/nftnl/rule_builder.h"
#include "backends/nftnl/set_spec.h"
#include "backends/node_policy/local_traffic.h"
#include "backends/node_policy/nodeport_addresses.h"
#include "backends/node_policy/packet_keys.h"

namespace sliceproxy::backends::nft {

using proxier::IpFamily;

const char* mainSetName(uint8_t id) {
  static const char* names[kMainSetEnd - kFirstMainSet] = {
      "cluster-ips",           "nodeport-ips", "no-endpoint-services",
      "no-endpoint-nodeports", "firewall-ips", "hairpin"};
  return isMainSet(id) ? names[id - kFirstMainSet] : "?";
}

void buildMainTable(Transaction& tx, const NodeFamily& fam, const proxier::NodeContext* node,
                    const MainTableParts& parts) {
  const bool v4 = fam.family == IpFamily::V4;
  const uint32_t al = fam.addrLen();
  const uint32_t ip = ipType(fam.family);
  const uint32_t frontendType = concatType({ip, kTypeProto, kTypeService});
  const std::string& t = kMainTableName;

  addSet(tx, t, mainSetName(kClusterIps), {ip, al});
  addNodePortIps(tx, fam, t, node);
  addSet(tx, t, mainSetName(kNoEndpointServices),
         {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, mainSetName(kNoEndpointNodePorts),
         {concatType({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, mainSetName(kFirewallIps), {frontendType, al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  if (parts.masquerading) addSet(tx, t, mainSetName(kHairpin), {concatType({ip, ip}), 2 * al});

  const Hook natPost{"nat", NF_INET_POST_ROUTING, 100}, fwPre{"filter", NF_INET_PRE_ROUTING, -110},
      fwOut{"filter", NF_INET_LOCAL_OUT, -110}, fIn{"filter", NF_INET_LOCAL_IN, 0},
      fFwd{"filter", NF_INET_FORWARD, 0}, fOut{"filter", NF_INET_LOCAL_OUT, 0};
  for (const char* c :
       {"masquerading", "firewall-check", "endpoints-check", kRejectChain, "cluster-ips-check"}) {
    if (parts.masquerading || std::string_view(c) != "masquerading") tx.addChain(t, c);
  }
  if (parts.masquerading) tx.addChain(t, "nat-postrouting", &natPost);
  tx.addChain(t, "filter-prerouting-pre-dnat", &fwPre);
  tx.addChain(t, "filter-output-pre-dnat", &fwOut);
  tx.addChain(t, "filter-input", &fIn);
  tx.addChain(t, "filter-forward", &fFwd);
  tx.addChain(t, "filter-output", &fOut);

  auto rule = [&](const char* chain, RuleBuilder& b, const char* what) {
    tx.addRule(t, chain, b.release(), what);
  };
  const uint32_t mark = fam.net->masqueradeMark;
  if (parts.lateInputPriority) {
    const Hook late{"filter", NF_INET_LOCAL_IN, *parts.lateInputPriority};
    tx.addChain(t, "filter-input-late", &late);
    RuleBuilder b;
    uint32_t isNew = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;
    b.ct(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &isNew, &zero);
    b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0).verdict(NFT_JUMP, "cluster-ips-check");
    rule("filter-input-late", b, "new connections no service port claimed to cluster-ips-check");
  }
  if (parts.masquerading) {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "masquerading");
    rule("nat-postrouting", b, "to masquerading");
  }
  if (parts.masquerading) {
    {
      // A pod reaching itself through a service must see another source, or it would answer
      // itself directly and the client would drop the reply.
      RuleBuilder b;
      uint32_t dnat = IPS_DST_NAT, zero = 0;
      b.ct(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &dnat, &zero);
      b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0);
      b.loadAddr(true, fam.family, reg32(0)).loadAddr(false, fam.family, reg32(fam.addrWords()));
      b.lookup(reg32(0), mainSetName(kHairpin)).markSet(mark);
      rule("masquerading", b, "hairpin");
    }
    {
      // Traffic to a clusterIP from outside the pod network (all of it with --masquerade-all),
      // decided once here for every service rather than by a rule in each service's chain: the
      // connection's original destination says it was a clusterIP, and only a DNATed connection
      // reaches a backend. Half the rules a cold sync loads otherwise.
      std::optional<proxier::Cidr> podCIDR;
      if (node && node->node) {
        for (const auto& c : node->node->podCIDRs) {
          if (c.addr.family == fam.family && !podCIDR) podCIDR = c;
        }
      }
      RuleBuilder b;
      uint32_t dnat = IPS_DST_NAT, zero = 0;
      b.ct(NFT_CT_STATUS, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &dnat, &zero);
      b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0);
      b.ct(v4 ? NFT_CT_DST_IP : NFT_CT_DST_IP6, NFT_REG_1, IP_CT_DIR_ORIGINAL);
      b.lookup(NFT_REG_1, mainSetName(kClusterIps));
      const bool all = fam.net->masqueradeAll;
      if (all || matchLocalTraffic(b, fam, podCIDR ? &*podCIDR : nullptr, true)) {
        b.markSet(mark);
        rule("masquerading", b,
             all ? "--masquerade-all: clusterIP traffic"
                 : "clusterIP traffic from outside the pod network");
      }
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
      if (const auto* snat = fam.net->snatAddress(fam.family)) {
        b.immediate(NFT_REG_1, snat->bytes.data(), al);
        b.nat(NFT_NAT_SNAT, fam.nfproto, NFT_REG_1, 0, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
        rule("masquerading", b, "SNAT to --snat-address");
      } else {
        b.masq(NF_NAT_RANGE_PROTO_RANDOM_FULLY);
        rule("masquerading", b, "masquerade");
      }
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
    loadFrontend(b, fam);
    b.mapLookup(reg32(0), mainSetName(kFirewallIps), NFT_REG_VERDICT);
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
    // Only a connection's first packet can be one no service port claims (kube-proxy guards
    // it the same way); every later packet of every flow would otherwise pay the lookup.
    RuleBuilder b;
    uint32_t isNew = NF_CT_STATE_BIT(IP_CT_NEW), zero = 0;
    b.ct(NFT_CT_STATE, NFT_REG_1).bitwise(NFT_REG_1, NFT_REG_1, 4, &isNew, &zero);
    b.cmpU32(NFT_REG_1, NFT_CMP_NEQ, 0).verdict(NFT_JUMP, "cluster-ips-check");
    rule(base, b, "new connections to cluster-ips-check");
  }
  {
    RuleBuilder b;
    loadFrontend(b, fam);
    b.mapLookup(reg32(0), mainSetName(kNoEndpointServices), NFT_REG_VERDICT);
    rule("endpoints-check", b, "services without usable endpoints");
  }
  for (const auto& match : nodePortMatches(fam)) {
    RuleBuilder b;
    match(b);
    loadNodePort(b);
    b.mapLookup(reg32(0), mainSetName(kNoEndpointNodePorts), NFT_REG_VERDICT);
    rule("endpoints-check", b, "NodePorts without usable endpoints");
  }
  {
    // A clusterIP still unDNATed here was sent to a port its service does not define.
    RuleBuilder b;
    b.loadAddr(false, fam.family, NFT_REG_1).lookup(NFT_REG_1, mainSetName(kClusterIps));
    b.verdict(NFT_GOTO, kRejectChain);
    rule("cluster-ips-check", b, "ports a service does not define");
  }
  {
    RuleBuilder b;
    b.reject(NFT_REJECT_ICMP_UNREACH,
             v4 ? 3 /* port unreachable */ : 4 /* ICMPv6 port unreachable */);
    rule(kRejectChain, b, "reject");
  }
}

}  // namespace sliceproxy::backends::nft
