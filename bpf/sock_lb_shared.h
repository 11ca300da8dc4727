/* SPDX-License-Identifier: GPL-2.0 */
/* What the socket programs (sock_lb.bpf.c) and the stale-socket iterators
 * (stale_sockets.bpf.c) share. They are two objects because the iterators need
 * bpf_sock_destroy (kernel 6.5+) and libbpf refuses a whole object whose kfunc the kernel
 * lacks: on Debian 12's 6.1 the socket programs load alone. The iterators' object is given
 * the socket programs' maps (bpf_map__reuse_fd) before it loads. */
#ifndef SLICEPROXY_SOCK_LB_SHARED_H
#define SLICEPROXY_SOCK_LB_SHARED_H

#include "sock_lb_maps.h"

/* An array, not the LRU hash earlier versions used (and named sp_reverse): writing an LRU
 * element (off the shared free list, linked into a bucket) was more than half of what sendmsg
 * cost, an array slot is a plain store, and a socket sending again to the same backend writes
 * nothing. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SP_REV_SLOTS);
  __type(key, __u32);
  __type(value, struct sp_rev_entry);
} sp_rev_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SP_DESTROY_MAX);
  __type(key, struct sp_backend);
  __type(value, __u8);
} sp_destroy SEC(".maps");

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack IPv6 socket dials for an IPv4
 * service) becomes the IPv4 address it carries, so it meets the IPv4 frontends. */
static __always_inline void unmap_v4(__u8* addr, __u8* family) {
  const __u32* w = (const __u32*)addr;
  if (*family != SP_FAMILY_V6 || w[0] != 0 || w[1] != 0 || w[2] != bpf_htonl(0xffff)) return;
  __u32 v4 = w[3];
  __builtin_memset(addr, 0, 16);
  __builtin_memcpy(addr, &v4, 4);
  *family = SP_FAMILY_V4;
}

/* The first of the two slots (socket, backend) may take in sp_rev_slots: a multiplicative
 * hash of both. */
static __always_inline __u32 rev_slot(__u64 cookie, const struct sp_backend* b) {
  const __u32* w = (const __u32*)b->addr;
  const __u64 k = 0x9e3779b97f4a7c15ull;
  __u64 h = cookie * k;
  h = (h ^ w[0]) * k;
  h = (h ^ w[1]) * k;
  h = (h ^ w[2]) * k;
  h = (h ^ w[3] ^ ((__u64)b->port << 32)) * k;
  return (__u32)(h >> (64 - SP_REV_BITS)) & ~1u;
}

static __always_inline int rev_is(const struct sp_rev_entry* e, __u64 cookie,
                                  const struct sp_backend* b) {
  const __u32 *x = (const __u32*)e->backend.addr, *y = (const __u32*)b->addr;
  return e->cookie == cookie && x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] &&
         e->backend.port == b->port && e->backend.family == b->family;
}

/* The entry of (socket, backend), or 0 when neither of its slots holds it. */
static __always_inline struct sp_rev_entry* rev_find(__u64 cookie, const struct sp_backend* b) {
  __u32 slot = rev_slot(cookie, b);
  struct sp_rev_entry* e = bpf_map_lookup_elem(&sp_rev_slots, &slot);
  if (e && rev_is(e, cookie, b)) return e;
  slot |= 1;
  e = bpf_map_lookup_elem(&sp_rev_slots, &slot);
  if (e && rev_is(e, cookie, b)) return e;
  return 0;
}

#endif
