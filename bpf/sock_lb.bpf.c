// SPDX-License-Identifier: GPL-2.0
/* Socket-level service load balancing: at connect() and sendmsg() the client's own kernel
 * rewrites a service frontend to a backend address, so the flow carries the backend address
 * from its first packet and never meets a NAT rule; recvmsg() and getpeername() show the
 * application the frontend it dialled. The programs decide nothing: which backends serve a
 * frontend is written into the maps by userspace (backends/ebpf/), after the proxier's
 * traffic-policy and topology decisions. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sock_lb_maps.h"
#include "sock_lb_shared.h"

#define SP_IPPROTO_TCP 6
#define SP_IPPROTO_UDP 17
#define SP_ECONNREFUSED 111
#define SP_ALLOW 1
#define SP_REJECT 0

/* Sizes are set by the loader before load (bpf_map__set_max_entries); these are defaults. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sp_svc_key);
  __type(value, struct sp_svc_value);
} sp_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1048576);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sp_slot_key);
  __type(value, struct sp_backend);
} sp_slots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1048576);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sp_member_key);
  __type(value, __u32);
} sp_members SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sp_affinity_key);
  __type(value, struct sp_affinity_value);
} sp_affinity SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sp_hairpin_key);
  __type(value, __u8);
} sp_hairpin SEC(".maps");

/* What a program sees of the address it is given, in one shape for both families. */
struct sp_addr {
  __u8 addr[16];
  __u16 port;
  __u8 family;
};

static __always_inline void read_addr(struct bpf_sock_addr* ctx, __u8 family, struct sp_addr* a) {
  if (family == SP_FAMILY_V4) {
    __u32 ip = ctx->user_ip4;
    __builtin_memcpy(a->addr, &ip, 4);
  } else {
    __u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2],
          w3 = ctx->user_ip6[3];
    __builtin_memcpy(a->addr, &w0, 4);
    __builtin_memcpy(a->addr + 4, &w1, 4);
    __builtin_memcpy(a->addr + 8, &w2, 4);
    __builtin_memcpy(a->addr + 12, &w3, 4);
  }
  a->port = (__u16)ctx->user_port;
  a->family = family;
}


/* family is the hook's own (a constant after inlining): the verifier refuses any access to the
 * other family's fields, even on a branch that is never taken. */
static __always_inline void write_addr(struct bpf_sock_addr* ctx, __u8 family,
                                       const struct sp_backend* b) {
  __u32 w;
  if (family == SP_FAMILY_V4) {
    __builtin_memcpy(&w, b->addr, 4);
    ctx->user_ip4 = w;
  } else if (b->family == SP_FAMILY_V4) {
    /* An IPv4 backend seen from an IPv6 socket: IPv4-mapped again. */
    ctx->user_ip6[0] = 0;
    ctx->user_ip6[1] = 0;
    ctx->user_ip6[2] = bpf_htonl(0xffff);
    __builtin_memcpy(&w, b->addr, 4);
    ctx->user_ip6[3] = w;
  } else {
    __builtin_memcpy(&w, b->addr, 4);
    ctx->user_ip6[0] = w;
    __builtin_memcpy(&w, b->addr + 4, 4);
    ctx->user_ip6[1] = w;
    __builtin_memcpy(&w, b->addr + 8, 4);
    ctx->user_ip6[2] = w;
    __builtin_memcpy(&w, b->addr + 12, 4);
    ctx->user_ip6[3] = w;
  }
  ctx->user_port = (__u32)b->port;
}

static __always_inline const struct sp_backend* slot(const struct sp_svc_value* svc, __u32 i) {
  struct sp_slot_key k = {.set_id = svc->set_id, .index = i | (svc->gen ? SP_SLOT_GEN_BIT : 0)};
  return bpf_map_lookup_elem(&sp_slots, &k);
}

/* The backend for a new flow to this frontend (and its slot in *idx): the client's remembered
 * one while its affinity lasts and it is still in the set, otherwise a uniformly random slot. */
static __always_inline const struct sp_backend* pick(struct bpf_sock_addr* ctx,
                                                     const struct sp_svc_value* svc, __u32* idx) {
  __u32 count = svc->count;
  if (count == 0) return 0;
  if (!svc->affinity_timeout) {
    *idx = bpf_get_prandom_u32() % count;
    return slot(svc, *idx);
  }

  struct sp_affinity_key ak = {.client = bpf_get_netns_cookie(ctx), .set_id = svc->set_id};
  __u64 now = bpf_ktime_get_ns();
  struct sp_affinity_value* av = bpf_map_lookup_elem(&sp_affinity, &ak);
  if (av && now - av->last_ns <= (__u64)svc->affinity_timeout * 1000000000ull) {
    /* Still a member? Its slot is found through the member map and checked, so a member
     * entry not yet deleted for a removed backend never revives it. */
    struct sp_member_key mk = {.set_id = svc->set_id, .gen = svc->gen, .backend = av->backend};
    const __u32* member = bpf_map_lookup_elem(&sp_members, &mk);
    if (member && *member < count) {
      const struct sp_backend* b = slot(svc, *member);
      if (b && sp_same_backend(b, &av->backend)) {
        av->last_ns = now;
        *idx = *member;
        return b;
      }
    }
  }
  *idx = bpf_get_prandom_u32() % count;
  const struct sp_backend* b = slot(svc, *idx);
  if (!b) return 0;
  struct sp_affinity_value nv = {.backend = *b, .last_ns = now};
  bpf_map_update_elem(&sp_affinity, &ak, &nv, BPF_ANY);
  return b;
}

/* Writes (socket, backend) -> frontend into e. Readers check the cookie before and after
 * copying: it is cleared while the rest changes (another socket may share the bucket). */
static __always_inline void remember(struct sp_rev_entry* e, __u64 cookie,
                                     const struct sp_backend* be, const struct sp_backend* fe,
                                     __u32 idx) {
  e->cookie = 0;
  asm volatile("" ::: "memory");
  e->backend = *be;
  e->frontend = *fe;
  e->slot = idx;
  asm volatile("" ::: "memory");
  e->cookie = cookie;
}

/* connect() (TCP, connected UDP) and sendmsg() (unconnected UDP) to a frontend. */
static __always_inline int translate(struct bpf_sock_addr* ctx, __u8 family) {
  __u32 proto = ctx->protocol;
  if (proto != SP_IPPROTO_TCP && proto != SP_IPPROTO_UDP) return SP_ALLOW;
  struct sp_addr dst = {};
  read_addr(ctx, family, &dst);
  unmap_v4(dst.addr, &dst.family);
  struct sp_svc_key key = {.port = dst.port, .proto = (__u8)proto, .family = dst.family};
  __builtin_memcpy(key.addr, dst.addr, 16);
  const struct sp_svc_value* svc = bpf_map_lookup_elem(&sp_services, &key);
  if (!svc) {
    key.port = SP_SVC_ANY_PORT;
    key.proto = 0;
    svc = bpf_map_lookup_elem(&sp_services, &key);
    if (!svc) return SP_ALLOW;
  }

  if (svc->flags & SP_SVC_F_PASS) return SP_ALLOW;
  if (svc->flags & SP_SVC_F_HAIRPIN) {
    /* A pod that is one of the port's backends: translated in the packet path, which
     * masquerades it only if it lands on itself (a translation here could not: the flow would
     * never leave the pod). */
    struct sp_hairpin_key hk = {.netns = bpf_get_netns_cookie(ctx),
                                .set_id = svc->set_id - !(svc->set_id & 1u)};
    if (bpf_map_lookup_elem(&sp_hairpin, &hk)) return SP_ALLOW;
  }
  const struct sp_backend* b = 0;
  if (!(svc->flags & SP_SVC_F_REJECT) && svc->count) {
    struct sp_backend fe = {.port = dst.port, .family = dst.family};
    __builtin_memcpy(fe.addr, dst.addr, 16);
    const __u64 cookie = bpf_get_socket_cookie(ctx);
    const __u32 base = rev_bucket(cookie);
    /* This socket's entry for the frontend, and an entry of another socket to take. */
    struct sp_rev_entry *mine = 0, *other = 0;
#pragma unroll
    for (__u32 i = 0; i < SP_REV_WAYS; i++) {
      __u32 k = base + i;
      struct sp_rev_entry* e = bpf_map_lookup_elem(&sp_rev_buckets, &k);
      if (!e) continue;
      if (e->cookie != cookie) {
        if (!other) other = e;
      } else if (sp_same_backend(&e->frontend, &fe)) {
        mine = e;
      }
    }
    /* A socket sending again keeps its backend while that backend still holds its slot. */
    if (mine && mine->slot < svc->count) {
      const struct sp_backend* c = slot(svc, mine->slot);
      if (c && sp_same_backend(c, &mine->backend)) b = c;
    }
    if (!b) {
      __u32 idx = 0;
      b = pick(ctx, svc, &idx);
      if (b) {
        struct sp_rev_entry* e = mine ? mine : other;
        if (!e) {
          /* Every entry of the bucket is this socket's, for other frontends: reuse one. */
          __u32 k = base + (idx & (SP_REV_WAYS - 1));
          e = bpf_map_lookup_elem(&sp_rev_buckets, &k);
        }
        if (e) remember(e, cookie, b, &fe, idx);
      }
    }
  }
  if (!b) {
    /* Returning 0 alone makes the syscall fail with EPERM; bpf_set_retval (kernel 5.18+)
     * replaces that with the error kube-proxy's REJECT gives a client. */
    bpf_set_retval(-SP_ECONNREFUSED);
    return SP_REJECT;
  }
  struct sp_backend be = *b;
  write_addr(ctx, family, &be);
  return SP_ALLOW;
}

/* recvmsg() and getpeername(): a backend address this socket reached through a frontend is
 * shown as that frontend. */
static __always_inline int reverse(struct bpf_sock_addr* ctx, __u8 family) {
  struct sp_addr src = {};
  read_addr(ctx, family, &src);
  unmap_v4(src.addr, &src.family);
  const __u64 cookie = bpf_get_socket_cookie(ctx);
  struct sp_backend b = {.port = src.port, .family = src.family};
  __builtin_memcpy(b.addr, src.addr, 16);
  const struct sp_rev_entry* e = rev_find(cookie, &b);
  if (!e) return SP_ALLOW;
  struct sp_backend fe = e->frontend;
  asm volatile("" ::: "memory");
  if (e->cookie != cookie) return SP_ALLOW; /* rewritten for another socket meanwhile */
  write_addr(ctx, family, &fe);
  return SP_ALLOW;
}

SEC("cgroup/connect4")
int sp_connect4(struct bpf_sock_addr* ctx) {
  return translate(ctx, SP_FAMILY_V4);
}

SEC("cgroup/connect6")
int sp_connect6(struct bpf_sock_addr* ctx) {
  return translate(ctx, SP_FAMILY_V6);
}

SEC("cgroup/sendmsg4")
int sp_sendmsg4(struct bpf_sock_addr* ctx) {
  return translate(ctx, SP_FAMILY_V4);
}

SEC("cgroup/sendmsg6")
int sp_sendmsg6(struct bpf_sock_addr* ctx) {
  return translate(ctx, SP_FAMILY_V6);
}

SEC("cgroup/recvmsg4")
int sp_recvmsg4(struct bpf_sock_addr* ctx) {
  return reverse(ctx, SP_FAMILY_V4);
}

SEC("cgroup/recvmsg6")
int sp_recvmsg6(struct bpf_sock_addr* ctx) {
  return reverse(ctx, SP_FAMILY_V6);
}

SEC("cgroup/getpeername4")
int sp_getpeername4(struct bpf_sock_addr* ctx) {
  return reverse(ctx, SP_FAMILY_V4);
}

SEC("cgroup/getpeername6")
int sp_getpeername6(struct bpf_sock_addr* ctx) {
  return reverse(ctx, SP_FAMILY_V6);
}

char LICENSE[] SEC("license") = "GPL";
