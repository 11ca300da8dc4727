#pragma once
// Slot and member entries no frontend exposes any more, and when they may go. A reader that
// looked a frontend up before it changed may still read them, so they are deleted only after the
// sync that buried them; then in batches (one bpf() call for many, not one in every sync that
// follows a removal, which is what an endpoint change at scale costs: each system call is
// several microseconds), and never once a later sync has written the same key again.

#include <boost/unordered/unordered_flat_set.hpp>
#include <cstdint>
#include <cstring>
#include <string>

#include "backends/ebpf/map_writer.h"

namespace sliceproxy::backends::ebpf {

class Garbage {
 public:
  void burySlot(const sp_slot_key& k) { fresh_.slots.insert(slotId(k)); }
  void buryMember(const sp_member_key& k) { fresh_.members.insert(k); }
  // Written again (a slot index reused by the next addition): live, not garbage.
  void reviveSlot(const sp_slot_key& k) {
    if (empty()) return;
    fresh_.slots.erase(slotId(k));
    old_.slots.erase(slotId(k));
  }
  void reviveMember(const sp_member_key& k) {
    if (empty()) return;
    fresh_.members.erase(k);
    old_.members.erase(k);
  }
  // The start of a sync: what earlier syncs buried may be deleted from now on.
  void age();
  // Entries that may be deleted now.
  size_t deletable() const { return old_.slots.size() + old_.members.size(); }
  bool empty() const { return deletable() == 0 && fresh_.slots.empty() && fresh_.members.empty(); }
  // Deletes every deletable entry ("" or what failed; what was not deleted stays).
  std::string flush(MapWriter& maps);
  void clear() { fresh_ = old_ = {}; }

 private:
  static uint64_t slotId(const sp_slot_key& k) { return uint64_t{k.set_id} << 32 | k.index; }
  struct MemberHash {
    size_t operator()(const sp_member_key& k) const noexcept {
      uint64_t h = 1469598103934665603ull;
      const auto* p = reinterpret_cast<const uint8_t*>(&k);
      for (size_t i = 0; i < sizeof(k); ++i) h = (h ^ p[i]) * 1099511628211ull;
      return static_cast<size_t>(h);
    }
  };
  struct MemberEq {
    bool operator()(const sp_member_key& a, const sp_member_key& b) const noexcept {
      return std::memcmp(&a, &b, sizeof(a)) == 0;
    }
  };
  struct Keys {
    boost::unordered_flat_set<uint64_t> slots;
    boost::unordered_flat_set<sp_member_key, MemberHash, MemberEq> members;
  };
  Keys fresh_, old_;
};

}  // namespace sliceproxy::backends::ebpf
