/* SPDX-License-Identifier: GPL-2.0 */
/* What the socket programs (sock_lb.bpf.c) and the stale-socket iterators
 * (stale_sockets.bpf.c) share. They are two objects because the iterators need
 * bpf_sock_destroy (kernel 6.5+) and libbpf refuses a whole object whose kfunc the kernel
 * lacks: on Debian 12's 6.1 the socket programs load alone. The iterators' object is given
 * the socket programs' maps (bpf_map__reuse_fd) before it loads. */
#ifndef SLICEPROXY_SOCK_LB_SHARED_H
#define SLICEPROXY_SOCK_LB_SHARED_H

#include "sock_lb_maps.h"

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct sp_rev_key);
  __type(value, struct sp_rev_value);
} sp_reverse SEC(".maps");

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

#endif
