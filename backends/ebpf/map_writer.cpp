#include "backends/ebpf/map_writer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

namespace sliceproxy::backends::ebpf {

namespace {

std::string addrText(const uint8_t* addr, uint8_t family) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == SP_FAMILY_V4 ? AF_INET : AF_INET6, addr, buf, sizeof(buf));
  return family == SP_FAMILY_V4 ? std::string(buf) : fmt::format("[{}]", buf);
}

std::string slotText(uint32_t setId, const SlotRef& s) {
  return fmt::format("sp_slots set {} generation {} slot {}", setId, s.gen, s.index);
}

}  // namespace

sp_backend MapWriter::backendOf(const proxier::EndpointKey& e) {
  sp_backend b{};
  std::memcpy(b.addr, e.ip.bytes.data(), e.ip.size());
  b.port = htons(e.port);
  b.family = e.ip.isV4() ? SP_FAMILY_V4 : SP_FAMILY_V6;
  return b;
}

namespace {

template <typename Key>
std::vector<Key> keysOf(int fd) {
  std::vector<Key> out;
  Key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  return out;
}

}  // namespace

sp_slot_key MapWriter::slotKey(uint32_t setId, const SlotRef& s) {
  return {setId, s.index | (s.gen ? SP_SLOT_GEN_BIT : 0u)};
}

sp_member_key MapWriter::memberKey(uint32_t setId, const MemberRef& m) {
  return {setId, m.gen, backendOf(m.endpoint)};
}

std::string describe(const sp_svc_key& k) {
  if (k.proto == 0) return fmt::format("{}:*", addrText(k.addr, k.family));
  return fmt::format("{}:{}/{}", addrText(k.addr, k.family), ntohs(k.port),
                     k.proto == IPPROTO_TCP ? "TCP" : "UDP");
}

std::string MapWriter::writeSlot(uint32_t setId, const SlotWrite& w, bool member) {
  const sp_slot_key key = slotKey(setId, w.slot);
  const sp_backend b = backendOf(w.endpoint);
  const auto& ip = w.endpoint.ip;
  ++ops_;
  if (bpf_map_update_elem(slots_, &key, &b, BPF_ANY) != 0) {
    return fmt::format("{} = {}:{}: {}", slotText(setId, w.slot), ip.str(), w.endpoint.port,
                       std::strerror(errno));
  }
  if (!member) return "";
  ++ops_;
  const sp_member_key mk{setId, w.slot.gen, b};
  if (bpf_map_update_elem(members_, &mk, &w.slot.index, BPF_ANY) != 0) {
    return fmt::format("sp_members set {} generation {} {}:{}: {}", setId, w.slot.gen, ip.str(),
                       w.endpoint.port, std::strerror(errno));
  }
  return "";
}

std::string MapWriter::writeSlots(uint32_t setId, const std::vector<SlotWrite>& writes,
                                  bool members) {
  constexpr size_t kBatch = 4096;
  std::vector<sp_slot_key> slotKeys;
  std::vector<sp_backend> backends;
  std::vector<sp_member_key> memberKeys;
  std::vector<uint32_t> indexes;
  for (size_t from = 0; from < writes.size(); from += kBatch) {
    const size_t to = std::min(writes.size(), from + kBatch);
    slotKeys.clear();
    backends.clear();
    memberKeys.clear();
    indexes.clear();
    for (size_t i = from; i < to; ++i) {
      const SlotWrite& w = writes[i];
      slotKeys.push_back(slotKey(setId, w.slot));
      backends.push_back(backendOf(w.endpoint));
      memberKeys.push_back({setId, w.slot.gen, backends.back()});
      indexes.push_back(w.slot.index);
    }
    // Slots before members, as writeSlot does: a member entry never names an unwritten slot.
    for (auto [fd, keys, values, what] :
         {std::tuple{slots_, static_cast<const void*>(slotKeys.data()),
                     static_cast<const void*>(backends.data()), "sp_slots"},
          std::tuple{members_, static_cast<const void*>(memberKeys.data()),
                     static_cast<const void*>(indexes.data()), "sp_members"}}) {
      if (fd == members_ && !members) continue;
      uint32_t count = static_cast<uint32_t>(to - from);
      LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
      ++ops_;
      if (bpf_map_update_batch(fd, keys, values, &count, &opts) != 0) {
        return fmt::format("{} set {}: batch of {} slots from slot {}: {} written, then {}", what,
                           setId, to - from, writes[from].slot.index, count, std::strerror(errno));
      }
    }
  }
  return "";
}

std::string MapWriter::deleteSlot(const sp_slot_key& k) {
  ++ops_;
  if (bpf_map_delete_elem(slots_, &k) != 0 && errno != ENOENT) {
    return fmt::format(
        "deleting {}: {}",
        slotText(k.set_id, {k.index & SP_SLOT_GEN_BIT ? 1u : 0u, k.index & ~SP_SLOT_GEN_BIT}),
        std::strerror(errno));
  }
  return "";
}

std::string MapWriter::deleteMember(const sp_member_key& k) {
  ++ops_;
  if (bpf_map_delete_elem(members_, &k) != 0 && errno != ENOENT) {
    return fmt::format("deleting sp_members set {} generation {}: {}", k.set_id, k.gen,
                       std::strerror(errno));
  }
  return "";
}

namespace {

// BPF_MAP_DELETE_BATCH stops at the first key it cannot delete and reports how many it did:
// a missing key (ENOENT) is skipped and the batch resumed after it.
template <typename Key>
std::string deleteBatch(int fd, const std::vector<Key>& keys, uint64_t& ops, const char* what) {
  constexpr size_t kBatch = 4096;
  size_t from = 0;
  while (from < keys.size()) {
    uint32_t count = static_cast<uint32_t>(std::min(kBatch, keys.size() - from));
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    ++ops;
    if (bpf_map_delete_batch(fd, &keys[from], &count, &opts) == 0) {
      from += count;
      continue;
    }
    if (errno != ENOENT) {
      return fmt::format("deleting {} {} entries: {} deleted, then {}", what, keys.size(),
                         from + count, std::strerror(errno));
    }
    from += count + 1;
  }
  return "";
}

}  // namespace

std::string MapWriter::deleteSlots(const std::vector<sp_slot_key>& keys) {
  if (keys.size() == 1) return deleteSlot(keys[0]);
  return deleteBatch(slots_, keys, ops_, "sp_slots");
}

std::string MapWriter::deleteMembers(const std::vector<sp_member_key>& keys) {
  if (keys.size() == 1) return deleteMember(keys[0]);
  return deleteBatch(members_, keys, ops_, "sp_members");
}

std::string MapWriter::writeFrontend(const sp_svc_key& k, const sp_svc_value& v) {
  ++ops_;
  if (bpf_map_update_elem(services_, &k, &v, BPF_ANY) != 0) {
    return fmt::format("sp_services {}: {}", describe(k), std::strerror(errno));
  }
  return "";
}

std::string MapWriter::deleteFrontend(const sp_svc_key& k) {
  ++ops_;
  if (bpf_map_delete_elem(services_, &k) != 0 && errno != ENOENT) {
    return fmt::format("deleting sp_services {}: {}", describe(k), std::strerror(errno));
  }
  return "";
}

std::vector<std::pair<sp_svc_key, sp_svc_value>> MapWriter::frontends() const {
  std::vector<std::pair<sp_svc_key, sp_svc_value>> out;
  sp_svc_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(services_, prev, &next) == 0) {
    sp_svc_value v{};
    if (bpf_map_lookup_elem(services_, &next, &v) == 0) out.emplace_back(next, v);
    key = next;
    prev = &key;
  }
  return out;
}

std::optional<proxier::EndpointKey> MapWriter::readSlot(uint32_t setId, const SlotRef& s) const {
  const sp_slot_key key = slotKey(setId, s);
  sp_backend b{};
  if (bpf_map_lookup_elem(slots_, &key, &b) != 0) return std::nullopt;
  proxier::EndpointKey e;
  e.ip.family = b.family == SP_FAMILY_V4 ? proxier::IpFamily::V4 : proxier::IpFamily::V6;
  std::memcpy(e.ip.bytes.data(), b.addr, e.ip.size());
  e.port = ntohs(b.port);
  return e;
}

std::vector<sp_slot_key> MapWriter::slotKeys() const {
  return keysOf<sp_slot_key>(slots_);
}

std::vector<sp_member_key> MapWriter::memberKeys() const {
  return keysOf<sp_member_key>(members_);
}

}  // namespace sliceproxy::backends::ebpf
