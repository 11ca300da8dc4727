#pragma once
// Set keys and map data in the kernel's layout: each field of a concatenation starts on a
// 4-byte boundary; integers from numgen and immediates are host order, ports network order.

#include <arpa/inet.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "proxier/model/ip.h"
#include "proxier/model/service.h"

namespace sliceproxy::backends::nft {

struct Bytes {
  uint8_t b[64] = {};
  uint32_t len = 0;

  Bytes& addr(const proxier::IpAddr& a) {
    std::memcpy(b + len, a.bytes.data(), a.size());
    len += static_cast<uint32_t>(a.size());
    return *this;
  }
  Bytes& proto(proxier::Protocol p);
  Bytes& port(uint16_t port) {
    uint16_t be = htons(port);
    std::memcpy(b + len, &be, 2);
    len += 4;
    return *this;
  }
  Bytes& u32(uint32_t v) {
    std::memcpy(b + len, &v, 4);
    len += 4;
    return *this;
  }
  friend bool operator==(const Bytes& x, const Bytes& y) {
    return x.len == y.len && std::memcmp(x.b, y.b, x.len) == 0;
  }
};

inline Bytes& Bytes::proto(proxier::Protocol p) {
  b[len] = p == proxier::Protocol::TCP ? 6 : p == proxier::Protocol::UDP ? 17 : 132;
  len += 4;
  return *this;
}

// What an element maps to.
struct ElemValue {
  enum Kind : uint8_t { None, Goto, Drop, Data } kind = None;
  std::string chain;
  Bytes data;
  friend bool operator==(const ElemValue&, const ElemValue&) = default;
};

struct Elem {
  uint8_t set;  // index into the layout's set names
  Bytes key;
  ElemValue value;
  uint8_t part = 0;      // which of a sharded set's parts
  uint8_t table = 0xff;  // the main table (kMainTable) or a service table
  friend bool operator==(const Elem&, const Elem&) = default;
};

inline nftnl_set_elem* makeElem(const Bytes& key, const ElemValue* value) {
  nftnl_set_elem* e = nftnl_set_elem_alloc();
  nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key.b, key.len);
  if (value) {
    switch (value->kind) {
      case ElemValue::Goto:
        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, static_cast<uint32_t>(NFT_GOTO));
        nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, value->chain.c_str());
        break;
      case ElemValue::Drop:
        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, static_cast<uint32_t>(NF_DROP));
        break;
      case ElemValue::Data:
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, value->data.b, value->data.len);
        break;
      case ElemValue::None: break;
    }
  }
  return e;
}

}  // namespace sliceproxy::backends::nft
