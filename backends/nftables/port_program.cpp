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

bool usesSharedDnat(const ServicePortInfo& info, uint32_t clusterCount, uint32_t localCount) {
  if (info.sessionAffinity == SessionAffinity::ClientIP ||
      (info.externallyAccessible() && info.externalPolicyLocal)) {
    return false;
  }
  auto extra = [&](uint8_t set, uint32_t count) {
    const size_t copies = sharedSlotKeys(info, set).size();
    return copies > 1 ? (copies - 1) * uint64_t{count} : 0;
  };
  return extra(epset::kCluster, clusterCount) + extra(epset::kLocal, localCount) <=
         kSharedDnatMaxExtraCopies;
}

namespace {
constexpr const char* kSharedDnatPrefix[] = {"dnat-", "dnat-ext-", "dnat-nodeport-"};
}  // namespace

std::string sharedDnatChain(SharedDnat kind, uint32_t endpoints) {
  return fmt::format("{}{}", kSharedDnatPrefix[static_cast<int>(kind)], endpoints);
}

std::optional<std::pair<SharedDnat, uint32_t>> parseSharedDnatChain(const std::string& name) {
  // Longest prefix first: "dnat-" is a prefix of the others.
  for (SharedDnat kind : {SharedDnat::NodePort, SharedDnat::External, SharedDnat::Internal}) {
    const std::string_view prefix = kSharedDnatPrefix[static_cast<int>(kind)];
    if (!name.starts_with(prefix) || name.size() == prefix.size()) continue;
    uint32_t n = 0;
    for (size_t i = prefix.size(); i < name.size(); ++i) {
      if (name[i] < '0' || name[i] > '9' || n > 100000000) return std::nullopt;
      n = n * 10 + static_cast<uint32_t>(name[i] - '0');
    }
    return std::make_pair(kind, n);
  }
  return std::nullopt;
}

void addSharedDnatRule(Transaction& tx, const FamilyContext& ctx, const std::string& table,
                       SharedDnat kind, uint32_t endpoints) {
  const uint32_t aw = ctx.addrWords();
  RuleBuilder b;
  if (kind != SharedDnat::Internal) b.markSet(ctx.net->masqueradeMark);
  // Key: the frontend, then a random slot after it.
  if (kind == SharedDnat::NodePort) {
    loadNodePort(b);
    b.numgen(reg32(2), endpoints);
    b.mapLookup(reg32(0), setName(kNodePortEndpoints), reg32(0));
  } else {
    loadFrontend(b, ctx);
    b.numgen(reg32(static_cast<int>(aw) + 2), endpoints);
    b.mapLookup(reg32(0), setName(kFrontendEndpoints), reg32(0));
  }
  b.nat(NFT_NAT_DNAT, ctx.nfproto, reg32(0), reg32(aw), 0);
  tx.addRule(table, sharedDnatChain(kind, endpoints), b.release(),
             fmt::format("DNAT to one of {} endpoints", endpoints));
}

std::vector<std::pair<uint8_t, Bytes>> sharedSlotKeys(const ServicePortInfo& info, uint8_t set) {
  std::vector<std::pair<uint8_t, Bytes>> out;
  const auto proto = info.key.port.protocol;
  const uint8_t internal = info.internalPolicyLocal ? epset::kLocal : epset::kCluster;
  if (set == internal) {
    out.emplace_back(kFrontendEndpoints, frontendKey(info.clusterIP, proto, info.port));
  }
  // External frontends of a shared port have externalTrafficPolicy Cluster.
  if (set != epset::kCluster || !info.externallyAccessible()) return out;
  for (const auto& a : info.externalIPs) {
    out.emplace_back(kFrontendEndpoints, frontendKey(a, proto, info.port));
  }
  for (const auto& a : info.loadBalancerIPs) {
    out.emplace_back(kFrontendEndpoints, frontendKey(a, proto, info.port));
  }
  if (info.nodePort) out.emplace_back(kNodePortEndpoints, nodePortKey(proto, info.nodePort));
  return out;
}

PortChains chainNames(uint32_t id, uint8_t shard, const ServicePortInfo& info, bool shared) {
  const std::string tag = portChainTag(info);
  PortChains c;
  c.shard = shard;
  c.shared = shared;
  if (!c.shared) {
    c.svc = fmt::format("svc-{}-{}", id, tag);
    if (info.externallyAccessible()) c.ext = fmt::format("ext-{}-{}", id, tag);
  }
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
  if (!chains.fw.empty()) addFirewallRules(tx, info, chains.fw);
  if (chains.shared) return;

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
}

namespace {

// A shared-DNAT port's frontends: each goes to the shared chain for its set's endpoint count; a
// frontend whose set is empty has no element (the main table drops).
void sharedFrontendElems(const ServicePortInfo& info, const PortChains& chains,
                         const ChainInputs& in, std::vector<Elem>& out) {
  const auto proto = info.key.port.protocol;
  const uint32_t internalCount = info.internalPolicyLocal ? in.localCount : in.clusterCount;
  auto go = [&](SharedDnat kind, uint32_t n) {
    return ElemValue{ElemValue::Goto, sharedDnatChain(kind, n), {}};
  };
  if (internalCount > 0) {
    out.push_back({kServiceIps, frontendKey(info.clusterIP, proto, info.port),
                   go(SharedDnat::Internal, internalCount), 0, chains.shard});
  }
  if (!info.externallyAccessible() || in.clusterCount == 0) return;
  auto external = [&](const IpAddr& a) {
    out.push_back({kServiceIps, frontendKey(a, proto, info.port),
                   go(SharedDnat::External, in.clusterCount), 0, chains.shard});
  };
  for (const auto& a : info.externalIPs) external(a);
  for (const auto& a : info.loadBalancerIPs) external(a);
  if (info.nodePort) {
    const Bytes key = nodePortKey(proto, info.nodePort);
    out.push_back(
        {kServiceNodePorts, key, go(SharedDnat::NodePort, in.clusterCount), 0, chains.shard});
    out.push_back({kServiceNodePortKeys, key, {}, 0, chains.shard});
  }
}

}  // namespace

std::vector<Elem> frontendElems(const ServicePortInfo& info, const PortChains& chains,
                                const ChainInputs& in, uint8_t internalSet, uint8_t externalSet) {
  std::vector<Elem> out;
  const auto proto = info.key.port.protocol;
  auto go = [&](const std::string& chain) { return ElemValue{ElemValue::Goto, chain, {}}; };
  if (chains.shared) {
    sharedFrontendElems(info, chains, in, out);
  } else if (in.hasAnyEndpoints) {
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
