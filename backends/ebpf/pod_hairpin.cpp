#include "backends/ebpf/pod_hairpin.h"

#include <bpf/bpf.h>
#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "backends/ebpf/client_namespaces.h"

namespace sliceproxy::backends::ebpf {

namespace {

sp_hairpin_key keyOf(uint32_t setId, uint64_t netns) {
  sp_hairpin_key k{};
  k.netns = netns;
  k.set_id = setId;
  return k;
}

}  // namespace

PodHairpin::PodHairpin(int mapFd, std::string cgroupRoot)
    : fd_(mapFd), root_(std::move(cgroupRoot)) {
  sp_hairpin_key k{}, next{};
  for (const sp_hairpin_key* prev = nullptr; bpf_map_get_next_key(fd_, prev, &next) == 0;
       prev = &k) {
    k = next;
    leftovers_.insert({k.set_id, k.netns});
  }
}

std::string PodHairpin::rescan() {
  const auto t0 = std::chrono::steady_clock::now();
  std::string error;
  auto found = clientNamespaceAddresses(root_, error);
  cookies_.clear();
  for (const auto& ns : found) {
    for (const auto& a : ns.addresses) cookies_[a] = ns.cookie;
  }
  namespaces_ = found.size();
  rescanMillis_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return error;
}

std::string PodHairpin::set(uint32_t setId, const std::set<proxier::EndpointKey>& local,
                            bool* any) {
  std::set<uint64_t> want;
  for (const auto& e : local) {
    auto it = cookies_.find(e.ip);
    if (it != cookies_.end()) want.insert(it->second);
  }
  *any = !want.empty();
  auto& have = written_[setId];
  const uint8_t one = 1;
  for (uint64_t ns : want) {
    leftovers_.erase({setId, ns});
    if (have.contains(ns)) continue;
    const sp_hairpin_key k = keyOf(setId, ns);
    if (bpf_map_update_elem(fd_, &k, &one, BPF_ANY) != 0) {
      return fmt::format("writing sp_hairpin (set {}, netns {}): {}", setId, ns,
                         std::strerror(errno));
    }
  }
  for (uint64_t ns : have) {
    if (want.contains(ns)) continue;
    const sp_hairpin_key k = keyOf(setId, ns);
    if (bpf_map_delete_elem(fd_, &k) != 0 && errno != ENOENT) {
      return fmt::format("deleting from sp_hairpin (set {}, netns {}): {}", setId, ns,
                         std::strerror(errno));
    }
  }
  if (want.empty()) {
    written_.erase(setId);
  } else {
    have = std::move(want);
  }
  return "";
}

std::string PodHairpin::drop(uint32_t setId) {
  bool any = false;
  return set(setId, {}, &any);
}

std::string PodHairpin::dropLeftovers() {
  for (const auto& [setId, ns] : leftovers_) {
    const sp_hairpin_key k = keyOf(setId, ns);
    if (bpf_map_delete_elem(fd_, &k) != 0 && errno != ENOENT) {
      return fmt::format("deleting a previous run's sp_hairpin entry (set {}, netns {}): {}", setId,
                         ns, std::strerror(errno));
    }
  }
  leftovers_.clear();
  return "";
}

std::vector<proxier::IpAddr> PodHairpin::podAddresses() const {
  std::vector<proxier::IpAddr> out;
  for (const auto& [a, ns] : cookies_) out.push_back(a);
  return out;
}

size_t PodHairpin::entries() const {
  size_t n = 0;
  for (const auto& [id, s] : written_) n += s.size();
  return n;
}

}  // namespace sliceproxy::backends::ebpf
