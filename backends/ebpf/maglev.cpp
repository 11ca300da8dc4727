#include "backends/ebpf/maglev.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace sliceproxy::backends::ebpf {
namespace {

// Fixed seeds: changing them changes every node's tables, so they are part of the wire contract
// between nodes running different sliceproxy versions.
constexpr uint64_t kOffsetSeed = 0x2d358dccaa6c78a5ULL;
constexpr uint64_t kSkipSeed = 0x8bb84b93962eacc9ULL;

uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// Little-endian load regardless of the host, so big-endian nodes agree with the rest.
uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

bool isPrime(uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

std::string maglevTableSizeError(uint64_t size) {
  if (size < kMaglevMinTableSize || size > kMaglevMaxTableSize) {
    return fmt::format("--maglev-table-size {}: must be a prime between {} and {}", size,
                       kMaglevMinTableSize, kMaglevMaxTableSize);
  }
  if (!isPrime(size)) {
    return fmt::format("--maglev-table-size {}: not a prime (Maglev permutations need one)", size);
  }
  return "";
}

uint32_t maglevTableSizeFor(uint32_t configured, size_t backends) {
  const uint64_t want = static_cast<uint64_t>(backends) * 100;
  uint64_t m = configured;
  if (m >= want) return configured;
  while (m < want && m < kMaglevMaxTableSize) m *= 2;
  if (m >= kMaglevMaxTableSize) return kMaglevMaxTableSize;
  while (!isPrime(m)) ++m;
  return static_cast<uint32_t>(m);
}

uint64_t maglevHash(const proxier::EndpointKey& backend, uint64_t seed) {
  const uint8_t* a = backend.ip.bytes.data();
  uint64_t h = seed ^ (static_cast<uint64_t>(backend.ip.family) << 16 | backend.port);
  h = fmix64(h ^ load64(a) * 0x87c37b91114253d5ULL);
  h = fmix64(h ^ load64(a + 8) * 0x4cf5ad432745937fULL);
  return h;
}

namespace {

// The inverse of a modulo the prime m (0 < a < m), by the extended Euclidean algorithm.
uint32_t inverseMod(uint32_t a, uint32_t m) {
  int64_t t = 0, newT = 1, r = m, newR = a;
  while (newR != 0) {
    const int64_t q = r / newR;
    t = std::exchange(newT, t - q * newT);
    r = std::exchange(newR, r - q * newR);
  }
  return static_cast<uint32_t>(t < 0 ? t + m : t);
}

}  // namespace

MaglevTable::MaglevTable(uint32_t size)
    : size_(size), reciprocal_(size ? UINT64_MAX / size : 0), slots_(size) {}

uint32_t MaglevTable::mod(uint64_t x) const {
  // Barrett reduction: the quotient estimate is at most one short for x < 2^48.
  const uint64_t q = static_cast<uint64_t>((static_cast<unsigned __int128>(x) * reciprocal_) >> 64);
  uint64_t r = x - q * size_;
  while (r >= size_) r -= size_;
  return static_cast<uint32_t>(r);
}

uint32_t MaglevTable::rank(uint32_t m, uint32_t entry) const {
  const Member& b = members_[m];
  const uint64_t steps = entry >= b.offset ? entry - b.offset : entry + size_ - b.offset;
  return mod(steps * b.inverse);
}

bool MaglevTable::before(uint32_t a, uint32_t ra, uint32_t b, uint32_t entry) const {
  const uint32_t rb = rank(b, entry);
  return ra < rb || (ra == rb && members_[a].key < members_[b].key);
}

uint32_t MaglevTable::best(uint32_t entry, uint32_t except) const {
  uint32_t found = kNone, foundRank = 0;
  for (uint32_t m : live_) {
    if (m == except) continue;
    const uint32_t r = rank(m, entry);
    if (found == kNone || r < foundRank ||
        (r == foundRank && members_[m].key < members_[found].key)) {
      found = m;
      foundRank = r;
    }
  }
  return found;
}

uint32_t MaglevTable::admit(const proxier::EndpointKey& key) {
  uint32_t m;
  if (free_.empty()) {
    m = static_cast<uint32_t>(members_.size());
    members_.emplace_back();
  } else {
    m = free_.back();
    free_.pop_back();
  }
  Member& b = members_[m];
  b.key = key;
  b.offset = static_cast<uint32_t>(maglevHash(key, kOffsetSeed) % size_);
  b.skip = static_cast<uint32_t>(maglevHash(key, kSkipSeed) % (size_ - 1) + 1);
  b.inverse = inverseMod(b.skip, size_);
  b.at = static_cast<uint32_t>(live_.size());
  live_.push_back(m);
  index_.emplace(key, m);
  return m;
}

void MaglevTable::reset() {
  members_.clear();
  live_.clear();
  free_.clear();
  index_.clear();
  unsettled_.clear();
  std::fill(slots_.begin(), slots_.end(), Slot{});
  depth_ = 0;
}

void MaglevTable::offer(uint32_t m, uint32_t rankM, uint32_t entry,
                        std::vector<uint32_t>* changed) {
  Slot& s = slots_[entry];
  if (s.owner == kNone || before(m, rankM, s.owner, entry)) {
    // The owner it displaces was the best of the rest: the runner-up is known again.
    s.runner = s.owner;
    s.owner = m;
    if (changed) changed->push_back(entry);
  } else if (s.runner == kNone || (s.runner != kUnknown && before(m, rankM, s.runner, entry))) {
    s.runner = m;
  }
}

void MaglevTable::build() {
  // Every backend in turn offers the entry at its next permutation position, position by
  // position, until each entry has its best two: later positions cannot change them. Offers
  // come in the order that decides an entry -- position, then within a position the lower
  // address, as the backends take turns in address order -- so an entry's first offer is its
  // owner and its second the runner-up, and no rank is computed here: the build touches one
  // slot per offer and nothing else (offer() reads both contenders' permutations too, a second
  // cache miss per offer in a table far bigger than the caches).
  std::vector<uint32_t> order(live_);
  std::sort(order.begin(), order.end(),
            [this](uint32_t a, uint32_t b) { return members_[a].key < members_[b].key; });
  std::vector<uint32_t> pos, skip;
  pos.reserve(order.size());
  skip.reserve(order.size());
  for (uint32_t m : order) {
    pos.push_back(members_[m].offset);
    skip.push_back(members_[m].skip);
  }
  const size_t n = order.size();
  const uint32_t needed = n >= 2 ? 2 * size_ : size_;  // owners, and runners-up with two or more
  // Slots a few offers ahead are fetched while this one is decided: the offers are independent.
  constexpr size_t kAhead = kPrefetch;
  uint32_t filled = 0;
  for (uint32_t r = 0;; ++r) {
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) __builtin_prefetch(&slots_[pos[i + kAhead]], 1);
      Slot& s = slots_[pos[i]];
      if (s.owner == kNone) {
        s.owner = order[i];
        ++filled;
      } else if (s.runner == kNone) {
        s.runner = order[i];
        ++filled;
      }
      pos[i] += skip[i];
      if (pos[i] >= size_) pos[i] -= size_;
    }
    if (filled == needed) {
      depth_ = r;
      return;
    }
  }
}

void MaglevTable::fillRoundRobin() {
  // Maglev's own fill: each backend in turn (in address order) takes the next free entry of its
  // permutation, so every backend ends with floor(size/n) or ceil(size/n) entries.
  std::sort(live_.begin(), live_.end(),
            [this](uint32_t a, uint32_t b) { return members_[a].key < members_[b].key; });
  for (size_t i = 0; i < live_.size(); ++i) members_[live_[i]].at = static_cast<uint32_t>(i);
  std::vector<uint32_t> pos;
  for (uint32_t m : live_) pos.push_back(members_[m].offset);
  uint32_t filled = 0;
  for (;;) {
    for (size_t i = 0; i < live_.size(); ++i) {
      const uint32_t skip = members_[live_[i]].skip;
      uint32_t c = pos[i];
      while (slots_[c].owner != kNone) {
        c += skip;
        if (c >= size_) c -= size_;
      }
      slots_[c].owner = live_[i];
      c += skip;
      if (c >= size_) c -= size_;
      pos[i] = c;
      if (++filled == size_) return;
    }
  }
}

template <typename F>
void MaglevTable::walk(uint32_t m, F&& f) {
  const Member& b = members_[m];
  // The positions are known in advance: slots kPrefetch positions ahead are fetched while this
  // one is decided (each is a cache miss in a table far bigger than the caches).
  uint32_t e = b.offset, ahead = b.offset;
  for (uint32_t r = 0; r < kPrefetch && r <= depth_; ++r) {
    __builtin_prefetch(&slots_[ahead], 1);
    ahead += b.skip;
    if (ahead >= size_) ahead -= size_;
  }
  for (uint32_t r = 0; r <= depth_; ++r) {
    __builtin_prefetch(&slots_[ahead], 1);
    ahead += b.skip;
    if (ahead >= size_) ahead -= size_;
    f(r, e);
    e += b.skip;
    if (e >= size_) e -= size_;
  }
}

void MaglevTable::add(uint32_t m, std::vector<uint32_t>* changed) {
  walk(m, [&](uint32_t r, uint32_t e) { offer(m, r, e, changed); });
}

void MaglevTable::remove(uint32_t m, std::vector<uint32_t>* changed) {
  // Out of the passes first; everything it owns or backs up is within its first depth_ + 1
  // positions.
  index_.erase(members_[m].key);
  const uint32_t at = members_[m].at;
  live_[at] = live_.back();
  members_[live_[at]].at = at;
  live_.pop_back();
  const size_t rest = live_.size();
  const uint32_t noRunner = rest >= 2 ? kUnknown : kNone;
  walk(m, [&](uint32_t, uint32_t e) {
    Slot& s = slots_[e];
    if (s.owner == m) {
      uint32_t next = s.runner;
      if (next == kUnknown || (next == kNone && rest > 0)) next = best(e, kNone);
      s.owner = next;
      s.runner = noRunner;
      if (next != kNone) depth_ = std::max(depth_, rank(next, e));
      if (changed) changed->push_back(e);
      if (noRunner == kUnknown) unsettled_.push_back(e);
    } else if (s.runner == m) {
      s.runner = noRunner;
      if (noRunner == kUnknown) unsettled_.push_back(e);
    }
  });
  free_.push_back(m);
}

void MaglevTable::settle() {
  for (uint32_t e : unsettled_) {
    Slot& s = slots_[e];
    if (s.runner != kUnknown) continue;
    s.runner = best(e, s.owner);
    if (s.runner != kNone) depth_ = std::max(depth_, rank(s.runner, e));
  }
  unsettled_.clear();
}

bool MaglevTable::update(const std::vector<proxier::EndpointKey>& removed,
                         const std::vector<proxier::EndpointKey>& added,
                         std::vector<uint32_t>* changed) {
  if (removed.empty() && added.empty()) return false;
  std::vector<uint32_t> gone;
  gone.reserve(removed.size());
  for (const auto& key : removed) gone.push_back(index_.at(key));
  // Changing most of the set costs more one backend at a time than all at once; the result
  // is the same either way. A small table is filled afresh by Maglev's round robin.
  if (!incremental() || live_.size() < gone.size() + gone.size() + added.size() + 1) {
    std::sort(gone.begin(), gone.end());
    std::vector<proxier::EndpointKey> next;
    for (uint32_t m : live_) {
      if (!std::binary_search(gone.begin(), gone.end(), m)) next.push_back(members_[m].key);
    }
    next.insert(next.end(), added.begin(), added.end());
    reset();
    for (const auto& key : next) admit(key);
    if (live_.empty()) {
      // no owners
    } else if (incremental()) {
      build();
    } else {
      fillRoundRobin();
    }
    if (changed) {
      for (uint32_t e = 0; e < size_; ++e) changed->push_back(e);
    }
    return true;
  }
  for (uint32_t m : gone) remove(m, changed);
  for (const auto& key : added) add(admit(key), changed);
  return false;
}

void MaglevTable::assign(const std::vector<proxier::EndpointKey>& backends,
                         std::vector<uint32_t>* changed) {
  std::vector<proxier::EndpointKey> removed, added;
  for (uint32_t m : live_) {
    if (!std::binary_search(backends.begin(), backends.end(), members_[m].key)) {
      removed.push_back(members_[m].key);
    }
  }
  for (const auto& key : backends) {
    if (index_.count(key) == 0) added.push_back(key);
  }
  update(removed, added, changed);
}

std::vector<uint32_t> maglevTable(std::vector<proxier::EndpointKey>& backends, uint32_t size) {
  std::sort(backends.begin(), backends.end());
  backends.erase(std::unique(backends.begin(), backends.end()), backends.end());
  if (backends.empty() || size == 0) return {};
  MaglevTable t(size);
  t.assign(backends, nullptr);
  // A fresh table admits the backends in order: member i is backends[i].
  std::vector<uint32_t> table(size);
  for (uint32_t e = 0; e < size; ++e) table[e] = t.owner(e);
  return table;
}

}  // namespace sliceproxy::backends::ebpf
