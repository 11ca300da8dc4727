// Maglev tables (backends/ebpf/maglev.*): two nodes agree, removals move few flows, and every
// backend gets its share. The bounds asserted are the measured values plus a little room; the
// measurements are printed so a regression shows its size.

#include "backends/ebpf/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "builders.h"

namespace sliceproxy::testing {
namespace {

using backends::ebpf::isPrime;
using backends::ebpf::kMaglevDefaultTableSize;
using backends::ebpf::kMaglevMaxTableSize;
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
  for (int n : {1, 3, 10, 163, 1000}) {
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
