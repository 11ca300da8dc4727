#pragma once
// Creating a named set or map: its key and data types as nft's datatype numbers, so that
// `nft list ruleset` shows the set readably.

#include <cstdint>
#include <initializer_list>
#include <string>

#include "backends/nftnl/transaction.h"
#include "proxier/model/ip.h"

namespace sliceproxy::backends::nft {

inline constexpr uint32_t kTypeVerdict = 1, kTypeIp4 = 7, kTypeIp6 = 8, kTypeProto = 12,
                          kTypeService = 13, kTypeMark = 19;

// The type of a concatenation key (`a . b . c`): the member types, 6 bits each.
uint32_t concatType(std::initializer_list<uint32_t> types);
inline uint32_t ipType(proxier::IpFamily f) {
  return f == proxier::IpFamily::V4 ? kTypeIp4 : kTypeIp6;
}

struct SetSpec {
  uint32_t keyType, keyLen;
  uint32_t flags = 0;
  uint32_t dataType = 0, dataLen = 0;  // maps only
  uint32_t size = 0;
};

void addSet(Transaction& tx, const std::string& table, const std::string& name, const SetSpec& s);

}  // namespace sliceproxy::backends::nft
