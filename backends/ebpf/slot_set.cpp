#include "backends/ebpf/slot_set.h"

#include <boost/unordered/unordered_flat_set.hpp>

namespace sliceproxy::backends::ebpf {

using proxier::EndpointKey;

SlotSet::SlotSet(uint32_t id, uint32_t gen, std::vector<EndpointKey> slots)
    : id_(id), gen_(gen), slots_(std::move(slots)) {
  rebuildIndex();
}

std::vector<SlotRef> SlotSet::live() const {
  std::vector<SlotRef> out;
  out.reserve(slots_.size());
  for (uint32_t i = 0; i < count(); ++i) out.push_back({gen_, i});
  return out;
}

std::vector<MemberRef> SlotSet::liveMembers() const {
  std::vector<MemberRef> out;
  out.reserve(slots_.size());
  for (const auto& k : slots_) out.push_back({gen_, k});
  return out;
}

void SlotSet::rebuildIndex() {
  index_.clear();
  for (uint32_t i = 0; i < count(); ++i) index_.emplace(slots_[i], i);
}

SlotPlan SlotSet::flip(std::vector<EndpointKey> next) {
  SlotPlan plan;
  plan.changed = plan.flipped = true;
  plan.garbage = live();
  plan.garbageMembers = liveMembers();
  gen_ ^= 1;
  slots_ = std::move(next);
  rebuildIndex();
  for (uint32_t i = 0; i < count(); ++i) plan.writes.push_back({{gen_, i}, slots_[i]});
  return plan;
}

SlotPlan SlotSet::change(const std::vector<EndpointKey>& removedIn,
                         const std::vector<EndpointKey>& addedIn) {
  if (removedIn.empty()) {
    // Additions only (a cold load of 100,000 among them): the index dedups them as it grows.
    SlotPlan plan;
    index_.reserve(index_.size() + addedIn.size());
    slots_.reserve(slots_.size() + addedIn.size());
    plan.writes.reserve(addedIn.size());
    for (const auto& k : addedIn) {
      if (!index_.emplace(k, count()).second) continue;
      plan.writes.push_back({{gen_, count()}, k});
      slots_.push_back(k);
    }
    plan.changed = !plan.writes.empty();
    return plan;
  }
  boost::unordered_flat_set<EndpointKey, proxier::EndpointKeyHash> seen;
  std::vector<EndpointKey> removed, added;
  for (const auto& k : removedIn) {
    if (index_.contains(k) && seen.insert(k).second) removed.push_back(k);
  }
  for (const auto& k : addedIn) {
    if (!index_.contains(k) && seen.insert(k).second) added.push_back(k);
  }
  SlotPlan plan;
  if (removed.empty() && added.empty()) return plan;
  plan.changed = true;
  if (removed.empty()) {
    for (const auto& k : added) {
      const uint32_t i = count();
      slots_.push_back(k);
      index_.emplace(k, i);
      plan.writes.push_back({{gen_, i}, k});
    }
    return plan;
  }
  if (removed.size() == 1 && added.size() <= 1) {
    const uint32_t i = index_.at(removed[0]);
    index_.erase(removed[0]);
    plan.garbageMembers.push_back({gen_, removed[0]});
    if (added.size() == 1) {
      slots_[i] = added[0];
      index_.emplace(added[0], i);
      plan.writes.push_back({{gen_, i}, added[0]});
      return plan;
    }
    const uint32_t last = count() - 1;
    if (i != last) {
      slots_[i] = slots_[last];
      index_[slots_[i]] = i;
      plan.writes.push_back({{gen_, i}, slots_[i]});
    }
    slots_.pop_back();
    plan.garbage.push_back({gen_, last});
    return plan;
  }
  // Several at once: the same moves (last into the hole, additions at the end) keep most
  // endpoints in their slots, so ClientIP affinity keeps holding for them.
  std::vector<EndpointKey> next = slots_;
  auto index = index_;
  for (const auto& k : removed) {
    const uint32_t i = index.at(k);
    index.erase(k);
    const uint32_t last = static_cast<uint32_t>(next.size()) - 1;
    if (i != last) {
      next[i] = next[last];
      index[next[i]] = i;
    }
    next.pop_back();
  }
  for (const auto& k : added) next.push_back(k);
  return flip(std::move(next));
}

SlotPlan SlotSet::replace(const std::vector<EndpointKey>& members) {
  if (slots_.empty()) return change({}, members);
  boost::unordered_flat_set<EndpointKey, proxier::EndpointKeyHash> want(members.begin(),
                                                                        members.end());
  std::vector<EndpointKey> removed, added;
  for (const auto& k : slots_) {
    if (!want.contains(k)) removed.push_back(k);
  }
  for (const auto& k : members) {
    if (!index_.contains(k)) added.push_back(k);
  }
  return change(removed, added);
}

}  // namespace sliceproxy::backends::ebpf
