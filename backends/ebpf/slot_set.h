#pragma once
// The userspace mirror of one backend set in the slots map, and how a change to its membership
// becomes slot writes that a reader in the packet path never sees half done.
//
// A set has two slot ranges (generations). The frontend entry names the live generation and
// how many of its slots are in use, and is written after the slots it exposes, so:
//  - additions only: new slots go past the count, then the count grows;
//  - one endpoint removed: the last slot is copied into its place (the visible set is already
//    the new set, the copied endpoint counted twice), then the count shrinks;
//  - one replaced by another: one slot write;
//  - anything else: the whole new set goes into the other generation, then the frontend
//    switches to it.
// Each case moves a reader from the old set to the new one in one step, and the common ones
// (one endpoint coming or going) cost O(1) map writes whatever the size of the set. Slots that
// fall out of use are deleted after the sync that freed them, in batches (garbage.h).
// Beside the slots, a member map gives each endpoint's slot in a generation, so a client's
// remembered backend (ClientIP affinity) is found again after it moved to another slot.

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <vector>

#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::ebpf {

struct SlotRef {
  uint32_t gen = 0;
  uint32_t index = 0;
  friend bool operator==(const SlotRef&, const SlotRef&) = default;
};

struct SlotWrite {
  SlotRef slot;
  proxier::EndpointKey endpoint;
};

struct MemberRef {
  uint32_t gen = 0;
  proxier::EndpointKey endpoint;
};

struct SlotPlan {
  // Before the frontend update, in this order; each also records the endpoint's slot in the
  // member map (for ClientIP affinity).
  std::vector<SlotWrite> writes;
  // No longer exposed once the frontend is updated.
  std::vector<SlotRef> garbage;
  std::vector<MemberRef> garbageMembers;
  bool changed = false;  // count or generation changed: frontends must be rewritten
  bool flipped = false;
};

class SlotSet {
 public:
  explicit SlotSet(uint32_t id = 0) : id_(id) {}
  // A set as a previous run left it in the maps (adopted at start-up).
  SlotSet(uint32_t id, uint32_t gen, std::vector<proxier::EndpointKey> slots);
  uint32_t id() const { return id_; }
  uint32_t gen() const { return gen_; }
  uint32_t count() const { return static_cast<uint32_t>(slots_.size()); }
  const proxier::EndpointKey& at(uint32_t i) const { return slots_[i]; }
  bool contains(const proxier::EndpointKey& k) const { return index_.contains(k); }

  // Applies a membership change (keys already absent / present are ignored).
  SlotPlan change(const std::vector<proxier::EndpointKey>& removed,
                  const std::vector<proxier::EndpointKey>& added);
  // Makes the membership exactly `members` (a full sync), keeping the slots of endpoints that
  // stay where they are.
  SlotPlan replace(const std::vector<proxier::EndpointKey>& members);
  // Every slot and member entry in use, e.g. to delete them all once the set is dropped.
  std::vector<SlotRef> live() const;
  std::vector<MemberRef> liveMembers() const;

 private:
  SlotPlan flip(std::vector<proxier::EndpointKey> next);
  void rebuildIndex();
  uint32_t id_;
  uint32_t gen_ = 0;
  std::vector<proxier::EndpointKey> slots_;
  boost::unordered_flat_map<proxier::EndpointKey, uint32_t, proxier::EndpointKeyHash> index_;
};

}  // namespace sliceproxy::backends::ebpf
