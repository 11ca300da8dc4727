// Maglev tables (backends/ebpf/maglev.*): two nodes agree, removals move few flows, and every
// backend gets its share; a large table kept up to date change by change is the table a node
// starting now computes, and a removal moves only the removed backend's entries. The bounds
// asserted are the measured values plus a little room; the measurements are printed so a
// regression shows its size.

#include "backends/ebpf/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "builders.h"

namespace sliceproxy::testing {
namespace {

using backends::ebpf::isPrime;
using backends::ebpf::kMaglevDefaultTableSize;
using backends::ebpf::kMaglevIncrementalMinSize;
using backends::ebpf::kMaglevMaxTableSize;
using backends::ebpf::MaglevTable;
using backends::ebpf::maglevTable;
using backends::ebpf::maglevTableSizeError;
using backends::ebpf::maglevTableSizeFor;

std::vector<EndpointKey> eps(int n) {
  std::vector<EndpointKey> out;
  for (int i = 0; i < n; ++i) out.push_back(podEndpoint(i));
  return out;
}

// The table as backend keys, so tables built from different lists compare by what they mean.
std::vector<EndpointKey> resolved(std::vector<EndpointKey> backends, uint32_t size) {
  auto t = maglevTable(backends, size);
  std::vector<EndpointKey> out;
  out.reserve(t.size());
  for (uint32_t i : t) out.push_back(backends.at(i));
  return out;
}

TEST(Maglev, TwoNodesComputingIndependentlyAgreeOnEveryEntry) {
  for (int n : {1, 2, 7, 100, 500}) {
    auto a = eps(n);
    auto b = eps(n);
    std::mt19937 rng(n);
    std::shuffle(b.begin(), b.end(), rng);
    b.push_back(b.front());  // a duplicate copy (two slices) changes nothing
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    auto ta = resolved(a, m), tb = resolved(b, m);
    ASSERT_EQ(ta.size(), m);
    EXPECT_TRUE(ta == tb) << n << " backends: the tables differ";
  }
}

// Pinned entries of one table: the permutation hash is a contract between nodes (and between
// sliceproxy versions during a rolling upgrade); a change to it must be deliberate.
TEST(Maglev, TableIsPinnedAcrossVersions) {
  auto b = eps(5);
  auto t = maglevTable(b, 251);
  std::string head;
  for (int i = 0; i < 24; ++i) head += static_cast<char>('0' + t[i]);
  EXPECT_EQ(head, "423124003321441211003331");
}

TEST(Maglev, EveryBackendGetsItsShareWithinOneEntry) {
  for (int n : {1, 3, 10, 163, 300}) {
    auto b = eps(n);
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    auto t = maglevTable(b, m);
    std::vector<uint32_t> count(n);
    for (uint32_t i : t) ++count.at(i);
    auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    EXPECT_LE(*hi - *lo, 1u) << n << " backends in " << m << " entries";
  }
}

// Removing one of N backends: the entries it owned must move (1/N); any other entry that moves
// breaks a connection needlessly. Measured over every choice of the removed backend.
TEST(Maglev, RemovingOneOfNRemapsAboutOneNth) {
  for (int n : {2, 5, 10, 50, 100, 163}) {
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    ASSERT_EQ(m, maglevTableSizeFor(kMaglevDefaultTableSize, n - 1)) << "same size both sides";
    auto all = resolved(eps(n), m);
    double worst = 0, sum = 0;
    const int trials = std::min(n, 20);
    for (int r = 0; r < trials; ++r) {
      auto fewer = eps(n);
      fewer.erase(fewer.begin() + r * n / trials);
      auto t = resolved(fewer, m);
      uint32_t moved = 0;
      for (uint32_t i = 0; i < m; ++i) moved += t[i] != all[i];
      const double frac = static_cast<double>(moved) / m;
      worst = std::max(worst, frac);
      sum += frac;
    }
    std::printf(
        "[ measured ] %d backends, M=%u: removing one moves %.4f of entries on average, "
        "%.4f at worst (1/N = %.4f)\n",
        n, m, sum / trials, worst, 1.0 / n);
    // Measured at most 1/N + 0.0172 (163 backends, M = 16381).
    EXPECT_LE(worst, 1.0 / n + 0.02) << n << " backends";
  }
}

TEST(Maglev, AddingOneToNRemapsAboutOneNth) {
  const int n = 20;
  const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n + 1);
  auto before = resolved(eps(n), m), after = resolved(eps(n + 1), m);
  uint32_t moved = 0;
  for (uint32_t i = 0; i < m; ++i) moved += before[i] != after[i];
  EXPECT_LE(static_cast<double>(moved) / m, 1.0 / (n + 1) + 0.02);
}

// A large table gives each entry to the backend ranking it first: a backend's share is
// binomial around M/N.
TEST(Maglev, LargeTablesGiveEveryBackendAboutItsShare) {
  for (int n : {700, 1000}) {
    auto b = eps(n);
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    auto t = maglevTable(b, m);
    std::vector<uint32_t> count(n);
    for (uint32_t i : t) ++count.at(i);
    const double mean = static_cast<double>(m) / n;
    const double sigma = std::sqrt(mean * (1.0 - 1.0 / n));
    auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    std::printf("[ measured ] %d backends, M=%u: shares %u..%u entries (mean %.1f, sd %.1f)\n", n,
                m, *lo, *hi, mean, sigma);
    EXPECT_GE(*lo, mean - 6 * sigma) << n << " backends";
    EXPECT_LE(*hi, mean + 6 * sigma) << n << " backends";
    EXPECT_GT(*lo, 0u) << n << " backends: one has no entry";
  }
}

// In a large table removing one of N backends moves exactly the entries it owned (about 1/N):
// no other flow loses its backend. Measured over several choices of the removed backend.
TEST(Maglev, LargeTablesMoveOnlyTheRemovedBackendsEntries) {
  for (int n : {700, 1000}) {
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    ASSERT_EQ(m, maglevTableSizeFor(kMaglevDefaultTableSize, n - 1)) << "same size both sides";
    auto all = resolved(eps(n), m);
    double worst = 0;
    const int trials = std::min(n, 20);
    for (int r = 0; r < trials; ++r) {
      auto fewer = eps(n);
      const EndpointKey gone = fewer.at(r * n / trials);
      fewer.erase(fewer.begin() + r * n / trials);
      auto t = resolved(fewer, m);
      uint32_t moved = 0, owned = 0;
      for (uint32_t i = 0; i < m; ++i) {
        moved += t[i] != all[i];
        owned += all[i] == gone;
      }
      EXPECT_EQ(moved, owned) << n << " backends: entries of other backends moved";
      worst = std::max(worst, static_cast<double>(moved) / m);
    }
    std::printf(
        "[ measured ] %d backends, M=%u: removing one moves %.4f of entries at worst "
        "(1/N = %.4f)\n",
        n, m, worst, 1.0 / n);
    const double sigma = std::sqrt(static_cast<double>(m) / n) / m;
    EXPECT_LE(worst, 1.0 / n + 6 * sigma) << n << " backends";
  }
}

TEST(Maglev, LargeTablesMoveOnlyWhatAnAddedBackendTakes) {
  const int n = 1000;
  const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n + 1);
  auto before = resolved(eps(n), m), after = resolved(eps(n + 1), m);
  const EndpointKey added = eps(n + 1).back();
  uint32_t moved = 0, taken = 0;
  for (uint32_t i = 0; i < m; ++i) {
    moved += before[i] != after[i];
    taken += after[i] == added;
  }
  EXPECT_EQ(moved, taken);
  EXPECT_LE(static_cast<double>(moved) / m, 1.0 / (n + 1) + 0.02);
}

// What the eBPF backend does: one table kept up to date through a long run of changes (several
// backends at once, runner-ups sometimes settled, sometimes not) must equal, after every
// change, the table a node computing it from scratch gets; and the entries it reports moved
// must be every entry whose owner changed. Both regimes: refilled (small) and incremental.
TEST(Maglev, TableKeptUpToDateEqualsAFreshOne) {
  for (uint32_t m : {kMaglevDefaultTableSize, 65537u}) {
    MaglevTable t(m);
    std::mt19937 rng(m);
    const auto pool = eps(400);
    std::set<EndpointKey> current;
    while (current.size() < 40) current.insert(pool[rng() % pool.size()]);
    std::vector<EndpointKey> previous;
    for (int step = 0; step < 150; ++step) {
      if (step > 0) {
        const int out = static_cast<int>(rng() % 4), in = static_cast<int>(rng() % 4);
        for (int i = 0; i < out && current.size() > 30; ++i) {
          auto it = current.begin();
          std::advance(it, rng() % current.size());
          current.erase(it);
        }
        for (int i = 0; i < in && current.size() < 50; ++i)
          current.insert(pool[rng() % pool.size()]);
      }
      const std::vector<EndpointKey> set(current.begin(), current.end());
      std::vector<uint32_t> moved;
      t.assign(set, &moved);
      if (rng() % 2) t.settle();
      std::vector<EndpointKey> now(m);
      for (uint32_t e = 0; e < m; ++e) now[e] = t.member(t.owner(e));
      ASSERT_EQ(now, resolved(set, m)) << "M=" << m << ", step " << step;
      if (!previous.empty()) {
        const std::set<uint32_t> reported(moved.begin(), moved.end());
        for (uint32_t e = 0; e < m; ++e) {
          if (now[e] != previous[e]) {
            ASSERT_TRUE(reported.count(e)) << "M=" << m << ", step " << step << ": entry " << e;
          }
        }
      }
      previous = std::move(now);
    }
  }
}

TEST(Maglev, TableSizeIsAPrimeWellAboveHundredTimesTheBackends) {
  EXPECT_TRUE(isPrime(kMaglevDefaultTableSize));
  EXPECT_TRUE(isPrime(kMaglevMaxTableSize));
  EXPECT_EQ(maglevTableSizeFor(kMaglevDefaultTableSize, 0), kMaglevDefaultTableSize);
  EXPECT_EQ(maglevTableSizeFor(kMaglevDefaultTableSize, 163), kMaglevDefaultTableSize);
  for (size_t n : {164, 1000, 10000, 100000, 1000000}) {
    const uint32_t m = maglevTableSizeFor(kMaglevDefaultTableSize, n);
    EXPECT_TRUE(isPrime(m)) << m;
    EXPECT_GE(m, std::min<uint64_t>(100 * n, kMaglevMaxTableSize)) << n << " backends";
    EXPECT_LE(m, kMaglevMaxTableSize);
  }
  EXPECT_EQ(maglevTableSizeFor(65521, 600), 65521u);
}

TEST(Maglev, FlagValueMustBeAPrimeInRange) {
  EXPECT_EQ(maglevTableSizeError(16381), "");
  EXPECT_EQ(maglevTableSizeError(65521), "");
  EXPECT_NE(maglevTableSizeError(16384).find("not a prime"), std::string::npos);
  EXPECT_NE(maglevTableSizeError(7).find("between"), std::string::npos);
  EXPECT_NE(maglevTableSizeError(1ull << 32).find("between"), std::string::npos);
}

TEST(Maglev, NoBackendsGiveAnEmptyTable) {
  std::vector<EndpointKey> none;
  EXPECT_TRUE(maglevTable(none, 251).empty());
}

}  // namespace
}  // namespace sliceproxy::testing
