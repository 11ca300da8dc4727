#include "backends/ebpf/map_writer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>

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

sp_slot_key slotKey(uint32_t setId, const SlotRef& s) {
  return {setId, s.index | (s.gen ? SP_SLOT_GEN_BIT : 0u)};
}

}  // namespace

std::string describe(const sp_svc_key& k) {
  return fmt::format("{}:{}/{}", addrText(k.addr, k.family), ntohs(k.port),
                     k.proto == IPPROTO_TCP ? "TCP" : "UDP");
}

std::string MapWriter::writeSlot(uint32_t setId, const SlotWrite& w) {
  const sp_slot_key key = slotKey(setId, w.slot);
  sp_backend b{};
  const auto& ip = w.endpoint.ip;
  std::memcpy(b.addr, ip.bytes.data(), ip.size());
  b.port = htons(w.endpoint.port);
  b.family = ip.isV4() ? SP_FAMILY_V4 : SP_FAMILY_V6;
  ++ops_;
  if (bpf_map_update_elem(slots_, &key, &b, BPF_ANY) != 0) {
    return fmt::format("{} = {}:{}: {}", slotText(setId, w.slot), ip.str(), w.endpoint.port,
                       std::strerror(errno));
  }
  return "";
}

std::string MapWriter::deleteSlot(uint32_t setId, const SlotRef& s) {
  const sp_slot_key key = slotKey(setId, s);
  ++ops_;
  if (bpf_map_delete_elem(slots_, &key) != 0 && errno != ENOENT) {
    return fmt::format("deleting {}: {}", slotText(setId, s), std::strerror(errno));
  }
  return "";
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

std::vector<sp_slot_key> MapWriter::slotKeys() const {
  std::vector<sp_slot_key> out;
  sp_slot_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(slots_, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  return out;
}

}  // namespace sliceproxy::backends::ebpf
