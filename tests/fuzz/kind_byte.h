#pragma once
// Fuzz inputs whose first byte picks the kind a decoder is told to expect, so one corpus covers
// the three kinds the API source lists and watches.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "slice-watch/decoded_object.h"

namespace sliceproxy::fuzz {

struct KindInput {
  std::string_view kind;
  bool namespaced;
  std::string rest;
};

inline KindInput splitKind(const uint8_t* data, size_t size) {
  static constexpr std::string_view kinds[] = {
      slicewatch::kKindService, slicewatch::kKindEndpointSlice, slicewatch::kKindNode};
  if (size == 0) return {kinds[0], true, {}};
  std::string_view kind = kinds[data[0] % 3];
  return {kind, kind != slicewatch::kKindNode,
          std::string(reinterpret_cast<const char*>(data) + 1, size - 1)};
}

}  // namespace sliceproxy::fuzz
