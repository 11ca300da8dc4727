// glibc's <netinet/in.h> must come before any <linux/...> header that pulls in <linux/in.h>.
#include <netinet/in.h>

#include "backends/nftnl/set_spec.h"

#include <libnftnl/set.h>
#include <linux/netfilter/nf_tables.h>

namespace sliceproxy::backends::nft {

uint32_t concatType(std::initializer_list<uint32_t> types) {
  uint32_t t = 0;
  for (uint32_t x : types) t = (t << 6) | x;
  return t;
}

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
  if (s.size) nftnl_set_set_u32(set, NFTNL_SET_DESC_SIZE, s.size);
  tx.addSet(table, set, "set " + name);
}

}  // namespace sliceproxy::backends::nft
