// SPDX-License-Identifier: GPL-2.0
/* Service load balancing in the packet path for traffic from outside the node (NodePort,
 * externalIPs, LoadBalancer addresses), at tc ingress of the node's interfaces: frontend
 * lookup, a Maglev table for new flows, connection tracking for established ones, DNAT and for
 * eTP Cluster SNAT to the node, with the reverse translation of replies (np_ingress for replies
 * that come back from another node, np_egress for replies of local backends). The programs
 * decide nothing: which backends serve a frontend and whether it is SNATed, rejected or dropped
 * is written into the maps by userspace after the proxier's decisions. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "nodeport_hash.h"
#include "nodeport_lb_maps.h"

#define NP_TC_ACT_OK 0
#define NP_TC_ACT_SHOT 2
#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_IPV6 0x86DD
#define NP_ETH_HLEN 14
#define NP_IPPROTO_TCP 6
#define NP_IPPROTO_UDP 17
#define NP_IPPROTO_ICMP 1
#define NP_IP_CSUM_OFF (NP_ETH_HLEN + 10)
#define NP_IP_SRC_OFF (NP_ETH_HLEN + 12)
#define NP_IP_DST_OFF (NP_ETH_HLEN + 16)
#define NP_IP6_SRC_OFF (NP_ETH_HLEN + 8)
#define NP_IP6_DST_OFF (NP_ETH_HLEN + 24)
#define NP_LOOPBACK_IFINDEX 1

/* Sizes are set by the loader before load; these are defaults. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct np_fe_key);
  __type(value, struct np_frontend);
} np_frontends SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1048576);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u32);
  __type(value, struct np_backend);
} np_backends SEC(".maps");

/* Two tables per service port, each of its own prime size (BPF_F_INNER_MAP), written by
 * userspace through mmap (BPF_F_MMAPABLE): it rewrites the table no frontend points at and then
 * points the frontends at it, one map update each, so a reader sees the old table or the new
 * one, never a mix. Replacing an inner map (only when the size changes) waits for RCU. */
struct np_maglev_inner {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, __u32); /* backend id in np_backends */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, 65536);
  __type(key, __u32);
  __array(values, struct np_maglev_inner);
} np_maglev SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct np_range_key);
  __type(value, __u8);
} np_src_ranges SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct np_aff_key);
  __type(value, struct np_aff_value);
} np_affinity SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct np_ct_key);
  __type(value, struct np_ct_value);
} np_ct SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 262144);
  __type(key, struct np_rnat_key);
  __type(value, struct np_rnat_value);
} np_rnat SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, struct np_snat);
} np_snat SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, struct np_local_key);
  __type(value, __u8);
} np_local SEC(".maps");

/* What the program read from a packet; offsets are from the start of the frame. */
struct np_pkt {
  __u8 saddr[16];
  __u8 daddr[16];
  __u16 sport;
  __u16 dport;
  __u8 proto;
  __u8 family;
  __u16 l4_off;
  __u16 csum_off; /* the L4 checksum */
  __u16 saddr_off;
  __u16 daddr_off;
  __u16 l4_flags; /* BPF_F_MARK_MANGLED_0 for UDP: a zero checksum means none */
};

/* 0 with p filled for an unfragmented IPv4/IPv6 TCP or UDP packet, -1 for anything else
 * (which passes untouched). */
static __always_inline int np_parse(struct __sk_buff* skb, struct np_pkt* p) {
  __u16 proto;
  if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0) return -1;
  if (proto == bpf_htons(NP_ETH_P_IP)) {
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip)) < 0) return -1;
    if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x3fff))) return -1;
    p->family = NP_FAMILY_V4;
    p->proto = ip.protocol;
    p->l4_off = NP_ETH_HLEN + ip.ihl * 4;
    __builtin_memcpy(p->saddr, &ip.saddr, 4);
    __builtin_memcpy(p->daddr, &ip.daddr, 4);
    p->saddr_off = NP_IP_SRC_OFF;
    p->daddr_off = NP_IP_DST_OFF;
  } else if (proto == bpf_htons(NP_ETH_P_IPV6)) {
    struct ipv6hdr ip6;
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6)) < 0) return -1;
    /* Extension headers are not followed: such packets pass untranslated. */
    p->family = NP_FAMILY_V6;
    p->proto = ip6.nexthdr;
    p->l4_off = NP_ETH_HLEN + sizeof(ip6);
    __builtin_memcpy(p->saddr, &ip6.saddr, 16);
    __builtin_memcpy(p->daddr, &ip6.daddr, 16);
    p->saddr_off = NP_IP6_SRC_OFF;
    p->daddr_off = NP_IP6_DST_OFF;
  } else {
    return -1;
  }
  if (p->proto == NP_IPPROTO_TCP) {
    p->csum_off = p->l4_off + 16;
    p->l4_flags = 0;
  } else if (p->proto == NP_IPPROTO_UDP) {
    p->csum_off = p->l4_off + 6;
    p->l4_flags = BPF_F_MARK_MANGLED_0;
  } else {
    return -1;
  }
  __u16 ports[2];
  if (bpf_skb_load_bytes(skb, p->l4_off, ports, 4) < 0) return -1;
  p->sport = ports[0];
  p->dport = ports[1];
  return 0;
}

/* Rewrites the address at off from old to new, with the IPv4 header checksum and the L4
 * checksum (whose pseudo-header holds the address) updated by the difference. */
static __always_inline int np_set_addr(struct __sk_buff* skb, const struct np_pkt* p, __u32 off,
                                       __u8* old, __u8* new) {
  __s64 diff;
  if (p->family == NP_FAMILY_V4) {
    diff = bpf_csum_diff((__be32*)old, 4, (__be32*)new, 4, 0);
    if (diff < 0 || bpf_l3_csum_replace(skb, NP_IP_CSUM_OFF, 0, diff, 0) < 0) return -1;
    if (bpf_l4_csum_replace(skb, p->csum_off, 0, diff, BPF_F_PSEUDO_HDR | p->l4_flags) < 0)
      return -1;
    return bpf_skb_store_bytes(skb, off, new, 4, 0);
  }
  diff = bpf_csum_diff((__be32*)old, 16, (__be32*)new, 16, 0);
  if (diff < 0) return -1;
  if (bpf_l4_csum_replace(skb, p->csum_off, 0, diff, BPF_F_PSEUDO_HDR | p->l4_flags) < 0) return -1;
  return bpf_skb_store_bytes(skb, off, new, 16, 0);
}

static __always_inline int np_set_port(struct __sk_buff* skb, const struct np_pkt* p, __u32 off,
                                       __u16 old, __u16 new) {
  if (old == new) return 0;
  if (bpf_l4_csum_replace(skb, p->csum_off, old, new, p->l4_flags | 2) < 0) return -1;
  return bpf_skb_store_bytes(skb, off, &new, 2, 0);
}

static __always_inline int np_addr_eq(const __u8* a, const __u8* b) {
  const __u32 *x = (const __u32*)a, *y = (const __u32*)b;
  return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

/* A reply of a translated flow: restore the frontend as its source and the client as its
 * destination. Returns 1 when the packet was one, 0 when not, -1 on failure. */
static __always_inline int np_reverse(struct __sk_buff* skb, struct np_pkt* p) {
  struct np_rnat_key rk = {};
  __builtin_memcpy(rk.backend, p->saddr, 16);
  __builtin_memcpy(rk.dst, p->daddr, 16);
  rk.bport = p->sport;
  rk.dport = p->dport;
  rk.proto = p->proto;
  rk.family = p->family;
  struct np_rnat_value* rv = bpf_map_lookup_elem(&np_rnat, &rk);
  if (!rv) return 0;
  struct np_rnat_value v = *rv;
  if (np_set_addr(skb, p, p->saddr_off, p->saddr, v.vip) < 0) return -1;
  if (np_set_port(skb, p, p->l4_off, p->sport, v.vport) < 0) return -1;
  if (!np_addr_eq(p->daddr, v.client) && np_set_addr(skb, p, p->daddr_off, p->daddr, v.client) < 0)
    return -1;
  if (np_set_port(skb, p, p->l4_off + 2, p->dport, v.cport) < 0) return -1;
  __builtin_memcpy(p->daddr, v.client, 16);
  return 1;
}

/* Sends a translated packet straight out of the interface the FIB gives its new destination,
 * with the TTL (hop limit) decremented as a router does. The stack cannot take it: after SNAT
 * (or the reverse translation of a SNATed reply) its source is one of this node's addresses,
 * which input routing rejects as martian. A destination the FIB does not forward to (a local
 * address, no route, TTL expiring) goes to the stack as it is. */
static __always_inline int np_forward(struct __sk_buff* skb, const struct np_pkt* p,
                                      const __u8* daddr, int egress) {
  struct bpf_fib_lookup fib = {};
  fib.ifindex = egress ? skb->ifindex : skb->ingress_ifindex;
  fib.l4_protocol = p->proto;
  fib.tot_len = skb->len - NP_ETH_HLEN;
  __u8 ttl;
  if (p->family == NP_FAMILY_V4) {
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN + 8, &ttl, 1) < 0 || ttl <= 1) return NP_TC_ACT_OK;
    fib.family = 2; /* AF_INET */
    __builtin_memcpy(&fib.ipv4_dst, daddr, 4);
  } else {
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN + 7, &ttl, 1) < 0 || ttl <= 1) return NP_TC_ACT_OK;
    fib.family = 10; /* AF_INET6 */
    __builtin_memcpy(fib.ipv6_dst, daddr, 16);
  }
  long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
  if (rc == BPF_FIB_LKUP_RET_NOT_FWDED && (egress || skb->ingress_ifindex != NP_LOOPBACK_IFINDEX)) {
    struct np_local_key lk = {};
    __builtin_memcpy(lk.addr, daddr, 16);
    lk.family = p->family;
    if (bpf_map_lookup_elem(&np_local, &lk)) {
      __u8 zero[6] = {};
      if (bpf_skb_store_bytes(skb, 0, zero, 6, 0) < 0) return NP_TC_ACT_SHOT;
      return bpf_redirect(NP_LOOPBACK_IFINDEX, BPF_F_INGRESS);
    }
  }
  if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) return NP_TC_ACT_OK;
  __u8 next = ttl - 1;
  if (p->family == NP_FAMILY_V4) {
    /* The TTL is the high byte of the header's 16-bit word at offset 8. */
    if (bpf_l3_csum_replace(skb, NP_IP_CSUM_OFF, bpf_htons((__u16)ttl << 8),
                            bpf_htons((__u16)next << 8), 2) < 0 ||
        bpf_skb_store_bytes(skb, NP_ETH_HLEN + 8, &next, 1, 0) < 0)
      return NP_TC_ACT_SHOT;
  } else if (bpf_skb_store_bytes(skb, NP_ETH_HLEN + 7, &next, 1, 0) < 0) {
    return NP_TC_ACT_SHOT;
  }
  return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
}

/* The backend for a new flow: its Maglev entry (and its id in *backend_id). */
static __always_inline struct np_backend* np_pick(const struct np_frontend* fe,
                                                  const struct np_pkt* p, __u32* backend_id) {
  if (fe->size == 0) return 0;
  void* table = bpf_map_lookup_elem(&np_maglev, &fe->table_id);
  if (!table) return 0;
  __u32 idx =
      np_flow_hash(p->saddr, p->daddr, (const __u8*)&p->sport, (const __u8*)&p->dport, p->proto) %
      fe->size;
  __u32* id = bpf_map_lookup_elem(table, &idx);
  if (!id) return 0;
  *backend_id = *id;
  return bpf_map_lookup_elem(&np_backends, id);
}

/* A free SNAT port for the flow, claimed by inserting its reverse entry. */
static __always_inline __u16 np_snat_claim(const struct np_snat* snat, struct np_rnat_key* rk,
                                           const struct np_rnat_value* rv, __u32 hash) {
  __u32 range = (__u32)snat->port_max - snat->port_min + 1;
  if (snat->port_max < snat->port_min) return 0;
  for (int i = 0; i < NP_SNAT_PORT_TRIES; i++) {
    __u16 port = bpf_htons((__u16)(snat->port_min + (hash + i * 7919) % range));
    rk->dport = port;
    if (bpf_map_update_elem(&np_rnat, rk, rv, BPF_NOEXIST) == 0) return port;
  }
  return 0;
}

/* TCP RST in answer to p, built in place of the packet and sent back out of its interface
 * (with egress: back in, to the node's socket that sent it). */
static __always_inline int np_reject_tcp(struct __sk_buff* skb, const struct np_pkt* p,
                                         __u64 back);
static __always_inline int np_reject_udp(struct __sk_buff* skb, const struct np_pkt* p,
                                         __u64 back);

/* The frontend lookup and translation. At ingress: every packet. At egress (egress = 1): the
 * node's own packets (source one of its addresses) to an eTP Cluster frontend, which the
 * socket programs leave to this path so that pods' flows to it are masqueraded at their
 * interface; the node's own would otherwise leave by its default route untranslated. */
static __always_inline int np_balance(struct __sk_buff* skb, struct np_pkt* pp, int egress) {
  struct np_fe_key fk = {};
  __builtin_memcpy(fk.addr, pp->daddr, 16);
  fk.port = pp->dport;
  fk.proto = pp->proto;
  fk.family = pp->family;
  struct np_frontend* fe = bpf_map_lookup_elem(&np_frontends, &fk);
  if (!fe) return NP_TC_ACT_OK;
  if (egress) {
    struct np_local_key lk = {};
    __builtin_memcpy(lk.addr, pp->saddr, 16);
    lk.family = pp->family;
    if (!(fe->flags & NP_F_SNAT) || !bpf_map_lookup_elem(&np_local, &lk)) return NP_TC_ACT_OK;
  }
  const __u64 back = egress ? BPF_F_INGRESS : 0;

  struct np_ct_key ck = {};
  __builtin_memcpy(ck.client, pp->saddr, 16);
  __builtin_memcpy(ck.vip, pp->daddr, 16);
  ck.cport = pp->sport;
  ck.vport = pp->dport;
  ck.proto = pp->proto;
  ck.family = pp->family;
  struct np_ct_value cv;
  struct np_ct_value* known = bpf_map_lookup_elem(&np_ct, &ck);
  /* A UDP flow whose backend left the service (its id is gone from np_backends: ids are never
   * reused) moves to a live one, as kube-proxy's conntrack cleanup moves it; a TCP connection
   * stays with its backend until it ends (graceful termination). */
  if (known && pp->proto == NP_IPPROTO_UDP && !bpf_map_lookup_elem(&np_backends, &known->backend_id))
    known = 0;
  if (known) {
    cv = *known;
  } else {
    if (fe->flags & NP_F_DROP) return NP_TC_ACT_SHOT;
    if (fe->flags & NP_F_SOURCE_RANGES) {
      struct np_range_key rk = {};
      rk.prefixlen = NP_RANGE_FIXED_BITS + (pp->family == NP_FAMILY_V4 ? 32 : 128);
      rk.ranges_id = fe->ranges_id;
      rk.family = pp->family;
      __builtin_memcpy(rk.addr, pp->saddr, 16);
      if (!bpf_map_lookup_elem(&np_src_ranges, &rk)) return NP_TC_ACT_SHOT;
    }
    __u32 backend_id = 0;
    struct np_backend* be = 0;
    struct np_aff_key ak = {};
    const __u64 now = bpf_ktime_get_ns();
    const __u64 timeout_ns = (__u64)fe->affinity_timeout * 1000000000ull;
    if (timeout_ns) {
      __builtin_memcpy(ak.client, pp->saddr, 16);
      ak.svc_id = fe->svc_id;
      ak.family = pp->family;
      struct np_aff_value* av = bpf_map_lookup_elem(&np_affinity, &ak);
      if (av && now - av->last_ns < timeout_ns) {
        __u32 id = av->backend_id;
        be = bpf_map_lookup_elem(&np_backends, &id);
        if (be) backend_id = id;
      }
    }
    if (!be) be = np_pick(fe, pp, &backend_id);
    if (be && timeout_ns) {
      struct np_aff_value nv = {.last_ns = now, .backend_id = backend_id};
      bpf_map_update_elem(&np_affinity, &ak, &nv, BPF_ANY);
    }
    if (!be) {
      if (!(fe->flags & NP_F_REJECT)) return NP_TC_ACT_SHOT;
      return pp->proto == NP_IPPROTO_TCP ? np_reject_tcp(skb, pp, back)
                                       : np_reject_udp(skb, pp, back);
    }
    __builtin_memset(&cv, 0, sizeof(cv));
    cv.backend = *be;
    cv.backend_id = backend_id;
    cv.flags = fe->flags;
    struct np_rnat_key rk = {};
    __builtin_memcpy(rk.backend, be->addr, 16);
    rk.bport = be->port;
    rk.proto = pp->proto;
    rk.family = pp->family;
    struct np_rnat_value rv = {};
    __builtin_memcpy(rv.client, pp->saddr, 16);
    __builtin_memcpy(rv.vip, pp->daddr, 16);
    rv.cport = pp->sport;
    rv.vport = pp->dport;
    __u32 slot = pp->family == NP_FAMILY_V4 ? 0 : 1;
    struct np_snat* snat = (fe->flags & NP_F_SNAT) ? bpf_map_lookup_elem(&np_snat, &slot) : 0;
    if (snat && (snat->addr[0] | snat->addr[1] | snat->addr[2] | snat->addr[3] | snat->addr[12] |
                 snat->addr[15])) {
      __builtin_memcpy(rk.dst, snat->addr, 16);
      __u32 h =
          np_flow_hash(pp->saddr, pp->daddr, (const __u8*)&pp->sport, (const __u8*)&pp->dport, pp->proto);
      cv.snat_port = np_snat_claim(snat, &rk, &rv, h);
      if (!cv.snat_port) return NP_TC_ACT_SHOT; /* no free port: as a full conntrack table */
    } else {
      __builtin_memcpy(rk.dst, pp->saddr, 16);
      rk.dport = pp->sport;
      bpf_map_update_elem(&np_rnat, &rk, &rv, BPF_ANY);
    }
    bpf_map_update_elem(&np_ct, &ck, &cv, BPF_ANY);
  }

  if (np_set_addr(skb, pp, pp->daddr_off, pp->daddr, cv.backend.addr) < 0) return NP_TC_ACT_SHOT;
  if (np_set_port(skb, pp, pp->l4_off + 2, pp->dport, cv.backend.port) < 0) return NP_TC_ACT_SHOT;
  if (cv.snat_port) {
    __u32 slot = pp->family == NP_FAMILY_V4 ? 0 : 1;
    struct np_snat* snat = bpf_map_lookup_elem(&np_snat, &slot);
    if (!snat) return NP_TC_ACT_SHOT;
    __u8 addr[16];
    __builtin_memcpy(addr, snat->addr, 16);
    if (np_set_addr(skb, pp, pp->saddr_off, pp->saddr, addr) < 0) return NP_TC_ACT_SHOT;
    if (np_set_port(skb, pp, pp->l4_off, pp->sport, cv.snat_port) < 0) return NP_TC_ACT_SHOT;
  }
  return np_forward(skb, pp, cv.backend.addr, egress);
}

SEC("tc")
int np_ingress(struct __sk_buff* skb) {
  struct np_pkt p = {};
  if (np_parse(skb, &p) < 0) return NP_TC_ACT_OK;
  int r = np_reverse(skb, &p);
  if (r != 0) return r < 0 ? NP_TC_ACT_SHOT : np_forward(skb, &p, p.daddr, 0);
  return np_balance(skb, &p, 0);
}

/* Replies of local backends to clients outside, DNAT only (eTP Local): the frontend goes back
 * in as their source as they leave. And the node's own flows to eTP Cluster frontends. */
SEC("tc")
int np_egress(struct __sk_buff* skb) {
  struct np_pkt p = {};
  if (np_parse(skb, &p) < 0) return NP_TC_ACT_OK;
  int r = np_reverse(skb, &p);
  if (r != 0) return r < 0 ? NP_TC_ACT_SHOT : NP_TC_ACT_OK;
  return np_balance(skb, &p, 1);
}

static __always_inline __u16 np_fold(__u64 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

/* The leading pad puts the IP header on a 4-byte boundary; the frame starts at eth. */
struct np_rst4 {
  __u16 pad;
  struct ethhdr eth;
  struct iphdr ip;
  struct tcphdr tcp;
};
#define NP_RST4_LEN (sizeof(struct np_rst4) - 2)

static __always_inline int np_reject_tcp6(struct __sk_buff* skb, const struct np_pkt* p,
                                          __u64 back);
static __always_inline int np_reject_udp6(struct __sk_buff* skb, const struct np_pkt* p,
                                          __u64 back);

static __always_inline int np_reject_tcp(struct __sk_buff* skb, const struct np_pkt* p,
                                         __u64 back) {
  if (p->family != NP_FAMILY_V4) return np_reject_tcp6(skb, p, back);
  struct ethhdr eth;
  struct iphdr ip;
  struct tcphdr th;
  if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
      bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip)) < 0 ||
      bpf_skb_load_bytes(skb, p->l4_off, &th, sizeof(th)) < 0)
    return NP_TC_ACT_SHOT;
  if (th.rst) return NP_TC_ACT_SHOT; /* never answer a RST */
  struct np_rst4 r = {};
  __builtin_memcpy(r.eth.h_dest, eth.h_source, 6);
  __builtin_memcpy(r.eth.h_source, eth.h_dest, 6);
  r.eth.h_proto = bpf_htons(NP_ETH_P_IP);
  r.ip.version = 4;
  r.ip.ihl = 5;
  r.ip.tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct tcphdr));
  r.ip.frag_off = bpf_htons(0x4000);
  r.ip.ttl = 64;
  r.ip.protocol = NP_IPPROTO_TCP;
  r.ip.saddr = ip.daddr;
  r.ip.daddr = ip.saddr;
  r.tcp.source = th.dest;
  r.tcp.dest = th.source;
  r.tcp.doff = 5;
  r.tcp.rst = 1;
  if (th.ack) {
    r.tcp.seq = th.ack_seq; /* RFC 793: an ACKed segment gets a RST at its ack number */
  } else {
    __u32 len = bpf_ntohs(ip.tot_len) - ip.ihl * 4 - th.doff * 4;
    r.tcp.ack = 1;
    r.tcp.ack_seq = bpf_htonl(bpf_ntohl(th.seq) + len + th.syn + th.fin);
  }
  __u64 sum = 0;
  __u16* w = (__u16*)&r.ip;
  for (int i = 0; i < 10; i++) sum += w[i];
  r.ip.check = np_fold(sum);
  /* Pseudo-header (addresses, protocol, length) plus the 20-byte header. */
  sum = (r.ip.saddr & 0xffff) + (r.ip.saddr >> 16) + (r.ip.daddr & 0xffff) + (r.ip.daddr >> 16) +
        bpf_htons(NP_IPPROTO_TCP) + bpf_htons(sizeof(struct tcphdr));
  w = (__u16*)&r.tcp;
  for (int i = 0; i < 10; i++) sum += w[i];
  r.tcp.check = np_fold(sum);
  if (bpf_skb_change_tail(skb, NP_RST4_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  if (bpf_skb_store_bytes(skb, 0, &r.eth, NP_RST4_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  return bpf_redirect(skb->ifindex, back);
}

/* ICMP port unreachable: the original IP header and the first 8 bytes of its payload. */
struct np_icmp4 {
  __u16 pad;
  struct ethhdr eth;
  struct iphdr ip;
  __u8 type, code;
  __u16 check;
  __u32 unused;
  __u8 orig[28];
};
#define NP_ICMP4_LEN (sizeof(struct np_icmp4) - 2)

static __always_inline int np_reject_udp(struct __sk_buff* skb, const struct np_pkt* p,
                                         __u64 back) {
  if (p->family != NP_FAMILY_V4) return np_reject_udp6(skb, p, back);
  if (p->l4_off != NP_ETH_HLEN + 20) return NP_TC_ACT_SHOT;
  struct ethhdr eth;
  struct np_icmp4 r = {};
  if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
      bpf_skb_load_bytes(skb, NP_ETH_HLEN, r.orig, sizeof(r.orig)) < 0)
    return NP_TC_ACT_SHOT;
  __builtin_memcpy(r.eth.h_dest, eth.h_source, 6);
  __builtin_memcpy(r.eth.h_source, eth.h_dest, 6);
  r.eth.h_proto = bpf_htons(NP_ETH_P_IP);
  r.ip.version = 4;
  r.ip.ihl = 5;
  r.ip.tot_len = bpf_htons(NP_ICMP4_LEN - NP_ETH_HLEN);
  r.ip.ttl = 64;
  r.ip.protocol = NP_IPPROTO_ICMP;
  __builtin_memcpy(&r.ip.saddr, p->daddr, 4);
  __builtin_memcpy(&r.ip.daddr, p->saddr, 4);
  r.type = 3; /* destination unreachable */
  r.code = 3; /* port unreachable */
  __u64 sum = 0;
  __u16* w = (__u16*)&r.ip;
  for (int i = 0; i < 10; i++) sum += w[i];
  r.ip.check = np_fold(sum);
  sum = 0;
  w = (__u16*)&r.type;
  for (int i = 0; i < 18; i++) sum += w[i];
  r.check = np_fold(sum);
  if (bpf_skb_change_tail(skb, NP_ICMP4_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  if (bpf_skb_store_bytes(skb, 0, &r.eth, NP_ICMP4_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  return bpf_redirect(skb->ifindex, back);
}

/* The sum of the IPv6 pseudo-header (RFC 8200 8.1) for an upper-layer packet of len bytes. */
static __always_inline __u64 np_pseudo6(const struct ipv6hdr* ip6, __u32 len, __u8 next) {
  __u64 sum = 0;
  const __u16* w = (const __u16*)&ip6->saddr;
  for (int i = 0; i < 16; i++) sum += w[i]; /* saddr and daddr, adjacent */
  return sum + bpf_htons((__u16)len) + bpf_htons(next);
}

struct np_rst6 {
  __u16 pad;
  struct ethhdr eth;
  struct ipv6hdr ip6;
  struct tcphdr tcp;
};
#define NP_RST6_LEN (sizeof(struct np_rst6) - 2)

static __always_inline int np_reject_tcp6(struct __sk_buff* skb, const struct np_pkt* p,
                                          __u64 back) {
  struct ethhdr eth;
  struct ipv6hdr ip6;
  struct tcphdr th;
  if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
      bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6)) < 0 ||
      bpf_skb_load_bytes(skb, p->l4_off, &th, sizeof(th)) < 0)
    return NP_TC_ACT_SHOT;
  if (th.rst) return NP_TC_ACT_SHOT;
  struct np_rst6 r = {};
  __builtin_memcpy(r.eth.h_dest, eth.h_source, 6);
  __builtin_memcpy(r.eth.h_source, eth.h_dest, 6);
  r.eth.h_proto = bpf_htons(NP_ETH_P_IPV6);
  r.ip6.version = 6;
  r.ip6.payload_len = bpf_htons(sizeof(struct tcphdr));
  r.ip6.nexthdr = NP_IPPROTO_TCP;
  r.ip6.hop_limit = 64;
  r.ip6.saddr = ip6.daddr;
  r.ip6.daddr = ip6.saddr;
  r.tcp.source = th.dest;
  r.tcp.dest = th.source;
  r.tcp.doff = 5;
  r.tcp.rst = 1;
  if (th.ack) {
    r.tcp.seq = th.ack_seq;
  } else {
    __u32 len = bpf_ntohs(ip6.payload_len) - th.doff * 4;
    r.tcp.ack = 1;
    r.tcp.ack_seq = bpf_htonl(bpf_ntohl(th.seq) + len + th.syn + th.fin);
  }
  __u64 sum = np_pseudo6(&r.ip6, sizeof(struct tcphdr), NP_IPPROTO_TCP);
  __u16* w = (__u16*)&r.tcp;
  for (int i = 0; i < 10; i++) sum += w[i];
  r.tcp.check = np_fold(sum);
  if (bpf_skb_change_tail(skb, NP_RST6_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  if (bpf_skb_store_bytes(skb, 0, &r.eth, NP_RST6_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  return bpf_redirect(skb->ifindex, back);
}

/* ICMPv6 port unreachable quoting the IPv6 header and the 8-byte UDP header. */
struct np_icmp6 {
  __u16 pad;
  struct ethhdr eth;
  struct ipv6hdr ip6;
  __u8 type, code;
  __u16 check;
  __u32 unused;
  __u8 orig[48];
};
#define NP_ICMP6_LEN (sizeof(struct np_icmp6) - 2)
#define NP_ICMP6_BODY (8 + 48)

static __always_inline int np_reject_udp6(struct __sk_buff* skb, const struct np_pkt* p,
                                          __u64 back) {
  if (p->l4_off != NP_ETH_HLEN + 40) return NP_TC_ACT_SHOT;
  struct ethhdr eth;
  struct np_icmp6 r = {};
  if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
      bpf_skb_load_bytes(skb, NP_ETH_HLEN, r.orig, sizeof(r.orig)) < 0)
    return NP_TC_ACT_SHOT;
  __builtin_memcpy(r.eth.h_dest, eth.h_source, 6);
  __builtin_memcpy(r.eth.h_source, eth.h_dest, 6);
  r.eth.h_proto = bpf_htons(NP_ETH_P_IPV6);
  r.ip6.version = 6;
  r.ip6.payload_len = bpf_htons(NP_ICMP6_BODY);
  r.ip6.nexthdr = 58; /* ICMPv6 */
  r.ip6.hop_limit = 64;
  __builtin_memcpy(&r.ip6.saddr, p->daddr, 16);
  __builtin_memcpy(&r.ip6.daddr, p->saddr, 16);
  r.type = 1; /* destination unreachable */
  r.code = 4; /* port unreachable */
  __u64 sum = np_pseudo6(&r.ip6, NP_ICMP6_BODY, 58);
  __u16* w = (__u16*)&r.type;
  for (int i = 0; i < NP_ICMP6_BODY / 2; i++) sum += w[i];
  r.check = np_fold(sum);
  if (bpf_skb_change_tail(skb, NP_ICMP6_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  if (bpf_skb_store_bytes(skb, 0, &r.eth, NP_ICMP6_LEN, 0) < 0) return NP_TC_ACT_SHOT;
  return bpf_redirect(skb->ifindex, back);
}

char LICENSE[] SEC("license") = "GPL";
