// SPDX-License-Identifier: GPL-2.0
/* The stale-socket iterators, apart from the socket programs because they need
 * bpf_sock_destroy (kernel 6.5+); see sock_lb_shared.h. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sock_lb_maps.h"
#include "sock_lb_shared.h"

/* How many sockets the iterators destroyed, for userspace to report. */
__u64 sp_destroyed = 0;

extern int bpf_sock_destroy(struct sock_common* sk) __ksym;

/* Stale sockets: a socket whose connect() this program pointed at a backend that has since
 * left the service is destroyed (its owner gets ECONNABORTED and dials again, reaching a live
 * backend), so a client pinned to a dead DNS pod does not send into the void. Only sockets
 * translated here (they have a reverse entry) and only connected UDP and TCP still connecting:
 * established TCP to a backend that still serves while terminating is left alone. Userspace
 * runs these in each network namespace of the cgroup's processes. */
static __always_inline void destroy_if_stale(struct sock* sk) {
  struct sock_common* c = &sk->__sk_common;
  struct sp_backend b = {};
  b.port = c->skc_dport;
  if (c->skc_family == 2 /* AF_INET */) {
    __u32 a = c->skc_daddr;
    __builtin_memcpy(b.addr, &a, 4);
    b.family = SP_FAMILY_V4;
  } else if (c->skc_family == 10 /* AF_INET6 */) {
    __u32 w0 = c->skc_v6_daddr.in6_u.u6_addr32[0], w1 = c->skc_v6_daddr.in6_u.u6_addr32[1],
          w2 = c->skc_v6_daddr.in6_u.u6_addr32[2], w3 = c->skc_v6_daddr.in6_u.u6_addr32[3];
    __builtin_memcpy(b.addr, &w0, 4);
    __builtin_memcpy(b.addr + 4, &w1, 4);
    __builtin_memcpy(b.addr + 8, &w2, 4);
    __builtin_memcpy(b.addr + 12, &w3, 4);
    b.family = SP_FAMILY_V6;
    unmap_v4(b.addr, &b.family);
  } else {
    return;
  }
  if (!bpf_map_lookup_elem(&sp_destroy, &b)) return;
  if (!rev_find(bpf_get_socket_cookie(sk), &b)) return;
  if (bpf_sock_destroy(c) == 0) __sync_fetch_and_add(&sp_destroyed, 1);
}

SEC("iter/udp")
int sp_destroy_udp(struct bpf_iter__udp* ctx) {
  struct sock* sk = (struct sock*)ctx->udp_sk;
  if (!sk) return 0;
  /* Connected sockets only: an unconnected one is translated datagram by datagram. */
  if (sk->__sk_common.skc_state != 1 /* TCP_ESTABLISHED: connected */) return 0;
  destroy_if_stale(sk);
  return 0;
}

SEC("iter/tcp")
int sp_destroy_tcp(struct bpf_iter__tcp* ctx) {
  struct sock_common* c = ctx->sk_common;
  if (!c || c->skc_state != 2 /* TCP_SYN_SENT */) return 0;
  destroy_if_stale((struct sock*)c);
  return 0;
}

char LICENSE[] SEC("license") = "GPL";
