/* The packet-path load balancer's hook-independent part, shared by its tc programs and its XDP
 * program (nodeport_lb.bpf.c): the maps, what a parsed packet holds, and the decision for a
 * packet to a frontend (connection tracking, source ranges, affinity, Maglev, SNAT port). Each
 * hook applies the decision with its own means (skb helpers at tc, direct packet writes at
 * XDP). Include once, after vmlinux.h and the bpf helpers. */
#ifndef SLICEPROXY_NODEPORT_LB_CORE_H
#define SLICEPROXY_NODEPORT_LB_CORE_H

#include "nodeport_hash.h"
#include "nodeport_lb_maps.h"

#define NP_IPPROTO_TCP 6
#define NP_IPPROTO_UDP 17

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

/* Two slots per element: an array's elements are 8 bytes apart, and userspace indexes the
 * mapping as an array of 32-bit slots. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, NP_LIVE_SLOTS / 2);
  __uint(map_flags, BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, __u64);
} np_live SEC(".maps");

/* Two tables per service port, each of its own prime size (BPF_F_INNER_MAP), written by
 * userspace through mmap (BPF_F_MMAPABLE): it rewrites the table no frontend points at and then
 * points the frontends at it, one map update each, so a reader sees the old table or the new
 * one, never a mix. Replacing an inner map (only when the size changes) waits for RCU. */
struct np_maglev_inner {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
  __type(key, __u32);
  __type(value, __u64); /* a struct np_maglev_pair: clang gives libbpf no size for a struct
                         * used only through pointers */
};

/* Entries allocated as tables come (no preallocation of 65,536 slots); the flag also tells this
 * layout from the one-entry-per-element tables of earlier versions, so a pinned map of those is
 * not adopted. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
  __uint(max_entries, 65536);
  __uint(map_flags, BPF_F_NO_PREALLOC);
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

/* Backends that flows were translated to without SNAT (the client's address kept: eTP Local),
 * written as such a flow is made. A reply of a translated flow is addressed to the SNAT address
 * or comes from one of these, so only those packets look in np_rnat: its key holds both ports,
 * so for any other packet (most of what crosses a node) that lookup was a cache and TLB miss in
 * a table of megabytes. Local endpoints only, far fewer than the entries; LRU all the same.
 * Keyed by a fold of the address (np_source_key; NodePortPrograms::rnatSourceKey in userspace):
 * another address folding to the same key only costs that address's packets the np_rnat lookup, and
 * the programs' stack has no room for more. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, __u8);
} np_rnat_sources SEC(".maps");

static __always_inline __u32 np_source_key(const __u8* addr, __u8 family) {
  const __u32* w = (const __u32*)addr;
  return w[0] ^ w[1] ^ w[2] ^ w[3] ^ ((__u32)family << 24);
}

/* One bit per port (host order: word port / 32, bit port % 32) that some frontend has,
 * written by userspace (backends/ebpf/frontend_ports.*) before the frontends of that port and
 * cleared after them. A packet to another port (a reply to a client's ephemeral port, most
 * traffic between pods) skips np_frontends, whose bucket for such a key is a random one of a
 * megabyte table. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2048);
  __type(key, __u32);
  __type(value, __u32);
} np_fe_ports SEC(".maps");

/* Room for one np_range_key off the stack, which has none left (512 bytes for the programs and
 * what they inline): the DSR check of this node's pod CIDRs builds its key here. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct np_range_key);
} np_scratch_range SEC(".maps");

/* Whether the client is a pod of this node (NP_RANGES_LOCAL_PODS in np_src_ranges). */
static __always_inline int np_local_pod(const __u8* client, __u8 family) {
  const __u32 zero = 0;
  struct np_range_key* k = bpf_map_lookup_elem(&np_scratch_range, &zero);
  if (!k) return 0;
  k->prefixlen = NP_RANGE_FIXED_BITS + (family == NP_FAMILY_V4 ? 32 : 128);
  k->ranges_id = NP_RANGES_LOCAL_PODS;
  k->family = family;
  k->pad[0] = k->pad[1] = k->pad[2] = 0;
  __builtin_memcpy(k->addr, client, 16);
  return bpf_map_lookup_elem(&np_src_ranges, k) != 0;
}

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

/* Whether p may be the reply of a translated flow (see np_rnat_sources). A reply to the SNAT
 * address comes to a port of the SNAT range: a NodePort on that address (most of what a node
 * forwards, when the SNAT address is its own) never is, and so costs no np_rnat lookup. */
static __always_inline int np_may_be_reply(const struct np_pkt* p) {
  __u32 slot = p->family == NP_FAMILY_V4 ? 0 : 1;
  const struct np_snat* snat = bpf_map_lookup_elem(&np_snat, &slot);
  if (snat) {
    const __u32 *a = (const __u32*)snat->addr, *d = (const __u32*)p->daddr;
    const __u16 port = bpf_ntohs(p->dport);
    if (a[0] == d[0] && a[1] == d[1] && a[2] == d[2] && a[3] == d[3] && port >= snat->port_min &&
        port <= snat->port_max)
      return 1;
  }
  const __u32 k = np_source_key(p->saddr, p->family);
  return bpf_map_lookup_elem(&np_rnat_sources, &k) != 0;
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
  const __u32 elem = idx >> 1;
  const struct np_maglev_pair* pair =
      (const struct np_maglev_pair*)bpf_map_lookup_elem(table, &elem);
  if (!pair) return 0;
  const __u32 id = pair->id[idx & 1];
  *backend_id = id;
  return bpf_map_lookup_elem(&np_backends, &id);
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

/* What np_decide found for a packet to a frontend. */
#define NP_D_PASS 0   /* no frontend (or not this hook's): untouched */
#define NP_D_DROP 1   /* policy drop (source ranges, eTP Local elsewhere, no SNAT port) */
#define NP_D_REJECT 2 /* no endpoints, kube-proxy rejects: the hook answers */
#define NP_D_NAT 3    /* translate as *cv says */

/* The decision for a packet that is not a reply of a translated flow: a new flow's entries
 * (connection tracking, the reverse entry, the SNAT port) are created here, so a hook that
 * cannot finish the packet can leave it to the next one (XDP to tc), which then finds the flow
 * known. egress: the node's own packet at a tc egress (only eTP Cluster frontends). */
static __always_inline int np_decide(const struct np_pkt* pp, int egress, struct np_ct_value* cv) {
  const __u16 port = bpf_ntohs(pp->dport);
  const __u32 word = port >> 5;
  const __u32* bits = bpf_map_lookup_elem(&np_fe_ports, &word);
  if (!bits || !(*bits & (1u << (port & 31)))) return NP_D_PASS;
  struct np_fe_key fk = {};
  __builtin_memcpy(fk.addr, pp->daddr, 16);
  fk.port = pp->dport;
  fk.proto = pp->proto;
  fk.family = pp->family;
  struct np_frontend* fe = 0;
  if (egress) {
    fe = bpf_map_lookup_elem(&np_frontends, &fk);
    if (!fe) return NP_D_PASS;
    struct np_local_key lk = {};
    __builtin_memcpy(lk.addr, pp->saddr, 16);
    lk.family = pp->family;
    if (!(fe->flags & (NP_F_SNAT | NP_F_REJECT)) || !bpf_map_lookup_elem(&np_local, &lk))
      return NP_D_PASS;
  }

  struct np_ct_key ck = {};
  __builtin_memcpy(ck.client, pp->saddr, 16);
  __builtin_memcpy(ck.vip, pp->daddr, 16);
  ck.cport = pp->sport;
  ck.vport = pp->dport;
  ck.proto = pp->proto;
  ck.family = pp->family;
  struct np_ct_value* known = bpf_map_lookup_elem(&np_ct, &ck);
  /* A UDP flow whose backend left the service (its id is no longer live: ids are never reused)
   * moves to a live one, as kube-proxy's conntrack cleanup moves it; a TCP connection stays
   * with its backend until it ends (graceful termination). */
  if (known && pp->proto == NP_IPPROTO_UDP) {
    const __u32 slot = known->backend_id & (NP_LIVE_SLOTS - 1), elem = slot >> 1;
    const __u32* pair = bpf_map_lookup_elem(&np_live, &elem);
    if (!pair || pair[slot & 1] != known->backend_id) known = 0;
  }
  if (known) {
    /* At ingress the frontend is not looked at for a flow already translated (the tracking
     * entry names everything; a frontend gone or changed since leaves established flows as
     * conntrack does): one lookup less per packet, a cache miss at 10,000 services. */
    *cv = *known;
  } else {
    if (!fe) fe = bpf_map_lookup_elem(&np_frontends, &fk);
    if (!fe) return NP_D_PASS;
    if (fe->flags & NP_F_DROP) return NP_D_DROP;
    if (fe->flags & NP_F_SOURCE_RANGES) {
      struct np_range_key rk = {};
      rk.prefixlen = NP_RANGE_FIXED_BITS + (pp->family == NP_FAMILY_V4 ? 32 : 128);
      rk.ranges_id = fe->ranges_id;
      rk.family = pp->family;
      __builtin_memcpy(rk.addr, pp->saddr, 16);
      if (!bpf_map_lookup_elem(&np_src_ranges, &rk)) return NP_D_DROP;
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
    if (!be) return (fe->flags & NP_F_REJECT) ? NP_D_REJECT : NP_D_DROP;
    __builtin_memset(cv, 0, sizeof(*cv));
    cv->backend = *be;
    cv->backend_id = backend_id;
    cv->flags = fe->flags;
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
    /* With DSR a flow from outside keeps its client (the reply leaves the backend's node
     * straight to it); the node's own flows (egress) and its pods' are SNATed all the same. */
    const __u32 *bw = (const __u32*)be->addr, *cw = (const __u32*)pp->saddr;
    const int hairpin =
        bw[0] == cw[0] && bw[1] == cw[1] && bw[2] == cw[2] && bw[3] == cw[3] && !egress;
    int snat_it = (fe->flags & NP_F_SNAT) &&
                  (egress || !(fe->flags & NP_F_DSR) || np_local_pod(pp->saddr, pp->family));
    if (hairpin)
      snat_it = 1;
    else if (snat_it && (fe->flags & NP_F_POD_KEEPS_SOURCE) && !egress &&
             np_local_pod(pp->saddr, pp->family))
      snat_it = 0;
    struct np_snat* snat = snat_it ? bpf_map_lookup_elem(&np_snat, &slot) : 0;
    if (snat && (snat->addr[0] | snat->addr[1] | snat->addr[2] | snat->addr[3] | snat->addr[12] |
                 snat->addr[15])) {
      __builtin_memcpy(rk.dst, snat->addr, 16);
      __u32 h = np_flow_hash(pp->saddr, pp->daddr, (const __u8*)&pp->sport, (const __u8*)&pp->dport,
                             pp->proto);
      cv->snat_port = np_snat_claim(snat, &rk, &rv, h);
      if (!cv->snat_port) return NP_D_DROP; /* no free port: as a full conntrack table */
    } else {
      __builtin_memcpy(rk.dst, pp->saddr, 16);
      rk.dport = pp->sport;
      bpf_map_update_elem(&np_rnat, &rk, &rv, BPF_ANY);
      const __u32 src = np_source_key(be->addr, pp->family);
      if (!bpf_map_lookup_elem(&np_rnat_sources, &src)) {
        __u8 one = 1;
        bpf_map_update_elem(&np_rnat_sources, &src, &one, BPF_ANY);
      }
    }
    bpf_map_update_elem(&np_ct, &ck, cv, BPF_ANY);
  }

  return NP_D_NAT;
}

#endif
