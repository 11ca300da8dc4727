#include "backends/ebpf/garbage.h"

#include <vector>

namespace sliceproxy::backends::ebpf {

void Garbage::age() {
  if (fresh_.slots.empty() && fresh_.members.empty()) return;
  old_.slots.insert(fresh_.slots.begin(), fresh_.slots.end());
  old_.members.insert(fresh_.members.begin(), fresh_.members.end());
  fresh_ = {};
}

std::string Garbage::flush(MapWriter& maps) {
  if (!old_.slots.empty()) {
    std::vector<sp_slot_key> keys;
    keys.reserve(old_.slots.size());
    for (uint64_t id : old_.slots) {
      keys.push_back({static_cast<uint32_t>(id >> 32), static_cast<uint32_t>(id)});
    }
    if (auto err = maps.deleteSlots(keys); !err.empty()) return err;
    old_.slots.clear();
  }
  if (!old_.members.empty()) {
    std::vector<sp_member_key> keys(old_.members.begin(), old_.members.end());
    if (auto err = maps.deleteMembers(keys); !err.empty()) return err;
    old_.members.clear();
  }
  return "";
}

}  // namespace sliceproxy::backends::ebpf
