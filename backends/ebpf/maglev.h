#pragma once
// Consistent hashing for traffic from outside the node: a lookup table of a prime size M, a
// flow's entry is its 5-tuple hash modulo M. Each backend ranks the M entries in the order of
// its Maglev permutation (Eisenbud et al., NSDI 2016: offset + k x skip modulo M). Small tables
// are filled by the paper's round robin, every backend owning M/N entries give or take one; a
// refill costs about half a millisecond, so every change refills. From kMaglevIncrementalMinSize
// on, where a refill costs tens of milliseconds to seconds, an entry belongs to the backend that
// ranks it first (ties: the lower address), a rule a change can apply entry by entry: a backend
// that comes walks its first few thousand positions, one that goes hands its entries to their
// runner-ups. Removing one of N backends then moves exactly its entries (about 1/N); the price
// is a share binomial around M/N (about +-10% at M = 100 N) and a slower first build.
// Either way the table is a pure function of the backend SET and the size: the order in which
// endpoints arrived, the node, the run and the history of changes play no part, so every node
// picks the same backend for the same flow and an ECMP change in front of the nodes keeps
// connections on their backend.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxier/core/service_port_view.h"

namespace sliceproxy::backends::ebpf {

// Cilium's default too: a prime well above 100 x backends up to 163 backends.
inline constexpr uint32_t kMaglevDefaultTableSize = 16381;
// The largest prime below 2^24: bigger services get this size (and a coarser balance).
inline constexpr uint32_t kMaglevMaxTableSize = 16777213;
// Smallest accepted --maglev-table-size.
inline constexpr uint32_t kMaglevMinTableSize = 251;
// From this size on a table is kept up to date entry by entry (lowest rank wins); below it,
// where a refill costs about a millisecond, Maglev's round robin refills it on every change.
inline constexpr uint32_t kMaglevIncrementalMinSize = 65536;

bool isPrime(uint64_t n);

// "" when `size` is an acceptable --maglev-table-size, otherwise why not.
std::string maglevTableSizeError(uint64_t size);

// The table size for `backends` backends: `configured` while it is at least 100 x backends,
// otherwise the smallest prime at or above configured x 2^k that is (up to the maximum). A step
// up remaps everything once; the steps are the same on every node.
uint32_t maglevTableSizeFor(uint32_t configured, size_t backends);

// The 64-bit hash the permutations come from: seeded murmur-style mixing of the
// endpoint's family, address and port, identical on every platform.
uint64_t maglevHash(const proxier::EndpointKey& backend, uint64_t seed);

// One service's table, kept up to date as its backend set changes.
class MaglevTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  explicit MaglevTable(uint32_t size);
  uint32_t size() const { return size_; }

  // Takes `removed` (members) out of the set and `added` (not members) in, and appends to
  // *changed every entry whose owner changed (possibly more than once; every entry when the
  // change rebuilds the table). The owners are exact on return. Cost: the backends that came or
  // went times depth(), not the size of the set or of the table. True when it rebuilt the
  // table instead (changing most of the set): every member index changed.
  bool update(const std::vector<proxier::EndpointKey>& removed,
              const std::vector<proxier::EndpointKey>& added, std::vector<uint32_t>* changed);
  // Makes `backends` (sorted, without duplicates) the set: update() with the difference, found
  // by a pass over both sets.
  void assign(const std::vector<proxier::EndpointKey>& backends, std::vector<uint32_t>* changed);

  // Finds again the runner-up of the entries whose runner-up left (one pass over the backends
  // each). assign() leaves that for here so that a change reaches the data plane first; an
  // entry that loses its owner before then gets its new owner by the same pass, at once.
  void settle();

  // Entry `entry`'s owner as an index for member(); kNone while there are no backends.
  uint32_t owner(uint32_t entry) const { return slots_[entry].owner; }
  const proxier::EndpointKey& member(uint32_t index) const { return members_[index].key; }
  uint32_t indexOf(const proxier::EndpointKey& key) const { return index_.at(key); }
  // The indices member() takes are below this; live ones are those of the current set.
  size_t memberSlots() const { return members_.size(); }
  size_t backends() const { return live_.size(); }
  // How many permutation positions a change walks per backend that came or went.
  uint32_t depth() const { return depth_; }

 private:
  static constexpr uint32_t kUnknown = UINT32_MAX - 1;  // runner-up to be found by settle()
  static constexpr uint32_t kPrefetch = 16;  // slots fetched ahead on walks through the table
  struct Member {
    proxier::EndpointKey key;
    uint32_t offset = 0, skip = 0, inverse = 0;  // entry = offset + rank x skip (mod size)
    uint32_t at = 0;                             // its place in live_
  };
  // Owner and runner-up side by side: a change reads both of an entry in one cache line.
  struct Slot {
    uint32_t owner = kNone, runner = kNone;
  };

  uint32_t mod(uint64_t x) const;  // x % size_ for x < 2^48, without a division
  uint32_t rank(uint32_t m, uint32_t entry) const;
  // a, which ranks entry at ra, ranks it ahead of b.
  bool before(uint32_t a, uint32_t ra, uint32_t b, uint32_t entry) const;
  uint32_t best(uint32_t entry, uint32_t except) const;  // a pass over every member
  uint32_t admit(const proxier::EndpointKey& key);
  void reset();
  void offer(uint32_t m, uint32_t rankM, uint32_t entry, std::vector<uint32_t>* changed);
  void build();
  void fillRoundRobin();
  bool incremental() const { return size_ >= kMaglevIncrementalMinSize; }
  // Calls f(rank, entry) for m's first depth_ + 1 permutation positions (depth_ read each step:
  // f may raise it), the slots ahead prefetched.
  template <typename F>
  void walk(uint32_t m, F&& f);
  void add(uint32_t m, std::vector<uint32_t>* changed);
  void remove(uint32_t m, std::vector<uint32_t>* changed);

  uint32_t size_;
  uint64_t reciprocal_;  // floor((2^64 - 1) / size_)
  std::vector<Member> members_;
  std::vector<uint32_t> live_;  // the members in index_, for passes over all of them
  std::vector<uint32_t> free_;
  std::unordered_map<proxier::EndpointKey, uint32_t, proxier::EndpointKeyHash> index_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> unsettled_;
  // Every owner and runner-up ranks its entry at or before this position, so a backend that
  // comes can only enter an entry's top two within its first depth_ + 1 positions.
  uint32_t depth_ = 0;
};

// The table of `backends` (sorted and deduplicated in place) as indices into them: what every
// node computes for that set, whatever it went through before. An empty list gives an empty
// table.
std::vector<uint32_t> maglevTable(std::vector<proxier::EndpointKey>& backends, uint32_t size);

}  // namespace sliceproxy::backends::ebpf
