#include "proxier/core/frontend_conflicts.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace sliceproxy::proxier {

std::string Frontend::str() const {
  if (nodePort) return fmt::format("nodePort {}/{}", port, protocolName(protocol));
  return fmt::format("{}{}{}:{}/{}", addr.isV4() ? "" : "[", addr.str(), addr.isV4() ? "" : "]",
                     port, protocolName(protocol));
}

namespace {

std::vector<Frontend> frontendsOf(const std::vector<ServicePortInfoPtr>& infos) {
  std::vector<Frontend> out;
  for (const auto& info : infos) {
    const Protocol proto = info->key.port.protocol;
    out.push_back({info->clusterIP, info->port, proto, false});
    for (const auto& ip : info->externalIPs) out.push_back({ip, info->port, proto, false});
    for (const auto& ip : info->loadBalancerIPs) out.push_back({ip, info->port, proto, false});
    if (info->nodePort) out.push_back({IpAddr{}, info->nodePort, proto, true});
  }
  // A Service may name its own address twice (its clusterIP as an externalIP): no conflict.
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

void FrontendConflicts::update(const ObjectKey& key, std::chrono::system_clock::time_point created,
                               const std::vector<ServicePortInfoPtr>& infos,
                               std::set<ObjectKey>& affected) {
  Claims next{created, frontendsOf(infos)};
  auto it = claims_.find(key);
  if (it != claims_.end()) {
    if (it->second.created == next.created && it->second.frontends == next.frontends) return;
    for (const auto& f : it->second.frontends) {
      auto c = claimants_.find(f);
      if (c == claimants_.end()) continue;
      c->second.erase(Claimant{it->second.created, key});
      for (const auto& other : c->second) affected.insert(other.key);
      if (c->second.empty()) claimants_.erase(c);
    }
    claims_.erase(it);
  }
  if (next.frontends.empty()) {
    reported_.erase(key);
    return;
  }
  for (const auto& f : next.frontends) {
    auto& set = claimants_[f];
    for (const auto& other : set) affected.insert(other.key);
    set.insert(Claimant{created, key});
  }
  claims_.emplace(key, std::move(next));
}

bool FrontendConflicts::owns(const ObjectKey& key, const Frontend& f) const {
  const ObjectKey* owner = ownerOf(f);
  return !owner || *owner == key;
}

const ObjectKey* FrontendConflicts::ownerOf(const Frontend& f) const {
  auto c = claimants_.find(f);
  if (c == claimants_.end() || c->second.empty()) return nullptr;
  return &c->second.begin()->key;
}

std::vector<ObjectKey> FrontendConflicts::losersOf(const Frontend& f) const {
  std::vector<ObjectKey> out;
  auto c = claimants_.find(f);
  if (c == claimants_.end()) return out;
  for (auto it = std::next(c->second.begin()); it != c->second.end(); ++it) out.push_back(it->key);
  return out;
}

void FrontendConflicts::filter(const ObjectKey& key, std::vector<ServicePortInfoPtr>& infos) {
  std::set<Frontend> lostNow;
  std::vector<ServicePortInfoPtr> kept;
  for (auto& info : infos) {
    const Protocol proto = info->key.port.protocol;
    Frontend cluster{info->clusterIP, info->port, proto, false};
    if (!owns(key, cluster)) {
      lostNow.insert(cluster);
      continue;
    }
    std::shared_ptr<ServicePortInfo> copy;
    auto edit = [&]() -> ServicePortInfo& {
      if (!copy) copy = std::make_shared<ServicePortInfo>(*info);
      return *copy;
    };
    auto dropLost = [&](std::vector<IpAddr> ServicePortInfo::*field) {
      const auto& ips = (*info).*field;
      if (std::all_of(ips.begin(), ips.end(), [&](const IpAddr& ip) {
            return owns(key, {ip, info->port, proto, false});
          })) {
        return;
      }
      std::vector<IpAddr> keep;
      for (const auto& ip : ips) {
        Frontend f{ip, info->port, proto, false};
        if (owns(key, f)) {
          keep.push_back(ip);
        } else {
          lostNow.insert(f);
        }
      }
      edit().*field = std::move(keep);
    };
    dropLost(&ServicePortInfo::externalIPs);
    dropLost(&ServicePortInfo::loadBalancerIPs);
    if (info->nodePort) {
      Frontend np{IpAddr{}, info->nodePort, proto, true};
      if (!owns(key, np)) {
        lostNow.insert(np);
        edit().nodePort = 0;
      }
    }
    kept.push_back(copy ? ServicePortInfoPtr(std::move(copy)) : std::move(info));
  }
  infos = std::move(kept);

  auto& before = reported_[key];
  for (const auto& f : lostNow) {
    if (before.contains(f)) continue;
    const ObjectKey* owner = ownerOf(f);
    std::string note = fmt::format(
        "{} is also claimed by the older Service {}, which keeps it; "
        "it is not programmed for this Service",
        f.str(), owner ? owner->str() : "?");
    spdlog::warn("Service {}: {}", key.str(), note);
    if (events_) events_->serviceWarning(key, "FrontendConflict", std::move(note));
  }
  for (const auto& f : before) {
    if (!lostNow.contains(f)) spdlog::info("Service {}: {} is its own again", key.str(), f.str());
  }
  if (lostNow.empty()) {
    reported_.erase(key);
  } else {
    before = std::move(lostNow);
  }
}

size_t FrontendConflicts::lost() const {
  size_t n = 0;
  for (const auto& [key, set] : reported_) n += set.size();
  return n;
}

}  // namespace sliceproxy::proxier
