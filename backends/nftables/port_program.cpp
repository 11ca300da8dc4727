// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/port_program.h"

#include <fmt/format.h>
#include <linux/netfilter.h>

#include <functional>

#include "backends/nftables/rule_builder.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

PortChains chainNames(uint32_t id, const ServicePortInfo& info) {
  // The service's name in the chain name lets an operator read `nft list ruleset`; the id
  // keeps it unique and short enough (chain names are limited to 255 bytes).
  std::string tag = fmt::format("{}/{}/{}/{}", info.key.service.ns, info.key.service.name,
                                info.key.port.portName.empty() ? "-" : info.key.port.portName,
                                protocolName(info.key.port.protocol));
  if (tag.size() > 200) tag.resize(200);
  PortChains c;
  c.svc = fmt::format("svc-{}-{}", id, tag);
  if (info.externallyAccessible()) c.ext = fmt::format("ext-{}-{}", id, tag);
  if (!info.loadBalancerIPs.empty() && !info.loadBalancerSourceRanges.empty()) {
    c.fw = fmt::format("fw-{}-{}", id, tag);
  }
  return c;
}

namespace {

// Matches traffic that comes from pods (local traffic), by the configured detection mode.
// Returns false when no mode is configured: then nothing is known to be local.
bool matchLocalTraffic(RuleBuilder& b, const FamilyContext& ctx, const ChainInputs& in,
                       bool negate) {
  const NetworkConfig& net = *ctx.net;
  switch (net.detectLocal) {
    case LocalDetectMode::ClusterCIDR:
      if (const Cidr* c = net.clusterCIDR(ctx.family)) {
        b.matchAddr(true, *c, negate);
        return true;
      }
      return false;
    case LocalDetectMode::NodeCIDR:
      if (in.nodePodCIDR) {
        b.matchAddr(true, *in.nodePodCIDR, negate);
        return true;
      }
      return false;
    case LocalDetectMode::InterfaceNamePrefix:
      b.iifname(net.podInterfacePrefix, true, negate);
      return true;
    case LocalDetectMode::BridgeInterface:
      b.iifname(net.podBridgeInterface, false, negate);
      return true;
    case LocalDetectMode::None: return false;
  }
  return false;
}

using Prefix = std::function<void(RuleBuilder&)>;

// DNAT to one of the `count` endpoints of endpoint set `setId`, at random, or to the client's
// remembered endpoint under ClientIP affinity.
void addDnat(Transaction& tx, const FamilyContext& ctx, const std::string& chain,
             const ServicePortInfo& info, uint32_t setId, uint32_t count, const Prefix& prefix,
             const char* what) {
  if (count == 0) return;
  const uint32_t aw = ctx.addrWords(), al = ctx.addrLen();
  const bool affinity = info.sessionAffinity == SessionAffinity::ClientIP;
  const uint64_t timeoutMs = static_cast<uint64_t>(info.affinityTimeoutSeconds) * 1000;
  if (affinity) {
    // Known client: its endpoint, if still a member of this set; refresh the timeout.
    RuleBuilder b;
    if (prefix) prefix(b);
    b.constant(reg32(0), setId).loadAddr(true, ctx.family, reg32(1));
    b.mapLookup(reg32(0), setName(kAffinity), reg32(1));
    b.lookup(reg32(0), setName(kEndpointMembers));
    b.constant(reg32(aw + 2), setId).loadAddr(true, ctx.family, reg32(aw + 3));
    b.dynset(NFT_DYNSET_OP_UPDATE, setName(kAffinity), reg32(aw + 2), reg32(1), timeoutMs);
    b.nat(NFT_NAT_DNAT, ctx.nfproto, reg32(1), reg32(1 + aw), 0);
    tx.addRule(kTable, chain, b.release(), fmt::format("{}: session affinity", what));
  }
  RuleBuilder b;
  if (prefix) prefix(b);
  b.constant(reg32(0), setId).numgen(reg32(1), count);
  b.mapLookup(reg32(0), setName(kEndpoints), reg32(0));
  if (affinity) {
    b.constant(reg32(aw + 1), setId).loadAddr(true, ctx.family, reg32(aw + 2));
    b.dynset(NFT_DYNSET_OP_ADD, setName(kAffinity), reg32(aw + 1), reg32(0), timeoutMs);
  }
  b.nat(NFT_NAT_DNAT, ctx.nfproto, reg32(0), reg32(aw), 0);
  (void)al;
  tx.addRule(kTable, chain, b.release(), fmt::format("{}: {} endpoints", what, count));
}

}  // namespace

void addPortRules(Transaction& tx, const FamilyContext& ctx, uint32_t id,
                  const ServicePortInfo& info, const PortChains& chains, const ChainInputs& in) {
  const uint32_t clusterSet = endpointSetId(id, epset::kCluster);
  const uint32_t localSet = endpointSetId(id, epset::kLocal);
  const uint32_t internalSet = info.internalPolicyLocal ? localSet : clusterSet;
  const uint32_t internalCount = info.internalPolicyLocal ? in.localCount : in.clusterCount;
  const std::string svc = info.key.str();

  // Traffic to the clusterIP from outside the pod network is masqueraded.
  if (ctx.net->masqueradeAll) {
    RuleBuilder b;
    b.verdict(NFT_JUMP, "mark-for-masquerade");
    tx.addRule(kTable, chains.svc, b.release(), svc + ": --masquerade-all");
  } else {
    RuleBuilder b;
    if (matchLocalTraffic(b, ctx, in, true)) {
      b.verdict(NFT_JUMP, "mark-for-masquerade");
      tx.addRule(kTable, chains.svc, b.release(), svc + ": masquerade non-pod traffic");
    }
  }
  addDnat(tx, ctx, chains.svc, info, internalSet, internalCount, nullptr, svc.c_str());

  if (!chains.ext.empty()) {
    if (!info.externalPolicyLocal) {
      RuleBuilder b;
      b.verdict(NFT_JUMP, "mark-for-masquerade");
      tx.addRule(kTable, chains.ext, b.release(), svc + ": masquerade external traffic");
      addDnat(tx, ctx, chains.ext, info, clusterSet, in.clusterCount, nullptr, svc.c_str());
    } else {
      // Pods and the node itself reach the whole cluster-wide set (kube-proxy's
      // short-circuit); only traffic from outside is limited to local endpoints.
      RuleBuilder probe;
      if (matchLocalTraffic(probe, ctx, in, false)) {
        addDnat(tx, ctx, chains.ext, info, clusterSet, in.clusterCount,
                [&](RuleBuilder& b) { matchLocalTraffic(b, ctx, in, false); },
                (svc + " (pod short-circuit)").c_str());
      }
      RuleBuilder m;
      m.fibAddrTypeLocal(true).verdict(NFT_JUMP, "mark-for-masquerade");
      tx.addRule(kTable, chains.ext, m.release(), svc + ": masquerade traffic from this node");
      addDnat(tx, ctx, chains.ext, info, clusterSet, in.clusterCount,
              [](RuleBuilder& b) { b.fibAddrTypeLocal(true); },
              (svc + " (node short-circuit)").c_str());
      addDnat(tx, ctx, chains.ext, info, localSet, in.localCount, nullptr,
              (svc + " (local endpoints)").c_str());
    }
  }

  if (!chains.fw.empty()) {
    for (const auto& range : info.loadBalancerSourceRanges) {
      RuleBuilder b;
      b.matchAddr(true, range).verdict(NFT_RETURN);
      tx.addRule(kTable, chains.fw, b.release(), svc + ": allowed source " + range.str());
    }
    RuleBuilder b;
    b.verdict(NF_DROP);
    tx.addRule(kTable, chains.fw, b.release(), svc + ": other sources");
  }
}

std::vector<Elem> frontendElems(const ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet) {
  std::vector<Elem> out;
  const auto proto = info.key.port.protocol;
  const uint32_t internalCount = internalSet == epset::kLocal ? in.localCount : in.clusterCount;
  const uint32_t externalCount = externalSet == epset::kLocal ? in.localCount : in.clusterCount;
  auto frontend = [&](const IpAddr& a, uint16_t port) { return Bytes().addr(a).proto(proto).port(port); };
  auto go = [](const std::string& chain) { return ElemValue{ElemValue::Goto, chain, {}}; };
  const ElemValue reject = go("reject-chain"), drop{ElemValue::Drop, "", {}};

  std::vector<IpAddr> externals = info.externalIPs;
  externals.insert(externals.end(), info.loadBalancerIPs.begin(), info.loadBalancerIPs.end());

  if (in.hasAnyEndpoints) {
    out.push_back({kServiceIps, frontend(info.clusterIP, info.port), go(chains.svc)});
    for (const auto& a : externals) out.push_back({kServiceIps, frontend(a, info.port), go(chains.ext)});
    if (info.nodePort) {
      out.push_back({kServiceNodePorts, Bytes().proto(proto).port(info.nodePort), go(chains.ext)});
    }
    // Endpoints exist, but none for this kind of traffic on this node: drop, do not reject,
    // so a client retries elsewhere instead of giving up.
    if (internalCount == 0) {
      out.push_back({kNoEndpointServices, frontend(info.clusterIP, info.port), drop});
    }
    if (info.externallyAccessible() && externalCount == 0) {
      for (const auto& a : externals) out.push_back({kNoEndpointServices, frontend(a, info.port), drop});
      if (info.nodePort) {
        out.push_back({kNoEndpointNodePorts, Bytes().proto(proto).port(info.nodePort), drop});
      }
    }
  } else {
    out.push_back({kNoEndpointServices, frontend(info.clusterIP, info.port), reject});
    for (const auto& a : externals) out.push_back({kNoEndpointServices, frontend(a, info.port), reject});
    if (info.nodePort) {
      out.push_back({kNoEndpointNodePorts, Bytes().proto(proto).port(info.nodePort), reject});
    }
  }
  if (!chains.fw.empty()) {
    for (const auto& a : info.loadBalancerIPs) {
      out.push_back({kFirewallIps, frontend(a, info.port), go(chains.fw)});
    }
  }
  return out;
}

}  // namespace sliceproxy::backends::nft
