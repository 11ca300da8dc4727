// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftables/layout.h"

#include <fmt/format.h>

#include <linux/netfilter.h>

#include "backends/nftnl/rule_builder.h"
#include "backends/nftnl/set_spec.h"
#include "backends/node_policy/nodeport_addresses.h"
#include "backends/node_policy/packet_keys.h"

namespace sliceproxy::backends::nft {

std::string serviceTableName(uint32_t shard) {
  return fmt::format("sliceproxy-svc-{}", shard);
}

bool isOwnTable(const std::string& name) {
  return name == kMainTableName || name.starts_with("sliceproxy-svc-");
}

uint32_t serviceTablesFor(size_t ports) {
  uint32_t k = 1;
  while (k < kMaxServiceTables && static_cast<size_t>(k) * kPortsPerServiceTable < ports) k *= 2;
  return k;
}

const char* setName(uint8_t id) {
  static const char* names[kServiceSetCount] = {"service-ips",        "service-nodeports",
                                                "endpoints-",         "service-nodeport-keys",
                                                "frontend-endpoints", "nodeport-endpoints"};
  return id < kServiceSetCount ? names[id] : mainSetName(id);
}

std::string elemSetName(uint8_t set, uint8_t part) {
  if (set == kEndpoints) return fmt::format("endpoints-{:02x}", part);
  return setName(set);
}

uint32_t endpointMapSize(size_t elements) {
  if (elements < kSizedEndpointMapMin) return 0;
  uint32_t size = kSizedEndpointMapMin * 2;
  while (size < 2 * elements && size < (1u << 30)) size *= 2;
  return size;
}

void buildServiceTable(Transaction& tx, const FamilyContext& ctx, const proxier::NodeContext* node,
                       uint8_t shard, const uint32_t* mapSizes) {
  const uint32_t al = ctx.addrLen();
  const std::string t = serviceTableName(shard);
  tx.addTable(t);
  const uint32_t ip = ipType(ctx.family);
  addSet(tx, t, setName(kServiceIps),
         {concatType({ip, kTypeProto, kTypeService}), al + 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kServiceNodePorts),
         {concatType({kTypeProto, kTypeService}), 8, NFT_SET_MAP, kTypeVerdict, 0});
  addSet(tx, t, setName(kServiceNodePortKeys), {concatType({kTypeProto, kTypeService}), 8});
  for (uint32_t part = 0; part < ctx.endpointMaps(); ++part) {
    addSet(tx, t, elemSetName(kEndpoints, static_cast<uint8_t>(part)),
           {concatType({kTypeMark, kTypeMark}), 8, NFT_SET_MAP, concatType({ip, kTypeService}),
            al + 4, mapSizes[part]});
  }
  addSet(tx, t, setName(kFrontendEndpoints),
         {concatType({ip, kTypeProto, kTypeService, kTypeMark}), al + 12, NFT_SET_MAP,
          concatType({ip, kTypeService}), al + 4, mapSizes[ctx.mapSlot(kFrontendEndpoints, 0)]});
  addSet(tx, t, setName(kNodePortEndpoints),
         {concatType({kTypeProto, kTypeService, kTypeMark}), 12, NFT_SET_MAP,
          concatType({ip, kTypeService}), al + 4, mapSizes[ctx.mapSlot(kNodePortEndpoints, 0)]});
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
      b.lookup(reg32(0), setName(kServiceNodePortKeys));
      match(b);
      loadNodePort(b);
      b.mapLookup(reg32(0), setName(kServiceNodePorts), NFT_REG_VERDICT);
      tx.addRule(t, base, b.release(), "NodePorts");
    }
  }
}

}  // namespace sliceproxy::backends::nft
