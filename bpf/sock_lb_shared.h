/* SPDX-License-Identifier: GPL-2.0 */
/* What the socket programs (sock_lb.bpf.c) and the stale-socket iterators
 * (stale_sockets.bpf.c) share. They are two objects because the iterators need
 * bpf_sock_destroy (kernel 6.5+) and libbpf refuses a whole object whose kfunc the kernel
 * lacks: on Debian 12's 6.1 the socket programs load alone. The iterators' object is given
 * the socket programs' maps (bpf_map__reuse_fd) before it loads. */
#ifndef SLICEPROXY_SOCK_LB_SHARED_H
#define SLICEPROXY_SOCK_LB_SHARED_H

#include "sock_lb_maps.h"

/* An array indexed by socket cookie (see sp_rev_entry), not the LRU hash (sp_reverse) nor the
 * table indexed by a hash of cookie and backend (sp_rev_slots) of earlier versions: writing an
 * LRU element was more than half of what sendmsg cost, and a hashed slot was a random entry of
 * 25 MB, a TLB and cache miss on every new socket. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, SP_REV_SLOTS);
  __type(key, __u32);
  __type(value, struct sp_rev_entry);
} sp_rev_buckets SEC(".maps");

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

static __always_inline int sp_same_backend(const struct sp_backend* a, const struct sp_backend* b) {
  /* clang lowers no memcmp for BPF: compare the address as four words. */
  const __u32 *x = (const __u32*)a->addr, *y = (const __u32*)b->addr;
  return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && a->port == b->port &&
         a->family == b->family;
}

static __always_inline __u32 rev_bucket(__u64 cookie) {
  return ((__u32)cookie & ((1u << SP_REV_BUCKET_BITS) - 1)) * SP_REV_WAYS;
}

/* The entry of (socket, backend), or 0. */
static __always_inline struct sp_rev_entry* rev_find(__u64 cookie, const struct sp_backend* b) {
  const __u32 base = rev_bucket(cookie);
#pragma unroll
  for (__u32 i = 0; i < SP_REV_WAYS; i++) {
    __u32 k = base + i;
    struct sp_rev_entry* e = bpf_map_lookup_elem(&sp_rev_buckets, &k);
    if (e && e->cookie == cookie && sp_same_backend(&e->backend, b)) return e;
  }
  return 0;
}

#endif
