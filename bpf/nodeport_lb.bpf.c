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

#include "nodeport_lb_core.h"

#define NP_TC_ACT_OK 0
#define NP_TC_ACT_SHOT 2
#define NP_ETH_P_IP 0x0800
#define NP_ETH_P_IPV6 0x86DD
#define NP_ETH_HLEN 14
#define NP_IPPROTO_ICMP 1
#define NP_IP_CSUM_OFF (NP_ETH_HLEN + 10)
#define NP_IP_SRC_OFF (NP_ETH_HLEN + 12)
#define NP_IP_DST_OFF (NP_ETH_HLEN + 16)
#define NP_IP6_SRC_OFF (NP_ETH_HLEN + 8)
#define NP_IP6_DST_OFF (NP_ETH_HLEN + 24)
#define NP_LOOPBACK_IFINDEX 1
#define NP_IPPROTO_DSTOPTS 60

/* 0 with p filled for an unfragmented IPv4/IPv6 TCP or UDP packet, 1 for one that carries the
 * DSR option after its fixed IP header (p filled as for 0, l4_off past the option), -1 for
 * anything else (which passes untouched). */
static __always_inline int np_parse(struct __sk_buff* skb, struct np_pkt* p) {
  int dsr = 0;
  __u16 proto;
  if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0) return -1;
  if (proto == bpf_htons(NP_ETH_P_IP)) {
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip)) < 0) return -1;
    if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x3fff))) return -1;
    if (ip.ihl == 5 + NP_DSR_OPT4_LEN / 4) {
      __u8 opt[2];
      if (bpf_skb_load_bytes(skb, NP_ETH_HLEN + 20, opt, 2) < 0) return -1;
      dsr = opt[0] == NP_DSR_OPT4_TYPE && opt[1] == NP_DSR_OPT4_LEN;
    }
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
    /* Extension headers are not followed (such packets pass untranslated), but for the
     * Destination Options header that carries the DSR option and nothing else. */
    p->family = NP_FAMILY_V6;
    p->proto = ip6.nexthdr;
    p->l4_off = NP_ETH_HLEN + sizeof(ip6);
    if (ip6.nexthdr == NP_IPPROTO_DSTOPTS) {
      __u8 h[4];
      if (bpf_skb_load_bytes(skb, p->l4_off, h, 4) < 0) return -1;
      if (h[1] != NP_DSR_HDR6_LEN / 8 - 1 || h[2] != NP_DSR_OPT6_TYPE || h[3] != NP_DSR_OPT6_LEN)
        return -1;
      dsr = 1;
      p->proto = h[0];
      p->l4_off += NP_DSR_HDR6_LEN;
    }
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
  return dsr;
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

static __always_inline __u16 np_ip4_check(struct iphdr* ip, const __u16* opt, int opt_words) {
  __u64 sum = 0;
  ip->check = 0;
  const __u16* w = (const __u16*)ip;
  for (int i = 0; i < 10; i++) sum += w[i];
  for (int i = 0; i < opt_words; i++) sum += opt[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

/* Whether a DSR flow's packet carries the frontend: every UDP datagram, a TCP SYN (the
 * backend's node keeps it for the connection's life). */
static __always_inline int np_dsr_carries(struct __sk_buff* skb, const struct np_pkt* p) {
  if (p->proto == NP_IPPROTO_UDP) return 1;
  __u8 flags;
  if (bpf_skb_load_bytes(skb, p->l4_off + 13, &flags, 1) < 0) return 0;
  return (flags & 0x12) == 0x02; /* SYN without ACK */
}

/* Puts the frontend p was sent to (p->daddr, p->dport: the packet is DNATed already) in the
 * DSR option right after the fixed IP header. The L4 checksum does not change: neither IPv4
 * options nor IPv6 extension headers are in its pseudo-header. The stores keep a receive
 * checksum (CHECKSUM_COMPLETE) true to the bytes. */
static __always_inline int np_dsr_push(struct __sk_buff* skb, const struct np_pkt* p) {
  if (p->family == NP_FAMILY_V4) {
    struct iphdr ip;
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl != 5) return -1;
    if (bpf_skb_adjust_room(skb, NP_DSR_OPT4_LEN, BPF_ADJ_ROOM_NET, 0) < 0) return -1;
    __u8 opt[NP_DSR_OPT4_LEN] = {NP_DSR_OPT4_TYPE, NP_DSR_OPT4_LEN};
    __builtin_memcpy(opt + 2, &p->dport, 2);
    __builtin_memcpy(opt + 4, p->daddr, 4);
    ip.ihl = 5 + NP_DSR_OPT4_LEN / 4;
    ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) + NP_DSR_OPT4_LEN);
    ip.check = np_ip4_check(&ip, (const __u16*)opt, NP_DSR_OPT4_LEN / 2);
    if (bpf_skb_store_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM) < 0 ||
        bpf_skb_store_bytes(skb, NP_ETH_HLEN + sizeof(ip), opt, sizeof(opt), BPF_F_RECOMPUTE_CSUM) <
            0)
      return -1;
    return 0;
  }
  struct ipv6hdr ip6;
  if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6)) < 0) return -1;
  if (bpf_skb_adjust_room(skb, NP_DSR_HDR6_LEN, BPF_ADJ_ROOM_NET, 0) < 0) return -1;
  __u8 h[NP_DSR_HDR6_LEN] = {ip6.nexthdr, NP_DSR_HDR6_LEN / 8 - 1, NP_DSR_OPT6_TYPE,
                             NP_DSR_OPT6_LEN};
  __builtin_memcpy(h + 4, &p->dport, 2);
  __builtin_memcpy(h + 6, p->daddr, 16);
  h[22] = 1; /* PadN, no data bytes */
  ip6.nexthdr = NP_IPPROTO_DSTOPTS;
  ip6.payload_len = bpf_htons(bpf_ntohs(ip6.payload_len) + NP_DSR_HDR6_LEN);
  if (bpf_skb_store_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6), BPF_F_RECOMPUTE_CSUM) < 0 ||
      bpf_skb_store_bytes(skb, NP_ETH_HLEN + sizeof(ip6), h, sizeof(h), BPF_F_RECOMPUTE_CSUM) < 0)
    return -1;
  return 0;
}

/* A packet another node sent here by DSR (np_parse found the option): its flow's reverse entry
 * is recorded -- the backend's replies to the client get the frontend as their source when they
 * enter this node (np_ingress at the pod's interface) and leave for the client from here -- and
 * the option is taken out before the stack delivers the packet to the backend. */
static __always_inline int np_dsr_accept(struct __sk_buff* skb, struct np_pkt* p) {
  struct np_rnat_key rk = {};
  __builtin_memcpy(rk.backend, p->daddr, 16);
  __builtin_memcpy(rk.dst, p->saddr, 16);
  rk.bport = p->dport;
  rk.dport = p->sport;
  rk.proto = p->proto;
  rk.family = p->family;
  struct np_rnat_value rv = {};
  __builtin_memcpy(rv.client, p->saddr, 16);
  rv.cport = p->sport;
  if (p->family == NP_FAMILY_V4) {
    struct iphdr ip;
    __u8 opt[6];
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip)) < 0 ||
        bpf_skb_load_bytes(skb, NP_ETH_HLEN + sizeof(ip) + 2, opt, 6) < 0)
      return NP_TC_ACT_SHOT;
    __builtin_memcpy(&rv.vport, opt, 2);
    __builtin_memcpy(rv.vip, opt + 2, 4);
    if (bpf_skb_adjust_room(skb, -NP_DSR_OPT4_LEN, BPF_ADJ_ROOM_NET, 0) < 0) return NP_TC_ACT_SHOT;
    ip.ihl = 5;
    ip.tot_len = bpf_htons(bpf_ntohs(ip.tot_len) - NP_DSR_OPT4_LEN);
    ip.check = np_ip4_check(&ip, 0, 0);
    if (bpf_skb_store_bytes(skb, NP_ETH_HLEN, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM) < 0)
      return NP_TC_ACT_SHOT;
  } else {
    struct ipv6hdr ip6;
    __u8 opt[18];
    if (bpf_skb_load_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6)) < 0 ||
        bpf_skb_load_bytes(skb, NP_ETH_HLEN + sizeof(ip6) + 4, opt, 18) < 0)
      return NP_TC_ACT_SHOT;
    __builtin_memcpy(&rv.vport, opt, 2);
    __builtin_memcpy(rv.vip, opt + 2, 16);
    if (bpf_skb_adjust_room(skb, -NP_DSR_HDR6_LEN, BPF_ADJ_ROOM_NET, 0) < 0) return NP_TC_ACT_SHOT;
    ip6.nexthdr = p->proto;
    ip6.payload_len = bpf_htons(bpf_ntohs(ip6.payload_len) - NP_DSR_HDR6_LEN);
    if (bpf_skb_store_bytes(skb, NP_ETH_HLEN, &ip6, sizeof(ip6), BPF_F_RECOMPUTE_CSUM) < 0)
      return NP_TC_ACT_SHOT;
  }
  bpf_map_update_elem(&np_rnat, &rk, &rv, BPF_ANY);
  const __u32 src = np_source_key(p->daddr, p->family);
  if (!bpf_map_lookup_elem(&np_rnat_sources, &src)) {
    __u8 one = 1;
    bpf_map_update_elem(&np_rnat_sources, &src, &one, BPF_ANY);
  }
  return NP_TC_ACT_OK;
}

/* TCP RST in answer to p, built in place of the packet and sent back out of its interface
 * (with egress: back in, to the node's socket that sent it). */
static __always_inline int np_reject_tcp(struct __sk_buff* skb, const struct np_pkt* p, __u64 back);
static __always_inline int np_reject_udp(struct __sk_buff* skb, const struct np_pkt* p, __u64 back);

/* The frontend lookup and translation. At ingress: every packet. At egress (egress = 1): the
 * node's own packets (source one of its addresses) to an eTP Cluster frontend, which the
 * socket programs leave to this path so that pods' flows to it are masqueraded at their
 * interface; the node's own would otherwise leave by its default route untranslated. */
static __always_inline int np_balance(struct __sk_buff* skb, struct np_pkt* pp, int egress) {
  struct np_ct_value cv;
  const int d = np_decide(pp, egress, &cv);
  if (d == NP_D_PASS) return NP_TC_ACT_OK;
  if (d == NP_D_DROP) return NP_TC_ACT_SHOT;
  if (d == NP_D_REJECT) {
    const __u64 back = egress ? BPF_F_INGRESS : 0;
    return pp->proto == NP_IPPROTO_TCP ? np_reject_tcp(skb, pp, back)
                                       : np_reject_udp(skb, pp, back);
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
  } else if ((cv.flags & NP_F_DSR) && np_dsr_carries(skb, pp) && np_dsr_push(skb, pp) < 0) {
    return NP_TC_ACT_SHOT;
  }
  return np_forward(skb, pp, cv.backend.addr, egress);
}

SEC("tc")
int np_ingress(struct __sk_buff* skb) {
  struct np_pkt p = {};
  const int parsed = np_parse(skb, &p);
  if (parsed < 0) return NP_TC_ACT_OK;
  if (parsed == 1) return np_dsr_accept(skb, &p);
  int r = np_may_be_reply(&p) ? np_reverse(skb, &p) : 0;
  if (r != 0) return r < 0 ? NP_TC_ACT_SHOT : np_forward(skb, &p, p.daddr, 0);
  return np_balance(skb, &p, 0);
}

/* Replies of local backends to clients outside, DNAT only (eTP Local): the frontend goes back
 * in as their source as they leave. And the node's own flows to eTP Cluster frontends. */
SEC("tc")
int np_egress(struct __sk_buff* skb) {
  struct np_pkt p = {};
  if (np_parse(skb, &p) < 0) return NP_TC_ACT_OK;
  int r = np_may_be_reply(&p) ? np_reverse(skb, &p) : 0;
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

/* ---- XDP: the same decision before the kernel allocates anything for the packet ----------- */

/* The 16-bit one's complement checksum `check` with the words of from replaced by those of to
 * (RFC 1624); sizes in bytes, multiples of 4. */
static __always_inline __u16 np_csum_replace(__u16 check, __be32* from, __u32 fsz, __be32* to,
                                             __u32 tsz) {
  __s64 sum = bpf_csum_diff(from, fsz, to, tsz, (__u16)~check);
  return np_fold(sum < 0 ? 0 : (__u64)sum);
}

/* Interfaces np_xdp may send frames out of: those it runs on natively (userspace adds them as it
 * attaches). A frame redirected into any other -- a pod's veth, whose peer may run neither XDP
 * nor GRO and would drop it -- is left to tc instead. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32); /* ifindex */
  __type(value, __u8);
} np_xdp_out SEC(".maps");

/* The FIB's next hop for a translated packet; 0 when it has a resolved one XDP may send to. */
static __always_inline int np_xdp_fib(struct xdp_md* ctx, struct bpf_fib_lookup* fib, __u8 family,
                                      const __u8* daddr, __u8 proto, __u16 tot_len) {
  fib->ifindex = ctx->ingress_ifindex;
  fib->l4_protocol = proto;
  fib->tot_len = tot_len;
  if (family == NP_FAMILY_V4) {
    fib->family = 2; /* AF_INET */
    __builtin_memcpy(&fib->ipv4_dst, daddr, 4);
  } else {
    fib->family = 10; /* AF_INET6 */
    __builtin_memcpy(fib->ipv6_dst, daddr, 16);
  }
  if (bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) return -1;
  __u32 out = fib->ifindex;
  return bpf_map_lookup_elem(&np_xdp_out, &out) ? 0 : -1;
}

/* The new L4 checksum: addresses (pseudo-header) and ports replaced. An IPv4 UDP checksum of
 * zero means none and stays so; a computed zero is sent as all ones. */
static __always_inline __u16 np_xdp_l4sum(__u16 check, __u8 proto, int v4, __be32* oa, __be32* na,
                                          __u32 asz, __be32 oports, __be32 nports) {
  if (v4 && proto == NP_IPPROTO_UDP && check == 0) return 0;
  __u16 c = np_csum_replace(check, oa, asz, na, asz);
  c = np_csum_replace(c, &oports, 4, &nports, 4);
  return (proto == NP_IPPROTO_UDP && c == 0) ? 0xffff : c;
}

/* Rewrites an IPv4 frame (headers already bounds-checked by the parse) as cv says: addresses
 * and ports, both checksums, TTL, MAC addresses. Pointers are derived again from ctx: one
 * pointer chosen by family would not convince the verifier. */
static __always_inline int np_xdp_nat4(struct xdp_md* ctx, const struct np_pkt* p,
                                       const __u8* nsaddr, const __u8* ndaddr, __be32 nports) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  __be32* l4 = (void*)(ip + 1);
  if ((void*)(l4 + 2) > end) return XDP_PASS;
  if (ip->ttl <= 1) return XDP_PASS;
  struct bpf_fib_lookup fib = {};
  if (np_xdp_fib(ctx, &fib, NP_FAMILY_V4, ndaddr, p->proto, bpf_ntohs(ip->tot_len)) < 0)
    return XDP_PASS;
  __u16* check;
  if (p->proto == NP_IPPROTO_TCP) {
    if ((void*)(l4 + 5) > end) return XDP_PASS;
    check = (__u16*)l4 + 8;
  } else {
    check = (__u16*)l4 + 3;
  }
  __be32 o[3] = {ip->saddr, ip->daddr, 0}, n[3] = {0, 0, 0};
  __builtin_memcpy(&n[0], nsaddr, 4);
  __builtin_memcpy(&n[1], ndaddr, 4);
  *check = np_xdp_l4sum(*check, p->proto, 1, o, n, 8, *l4, nports);
  /* The TTL is the high byte of the header's word at offset 8, decremented as a router does. */
  const __u8 ttl = ip->ttl;
  ((__u16*)o)[4] = bpf_htons((__u16)ttl << 8);
  ((__u16*)n)[4] = bpf_htons((__u16)(ttl - 1) << 8);
  ip->check = np_csum_replace(ip->check, o, 12, n, 12);
  ip->saddr = n[0];
  ip->daddr = n[1];
  ip->ttl = ttl - 1;
  *l4 = nports;
  __builtin_memcpy(eth->h_dest, fib.dmac, 6);
  __builtin_memcpy(eth->h_source, fib.smac, 6);
  if (fib.ifindex == ctx->ingress_ifindex) return XDP_TX;
  return bpf_redirect(fib.ifindex, 0);
}

static __always_inline int np_xdp_nat6(struct xdp_md* ctx, const struct np_pkt* p,
                                       const __u8* nsaddr, const __u8* ndaddr, __be32 nports) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct ipv6hdr* ip6 = (void*)(eth + 1);
  __be32* l4 = (void*)(ip6 + 1);
  if ((void*)(l4 + 2) > end) return XDP_PASS;
  if (ip6->hop_limit <= 1) return XDP_PASS;
  struct bpf_fib_lookup fib = {};
  if (np_xdp_fib(ctx, &fib, NP_FAMILY_V6, ndaddr, p->proto, bpf_ntohs(ip6->payload_len) + 40) < 0)
    return XDP_PASS;
  __u16* check;
  if (p->proto == NP_IPPROTO_TCP) {
    if ((void*)(l4 + 5) > end) return XDP_PASS;
    check = (__u16*)l4 + 8;
  } else {
    check = (__u16*)l4 + 3;
  }
  __be32 o[8], n[8];
  __builtin_memcpy(o, &ip6->saddr, 32);
  __builtin_memcpy(&n[0], nsaddr, 16);
  __builtin_memcpy(&n[4], ndaddr, 16);
  *check = np_xdp_l4sum(*check, p->proto, 0, o, n, 32, *l4, nports);
  __builtin_memcpy(&ip6->saddr, n, 32);
  ip6->hop_limit -= 1;
  *l4 = nports;
  __builtin_memcpy(eth->h_dest, fib.dmac, 6);
  __builtin_memcpy(eth->h_source, fib.smac, 6);
  if (fib.ifindex == ctx->ingress_ifindex) return XDP_TX;
  return bpf_redirect(fib.ifindex, 0);
}

/* New and established flows to a frontend whose next hop the FIB knows: translated, given the
 * next hop's MAC addresses and sent out of its interface here (XDP_TX or bpf_redirect).
 * Everything else passes to tc ingress untouched, which finishes it: replies of translated
 * flows, rejects (their answer is built there), packets for this node itself, unresolved next
 * hops (tc's bpf_redirect_neigh resolves them), fragments, IP options, other protocols. A new
 * flow's entries are made before the FIB says no, so tc finds the flow known and translates it
 * the same way. */
SEC("xdp")
int np_xdp(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > end) return XDP_PASS;
  struct np_pkt p = {};
  __u16* ports;
  if (eth->h_proto == bpf_htons(NP_ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    if ((void*)(ip + 1) > end || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
      return XDP_PASS;
    p.family = NP_FAMILY_V4;
    p.proto = ip->protocol;
    __builtin_memcpy(p.saddr, &ip->saddr, 4);
    __builtin_memcpy(p.daddr, &ip->daddr, 4);
    ports = (void*)(ip + 1);
  } else if (eth->h_proto == bpf_htons(NP_ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    if ((void*)(ip6 + 1) > end) return XDP_PASS;
    p.family = NP_FAMILY_V6;
    p.proto = ip6->nexthdr;
    __builtin_memcpy(p.saddr, &ip6->saddr, 16);
    __builtin_memcpy(p.daddr, &ip6->daddr, 16);
    ports = (void*)(ip6 + 1);
  } else {
    return XDP_PASS;
  }
  if (p.proto != NP_IPPROTO_TCP && p.proto != NP_IPPROTO_UDP) return XDP_PASS;
  if ((void*)(ports + 4) > end) return XDP_PASS; /* the UDP header, or a TCP header's start */
  p.sport = ports[0];
  p.dport = ports[1];

  struct np_rnat_key rk = {};
  __builtin_memcpy(rk.backend, p.saddr, 16);
  __builtin_memcpy(rk.dst, p.daddr, 16);
  rk.bport = p.sport;
  rk.dport = p.dport;
  rk.proto = p.proto;
  rk.family = p.family;
  if (np_may_be_reply(&p) && bpf_map_lookup_elem(&np_rnat, &rk)) return XDP_PASS; /* tc's */

  struct np_ct_value cv;
  const int d = np_decide(&p, 0, &cv);
  if (d == NP_D_DROP) return XDP_DROP;
  if (d != NP_D_NAT) return XDP_PASS;
  /* A DSR flow's packet that carries the frontend (UDP, a TCP SYN) gets its option at tc;
   * the rest of the flow is DNATed here. */
  if ((cv.flags & NP_F_DSR) && !cv.snat_port) {
    if (p.proto == NP_IPPROTO_UDP) return XDP_PASS;
    const __u8* tcp = (const __u8*)ports;
    if ((void*)(tcp + 14) > end || (tcp[13] & 0x12) == 0x02) return XDP_PASS;
  }
  __u8 nsaddr[16];
  __builtin_memcpy(nsaddr, p.saddr, 16);
  __u16 nport[2] = {p.sport, cv.backend.port};
  if (cv.snat_port) {
    __u32 slot = p.family == NP_FAMILY_V4 ? 0 : 1;
    struct np_snat* snat = bpf_map_lookup_elem(&np_snat, &slot);
    if (!snat) return XDP_DROP;
    __builtin_memcpy(nsaddr, snat->addr, 16);
    nport[0] = cv.snat_port;
  }
  __be32 nports;
  __builtin_memcpy(&nports, nport, 4);
  if (p.family == NP_FAMILY_V4) return np_xdp_nat4(ctx, &p, nsaddr, cv.backend.addr, nports);
  return np_xdp_nat6(ctx, &p, nsaddr, cv.backend.addr, nports);
}

char LICENSE[] SEC("license") = "GPL";
