/* The flow hash that picks a Maglev entry for a new flow from outside the node. Shared by the
 * tc program (bpf/nodeport_lb.bpf.c) and its userspace tests, so a test can predict the
 * backend. It is a fixed function (murmur3's 32-bit mixing with a fixed seed), never the
 * kernel's skb hash, whose seed is random per boot: every node must pick the same entry for the
 * same flow. Addresses are read as little-endian words of their network-order bytes (every
 * node of a cluster sharing this hash is little-endian: x86-64, arm64). */
#ifndef SLICEPROXY_NODEPORT_HASH_H
#define SLICEPROXY_NODEPORT_HASH_H

#define NP_HASH_SEED 0x5eed1a7bu

static inline __u32 np_rol32(__u32 w, unsigned s) {
  return (w << s) | (w >> (32 - s));
}

static inline __u32 np_hash_word(__u32 h, __u32 k) {
  k *= 0xcc9e2d51u;
  k = np_rol32(k, 15);
  k *= 0x1b873593u;
  h ^= k;
  h = np_rol32(h, 13);
  return h * 5 + 0xe6546b64u;
}

static inline __u32 np_hash_bytes4(const __u8* p) {
  return (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

/* saddr/daddr: 16 bytes each (IPv4 in the first 4, the rest zero); ports in network order as
 * they sit in the packet (read as two bytes each, most significant first). */
static inline __u32 np_flow_hash(const __u8* saddr, const __u8* daddr, const __u8* sport,
                                 const __u8* dport, __u8 proto) {
  __u32 h = NP_HASH_SEED;
  for (int i = 0; i < 16; i += 4) h = np_hash_word(h, np_hash_bytes4(saddr + i));
  for (int i = 0; i < 16; i += 4) h = np_hash_word(h, np_hash_bytes4(daddr + i));
  h = np_hash_word(
      h, (__u32)sport[0] << 24 | (__u32)sport[1] << 16 | (__u32)dport[0] << 8 | (__u32)dport[1]);
  h = np_hash_word(h, proto);
  h ^= 37;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

#endif
