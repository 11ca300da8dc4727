// How a change of membership becomes slot writes (backends/ebpf/slot_set.*): each case moves a
// reader from the old set to the new one in one step, and one endpoint coming or going costs
// O(1) writes whatever the size of the set.

#include "backends/ebpf/slot_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "builders.h"

namespace sliceproxy::testing {
namespace {

using backends::ebpf::SlotPlan;
using backends::ebpf::SlotRef;
using backends::ebpf::SlotSet;

std::vector<EndpointKey> eps(int from, int to) {
  std::vector<EndpointKey> out;
  for (int i = from; i < to; ++i) out.push_back(podEndpoint(i));
  return out;
}

std::set<EndpointKey> members(const SlotSet& s) {
  std::set<EndpointKey> out;
  for (uint32_t i = 0; i < s.count(); ++i) out.insert(s.at(i));
  return out;
}

TEST(EbpfSlotSet, RepeatedAndPresentAdditionsAreWrittenOnce) {
  SlotSet s(7);
  s.replace(eps(0, 2));
  SlotPlan p = s.change(
      {}, {podEndpoint(5), podEndpoint(1), podEndpoint(5), podEndpoint(6), podEndpoint(0)});
  ASSERT_EQ(p.writes.size(), 2u);
  EXPECT_EQ(p.writes[0].slot, (SlotRef{0, 2}));
  EXPECT_EQ(p.writes[0].endpoint, podEndpoint(5));
  EXPECT_EQ(p.writes[1].slot, (SlotRef{0, 3}));
  EXPECT_EQ(p.writes[1].endpoint, podEndpoint(6));
  EXPECT_EQ(members(s), (std::set<EndpointKey>{podEndpoint(0), podEndpoint(1), podEndpoint(5),
                                               podEndpoint(6)}));
  EXPECT_TRUE(s.change({}, {podEndpoint(6)}).writes.empty());
  EXPECT_FALSE(s.change({}, {podEndpoint(6)}).changed);
}

TEST(EbpfSlotSet, AdditionsGoPastTheCountInTheLiveGeneration) {
  SlotSet s(7);
  SlotPlan p = s.change({}, eps(0, 3));
  EXPECT_TRUE(p.changed);
  EXPECT_FALSE(p.flipped);
  ASSERT_EQ(p.writes.size(), 3u);
  EXPECT_EQ(p.writes[2].slot, (SlotRef{0, 2}));
  EXPECT_TRUE(p.garbage.empty());
  p = s.change({}, {podEndpoint(3)});
  ASSERT_EQ(p.writes.size(), 1u);
  EXPECT_EQ(p.writes[0].slot, (SlotRef{0, 3}));
  EXPECT_EQ(s.count(), 4u);
}

TEST(EbpfSlotSet, OneRemovalCopiesTheLastSlotIntoItsPlace) {
  SlotSet s(1);
  s.change({}, eps(0, 1000));
  SlotPlan p = s.change({podEndpoint(10)}, {});
  ASSERT_EQ(p.writes.size(), 1u);
  EXPECT_EQ(p.writes[0].slot, (SlotRef{0, 10}));
  EXPECT_EQ(p.writes[0].endpoint, podEndpoint(999));
  ASSERT_EQ(p.garbage.size(), 1u);
  EXPECT_EQ(p.garbage[0], (SlotRef{0, 999}));
  ASSERT_EQ(p.garbageMembers.size(), 1u);
  EXPECT_EQ(p.garbageMembers[0].endpoint, podEndpoint(10));
  EXPECT_EQ(s.count(), 999u);
  EXPECT_FALSE(s.contains(podEndpoint(10)));
  // The last one itself: nothing to copy, the count alone shrinks.
  p = s.change({s.at(998)}, {});
  EXPECT_TRUE(p.writes.empty());
  EXPECT_TRUE(p.changed);
}

TEST(EbpfSlotSet, OneReplacedByAnotherIsOneWrite) {
  SlotSet s(1);
  s.change({}, eps(0, 5));
  SlotPlan p = s.change({podEndpoint(2)}, {podEndpoint(50)});
  ASSERT_EQ(p.writes.size(), 1u);
  EXPECT_EQ(p.writes[0].slot, (SlotRef{0, 2}));
  EXPECT_EQ(p.writes[0].endpoint, podEndpoint(50));
  EXPECT_EQ(s.count(), 5u);
}

TEST(EbpfSlotSet, SeveralRemovalsFlipToTheOtherGeneration) {
  SlotSet s(1);
  s.change({}, eps(0, 6));
  SlotPlan p = s.change({podEndpoint(1), podEndpoint(4)}, {podEndpoint(9)});
  EXPECT_TRUE(p.flipped);
  EXPECT_EQ(s.gen(), 1u);
  EXPECT_EQ(p.writes.size(), 5u);
  for (const auto& w : p.writes) EXPECT_EQ(w.slot.gen, 1u);
  EXPECT_EQ(p.garbage.size(), 6u);
  for (const auto& g : p.garbage) EXPECT_EQ(g.gen, 0u);
  EXPECT_EQ(members(s), (std::set<EndpointKey>{podEndpoint(0), podEndpoint(2), podEndpoint(3),
                                               podEndpoint(5), podEndpoint(9)}));
  // Endpoints that stay keep their slot (and so their clients' affinity).
  EXPECT_EQ(s.at(0), podEndpoint(0));
  EXPECT_EQ(s.at(2), podEndpoint(2));
}

TEST(EbpfSlotSet, ReplaceReachesTheWantedMembershipAndIgnoresNoOps) {
  SlotSet s(1);
  s.replace(eps(0, 4));
  EXPECT_FALSE(s.replace(eps(0, 4)).changed);
  EXPECT_FALSE(s.change({podEndpoint(77)}, {podEndpoint(0)}).changed)
      << "absent removed, present added";
  const auto want = eps(2, 8);
  s.replace(want);
  EXPECT_EQ(members(s), (std::set<EndpointKey>(want.begin(), want.end())));
}

// Random changes, checked against a plain set: the mirror and every plan stay consistent.
TEST(EbpfSlotSet, RandomChangesKeepTheMirrorExact) {
  std::mt19937 rng(15);
  SlotSet s(1);
  std::set<EndpointKey> want;
  std::map<std::pair<uint32_t, uint32_t>, EndpointKey> kernel;  // (gen, slot) -> endpoint
  for (int round = 0; round < 300; ++round) {
    std::vector<EndpointKey> removed, added;
    const int nr = rng() % 3, na = rng() % 3;
    for (int i = 0; i < nr && !want.empty(); ++i) {
      auto it = want.begin();
      std::advance(it, rng() % want.size());
      removed.push_back(*it);
    }
    for (int i = 0; i < na; ++i) added.push_back(podEndpoint(rng() % 60));
    SlotPlan p = s.change(removed, added);
    for (const auto& k : removed) want.erase(k);
    for (const auto& k : added) {
      if (std::find(removed.begin(), removed.end(), k) == removed.end()) want.insert(k);
    }
    for (const auto& w : p.writes) kernel[{w.slot.gen, w.slot.index}] = w.endpoint;
    ASSERT_EQ(members(s), want) << "round " << round;
    // What a reader sees after the frontend update: slots 0..count-1 of the live generation.
    std::set<EndpointKey> seen;
    for (uint32_t i = 0; i < s.count(); ++i) seen.insert(kernel.at({s.gen(), i}));
    ASSERT_EQ(seen, want) << "round " << round;
    for (const auto& g : p.garbage) {
      ASSERT_FALSE(g.gen == s.gen() && g.index < s.count()) << "live slot buried";
      kernel.erase({g.gen, g.index});
    }
  }
}

}  // namespace
}  // namespace sliceproxy::testing
