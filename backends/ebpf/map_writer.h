#pragma once
// Typed writes to the socket load-balancing maps, each one a single bpf() call whose error names
// the map and the key. A hash map element is replaced whole (RCU), so a reader sees either the
// old value or the new one.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backends/ebpf/slot_set.h"
#include "sock_lb_maps.h"

namespace sliceproxy::backends::ebpf {

std::string describe(const sp_svc_key& k);

class MapWriter {
 public:
  MapWriter(int servicesFd, int slotsFd, int membersFd)
      : services_(servicesFd), slots_(slotsFd), members_(membersFd) {}

  static sp_backend backendOf(const proxier::EndpointKey& e);
  static sp_slot_key slotKey(uint32_t setId, const SlotRef& s);
  static sp_member_key memberKey(uint32_t setId, const MemberRef& m);

  // Each returns "" or what failed. writeSlot writes the slot and, with `member` (ports with
  // ClientIP affinity, the only readers of the member map), the endpoint's member entry.
  std::string writeSlot(uint32_t setId, const SlotWrite& w, bool member);
  // The same for many slots, in batches of bpf(BPF_MAP_UPDATE_BATCH): one system call per few
  // thousand slots instead of two per slot (a cold start, a generation flip).
  std::string writeSlots(uint32_t setId, const std::vector<SlotWrite>& writes, bool members);
  // A missing key is not an error.
  std::string deleteSlot(const sp_slot_key& k);
  std::string deleteMember(const sp_member_key& k);
  // Many at once, in batches of bpf(BPF_MAP_DELETE_BATCH); missing keys are skipped.
  std::string deleteSlots(const std::vector<sp_slot_key>& keys);
  std::string deleteMembers(const std::vector<sp_member_key>& keys);
  std::string writeFrontend(const sp_svc_key& k, const sp_svc_value& v);
  std::string deleteFrontend(const sp_svc_key& k);  // a missing key is not an error

  // One slot as the maps hold it; nullopt if it is missing or unreadable.
  std::optional<proxier::EndpointKey> readSlot(uint32_t setId, const SlotRef& s) const;

  // Everything in the maps, for adopting what a previous run left (start-up only).
  std::vector<std::pair<sp_svc_key, sp_svc_value>> frontends() const;
  std::vector<sp_slot_key> slotKeys() const;
  std::vector<sp_member_key> memberKeys() const;

  uint64_t operations() const { return ops_; }

 private:
  int services_, slots_, members_;
  uint64_t ops_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
