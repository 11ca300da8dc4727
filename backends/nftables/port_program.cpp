// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/port_program.h"

#include <fmt/format.h>
#include <linux/netfilter.h>

#include <functional>

#include "backends/nftnl/rule_builder.h"
#include "backends/node_policy/local_traffic.h"
#include "backends/node_policy/packet_keys.h"
#include "backends/node_policy/port_policy.h"
#include "backends/node_policy/port_tag.h"
#include "backends/node_policy/source_ranges.h"

namespace sliceproxy::backends::nft {

using namespace proxier;

PortChains chainNames(uint32_t id, uint8_t shard, const ServicePortInfo& info) {
  const std::string tag = portChainTag(info);
  PortChains c;
  c.shard = shard;
  c.svc = fmt::format("svc-{}-{}", id, tag);
  if (info.externallyAccessible()) c.ext = fmt::format("ext-{}-{}", id, tag);
  c.fw = firewallChainName(id, tag, info);
  return c;
}

namespace {

using Prefix = std::function<void(RuleBuilder&)>;

// DNAT to one of the `count` endpoints of endpoint set `setId`, at random; under ClientIP
// affinity, first to the endpoint this client used within the timeout.
void addDnat(Transaction& tx, const FamilyContext& ctx, const std::string& table,
             const std::string& chain, const ServicePortInfo& info, uint32_t setId, uint32_t count,
             const Prefix& prefix, const char* what, bool affinity) {
  if (count == 0) return;
  const uint32_t aw = ctx.addrWords();
  if (info.sessionAffinity == SessionAffinity::ClientIP && affinity) {
    {
      RuleBuilder b;
      if (prefix) prefix(b);
      b.verdict(NFT_JUMP, affinityCheckName(setId));
      tx.addRule(table, chain, b.release(), fmt::format("{}: a client seen before", what));
    }
    RuleBuilder b;
    if (prefix) prefix(b);
    b.numgen(NFT_REG_1, count).mapLookup(NFT_REG_1, affinityMapName(setId), NFT_REG_VERDICT);
    tx.addRule(table, chain, b.release(), fmt::format("{}: {} endpoints", what, count));
    return;
  }
  RuleBuilder b;
  if (prefix) prefix(b);
  b.constant(reg32(0), setId).numgen(reg32(1), count);
  b.mapLookup(reg32(0), elemSetName(kEndpoints, ctx.endpointMap(setId)), reg32(0));
  b.nat(NFT_NAT_DNAT, ctx.nfproto, reg32(0), reg32(aw), 0);
  tx.addRule(table, chain, b.release(), fmt::format("{}: {} endpoints", what, count));
}

}  // namespace

std::string affinityName(uint32_t setId, uint32_t serial) {
  return fmt::format("aff-{}-{}", setId, serial);
}

std::string affinityCheckName(uint32_t setId) {
  return fmt::format("affck-{}", setId);
}

void addAffinityCheckRule(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                          uint32_t setId, const std::string& name, uint64_t* handle) {
  RuleBuilder b;
  b.loadAddr(true, ctx.family, NFT_REG_1).lookup(NFT_REG_1, name).verdict(NFT_GOTO, name);
  tx.addRule(table, affinityCheckName(setId), b.release(), "client seen by " + name, handle);
}

std::string affinityMapName(uint32_t setId) {
  return fmt::format("affmap-{}", setId);
}

nftnl_set* affinitySet(const FamilyContext& ctx, const std::string& name, uint32_t timeoutSeconds,
                       const std::vector<uint8_t>& userdata) {
  nftnl_set* set = nftnl_set_alloc();
  nftnl_set_set_str(set, NFTNL_SET_NAME, name.c_str());
  nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, ctx.family == IpFamily::V4 ? 7 : 8);
  nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, ctx.addrLen());
  nftnl_set_set_u32(set, NFTNL_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL);
  nftnl_set_set_u64(set, NFTNL_SET_TIMEOUT, static_cast<uint64_t>(timeoutSeconds) * 1000);
  nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, 1u << 16);
  if (!userdata.empty()) {
    nftnl_set_set_data(set, NFTNL_SET_USERDATA, userdata.data(),
                       static_cast<uint32_t>(userdata.size()));
  }
  return set;
}

nftnl_set* affinityMap(const std::string& name) {
  nftnl_set* set = nftnl_set_alloc();
  nftnl_set_set_str(set, NFTNL_SET_NAME, name.c_str());
  nftnl_set_set_u32(set, NFTNL_SET_KEY_TYPE, 19 /* mark */);
  nftnl_set_set_u32(set, NFTNL_SET_KEY_LEN, 4);
  nftnl_set_set_u32(set, NFTNL_SET_FLAGS, NFT_SET_MAP);
  nftnl_set_set_u32(set, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
  return set;
}

void addAffinityEndpointRules(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                              const std::string& name, const EndpointKey& ep,
                              uint32_t timeoutSeconds) {
  const uint32_t aw = ctx.addrWords();
  RuleBuilder b;
  b.loadAddr(true, ctx.family, NFT_REG_1);
  b.dynset(NFT_DYNSET_OP_UPDATE, name, NFT_REG_1, 0, static_cast<uint64_t>(timeoutSeconds) * 1000);
  Bytes port = Bytes().port(ep.port);
  b.immediate(reg32(0), ep.ip.bytes.data(), ctx.addrLen()).immediate(reg32(aw), port.b, 2);
  b.nat(NFT_NAT_DNAT, ctx.nfproto, reg32(0), reg32(aw), 0);
  tx.addRule(table, name, b.release(), "remember the client and DNAT to " + ep.ip.str());
}

void addPortRules(Transaction& tx, const FamilyContext& ctx, uint32_t id,
                  const ServicePortInfo& info, const PortChains& chains, const ChainInputs& in,
                  bool affinity) {
  const uint32_t clusterSet = endpointSetId(id, epset::kCluster);
  const uint32_t localSet = endpointSetId(id, epset::kLocal);
  const uint32_t internalSet = info.internalPolicyLocal ? localSet : clusterSet;
  const uint32_t internalCount = info.internalPolicyLocal ? in.localCount : in.clusterCount;
  const std::string svc = info.key.str();
  const std::string table = serviceTableName(chains.shard);

  // Traffic to the clusterIP from outside the pod network is masqueraded by one rule in the
  // main table's masquerading chain (main_table.cpp), not here.
  addDnat(tx, ctx, table, chains.svc, info, internalSet, internalCount, nullptr, svc.c_str(),
          affinity);

  if (!chains.ext.empty()) {
    if (!info.externalPolicyLocal) {
      RuleBuilder b;
      b.markSet(ctx.net->masqueradeMark);
      tx.addRule(table, chains.ext, b.release(), svc + ": masquerade external traffic");
      addDnat(tx, ctx, table, chains.ext, info, clusterSet, in.clusterCount, nullptr, svc.c_str(),
              affinity);
    } else {
      // Pods and the node itself reach the whole cluster-wide set (kube-proxy's
      // short-circuit); only traffic from outside is limited to local endpoints.
      RuleBuilder probe;
      if (matchLocalTraffic(probe, ctx, in.nodePodCIDR, false)) {
        addDnat(
            tx, ctx, table, chains.ext, info, clusterSet, in.clusterCount,
            [&](RuleBuilder& b) { matchLocalTraffic(b, ctx, in.nodePodCIDR, false); },
            (svc + " (pod short-circuit)").c_str(), affinity);
      }
      RuleBuilder m;
      m.fibAddrTypeLocal(true).markSet(ctx.net->masqueradeMark);
      tx.addRule(table, chains.ext, m.release(), svc + ": masquerade traffic from this node");
      addDnat(
          tx, ctx, table, chains.ext, info, clusterSet, in.clusterCount,
          [](RuleBuilder& b) { b.fibAddrTypeLocal(true); }, (svc + " (node short-circuit)").c_str(),
          affinity);
      addDnat(tx, ctx, table, chains.ext, info, localSet, in.localCount, nullptr,
              (svc + " (local endpoints)").c_str(), affinity);
    }
  }

  if (!chains.fw.empty()) addFirewallRules(tx, info, chains.fw);
}

std::vector<Elem> frontendElems(const ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet) {
  std::vector<Elem> out;
  const auto proto = info.key.port.protocol;
  auto go = [&](const std::string& chain) { return ElemValue{ElemValue::Goto, chain, {}}; };
  if (in.hasAnyEndpoints) {
    out.push_back({kServiceIps, frontendKey(info.clusterIP, proto, info.port), go(chains.svc), 0,
                   chains.shard});
    auto external = [&](const IpAddr& a) {
      out.push_back(
          {kServiceIps, frontendKey(a, proto, info.port), go(chains.ext), 0, chains.shard});
    };
    for (const auto& a : info.externalIPs) external(a);
    for (const auto& a : info.loadBalancerIPs) external(a);
    if (info.nodePort) {
      out.push_back(
          {kServiceNodePorts, nodePortKey(proto, info.nodePort), go(chains.ext), 0, chains.shard});
      out.push_back({kServiceNodePortKeys, nodePortKey(proto, info.nodePort), {}, 0, chains.shard});
    }
  }
  auto count = [&](uint8_t set) { return set == epset::kLocal ? in.localCount : in.clusterCount; };
  auto policy = portPolicyElems(info, {in.hasAnyEndpoints, count(internalSet), count(externalSet)},
                                chains.fw);
  out.insert(out.end(), policy.begin(), policy.end());
  return out;
}

}  // namespace sliceproxy::backends::nft
