#include "backends/nftables/affinity_carry.h"

#include <fmt/format.h>
#include <libnftnl/set.h>
#include <libnftnl/udata.h>
#include <linux/netfilter/nf_tables.h>

#include <memory>

namespace sliceproxy::backends::nft {

using namespace proxier;

namespace {

// nft prints the set types it knows from the low userdata types and skips the others.
constexpr uint8_t kOwnerType = 0xf0;
constexpr size_t kMaxUserdata = 250;

struct TaggedSet {
  std::string table, name, tag;
};

struct SetList {
  const std::vector<std::string>* tables;
  std::vector<TaggedSet> sets;
};

int onOwnerAttr(const nftnl_udata* attr, void* data) {
  if (nftnl_udata_type(attr) == kOwnerType) {
    *static_cast<std::string*>(data) =
        std::string(static_cast<const char*>(nftnl_udata_get(attr)), nftnl_udata_len(attr));
  }
  return 0;
}

int onSet(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<SetList*>(data);
  std::unique_ptr<nftnl_set, decltype(&nftnl_set_free)> s(nftnl_set_alloc(), nftnl_set_free);
  if (nftnl_set_nlmsg_parse(nlh, s.get()) < 0) return MNL_CB_OK;
  const char* table = nftnl_set_get_str(s.get(), NFTNL_SET_TABLE);
  const char* name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
  if (!table || !name) return MNL_CB_OK;
  bool ours = false;
  for (const auto& t : *st->tables) ours = ours || t == table;
  uint32_t len = 0;
  const void* ud = nftnl_set_get_data(s.get(), NFTNL_SET_USERDATA, &len);
  if (!ours || !ud) return MNL_CB_OK;
  std::string tag;
  nftnl_udata_parse(ud, len, onOwnerAttr, &tag);
  if (!tag.empty()) st->sets.push_back({table, name, std::move(tag)});
  return MNL_CB_OK;
}

struct ElemList {
  IpFamily family;
  std::vector<AffinityClient> clients;
};

int onElems(const nlmsghdr* nlh, void* data) {
  auto* st = static_cast<ElemList*>(data);
  std::unique_ptr<nftnl_set, decltype(&nftnl_set_free)> s(nftnl_set_alloc(), nftnl_set_free);
  if (nftnl_set_elems_nlmsg_parse(nlh, s.get()) < 0) return MNL_CB_OK;
  nftnl_set_elems_iter* it = nftnl_set_elems_iter_create(s.get());
  const size_t want = st->family == IpFamily::V4 ? 4 : 16;
  for (nftnl_set_elem* e = nftnl_set_elems_iter_next(it); e; e = nftnl_set_elems_iter_next(it)) {
    uint32_t len = 0;
    const auto* k = static_cast<const uint8_t*>(nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len));
    if (!k || len != want || !nftnl_set_elem_is_set(e, NFTNL_SET_ELEM_EXPIRATION)) continue;
    AffinityClient c;
    c.addr.family = st->family;
    std::copy(k, k + len, c.addr.bytes.begin());
    c.remainingMs = nftnl_set_elem_get_u64(e, NFTNL_SET_ELEM_EXPIRATION);
    if (c.remainingMs > 0) st->clients.push_back(c);
  }
  nftnl_set_elems_iter_destroy(it);
  return MNL_CB_OK;
}

}  // namespace

std::string affinityOwnerTag(const ServicePortKey& port, uint8_t slotTable,
                             const EndpointKey& endpoint) {
  std::string tag = fmt::format("{} {} {} {}", port.str(), slotTable == 0 ? "cluster" : "local",
                                endpoint.ip.str(), endpoint.port);
  return tag.size() <= kMaxUserdata ? tag : std::string();
}

std::vector<uint8_t> affinityOwnerUserdata(const std::string& tag) {
  std::vector<uint8_t> out;
  if (tag.empty()) return out;
  nftnl_udata_buf* buf = nftnl_udata_buf_alloc(static_cast<uint32_t>(tag.size() + 8));
  if (nftnl_udata_put(buf, kOwnerType, static_cast<uint32_t>(tag.size()), tag.data())) {
    const auto* p = static_cast<const uint8_t*>(nftnl_udata_buf_data(buf));
    out.assign(p, p + nftnl_udata_buf_len(buf));
  }
  nftnl_udata_buf_free(buf);
  return out;
}

AffinityCarry AffinityCarry::read(Socket& sock, uint16_t nfproto, IpFamily family,
                                  const std::vector<std::string>& tables, std::string& error) {
  AffinityCarry out;
  if (tables.empty()) return out;
  SetList sets{&tables, {}};
  if (auto err = sock.dump(NFT_MSG_GETSET, nfproto, nullptr, onSet, &sets); !err.empty()) {
    error = fmt::format("listing the {} affinity sets: {}", familyName(family), err);
    return out;
  }
  for (const auto& s : sets.sets) {
    ElemList elems{family, {}};
    const std::string err = sock.dump(
        NFT_MSG_GETSETELEM, nfproto,
        [&](nlmsghdr* nlh) {
          nftnl_set* q = nftnl_set_alloc();
          nftnl_set_set_str(q, NFTNL_SET_TABLE, s.table.c_str());
          nftnl_set_set_str(q, NFTNL_SET_NAME, s.name.c_str());
          nftnl_set_elems_nlmsg_build_payload(nlh, q);
          nftnl_set_free(q);
        },
        onElems, &elems);
    if (!err.empty()) {
      error = fmt::format("reading affinity set {} {} ({}): {}", s.table, s.name, s.tag, err);
      return AffinityCarry{};
    }
    if (elems.clients.empty()) continue;
    out.clients_ += elems.clients.size();
    auto& dst = out.byOwner_[s.tag];
    dst.insert(dst.end(), elems.clients.begin(), elems.clients.end());
  }
  return out;
}

std::vector<AffinityClient> AffinityCarry::take(const std::string& tag) {
  auto it = byOwner_.find(tag);
  if (it == byOwner_.end()) return {};
  auto out = std::move(it->second);
  byOwner_.erase(it);
  return out;
}

}  // namespace sliceproxy::backends::nft
