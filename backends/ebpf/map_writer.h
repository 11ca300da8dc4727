#pragma once
// Typed writes to the socket load-balancing maps, each one a single bpf() call whose error names
// the map and the key. A hash map element is replaced whole (RCU), so a reader sees either the
// old value or the new one.

#include <cstdint>
#include <string>
#include <vector>

#include "backends/ebpf/slot_set.h"
#include "sock_lb_maps.h"

namespace sliceproxy::backends::ebpf {

std::string describe(const sp_svc_key& k);

class MapWriter {
 public:
  MapWriter(int servicesFd, int slotsFd) : services_(servicesFd), slots_(slotsFd) {}

  // Each returns "" or what failed.
  std::string writeSlot(uint32_t setId, const SlotWrite& w);
  std::string deleteSlot(uint32_t setId, const SlotRef& s);  // a missing slot is not an error
  std::string writeFrontend(const sp_svc_key& k, const sp_svc_value& v);
  std::string deleteFrontend(const sp_svc_key& k);  // a missing key is not an error

  // Everything in the maps, for adopting what a previous run left (start-up only).
  std::vector<std::pair<sp_svc_key, sp_svc_value>> frontends() const;
  std::vector<sp_slot_key> slotKeys() const;

  uint64_t operations() const { return ops_; }

 private:
  int services_, slots_;
  uint64_t ops_ = 0;
};

}  // namespace sliceproxy::backends::ebpf
