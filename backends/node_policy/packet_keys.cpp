// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/node_policy/packet_keys.h"

#include <linux/netfilter/nf_tables.h>

namespace sliceproxy::backends::nft {

void loadFrontend(RuleBuilder& b, const NodeFamily& fam) {
  b.loadAddr(false, fam.family, reg32(0));
  b.meta(NFT_META_L4PROTO, reg32(fam.addrWords()));
  b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(fam.addrWords() + 1));
}

void loadNodePort(RuleBuilder& b) {
  b.meta(NFT_META_L4PROTO, reg32(0));
  b.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32(1));
}

}  // namespace sliceproxy::backends::nft
