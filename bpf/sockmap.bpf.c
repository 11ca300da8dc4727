// SPDX-License-Identifier: GPL-2.0
/* The sockmap shortcut (--sockmap-shortcut): when both ends of a TCP connection are sockets on
 * this node, in the cgroup the programs are attached to, a send on one end is handed straight
 * to the other end's receive queue (bpf_msg_redirect_hash with BPF_F_INGRESS), so the payload
 * skips the TCP/IP stack (no segments, no loopback or veth, no netfilter). The handshake, the
 * FIN and the RST still take the stack.
 *
 * Correctness rules, all enforced here:
 * - A socket redirects only to the socket at the other end of its own connection: the sockhash
 *   key carries both initial sequence numbers besides the 4-tuple, so a socket with the same
 *   addresses in another network namespace, or on another node, never matches.
 * - A socket redirects only when the peer is in the sockhash (the lookup in
 *   bpf_msg_redirect_hash fails otherwise and the bytes take the stack).
 * - Bytes of one direction never mix the two paths: a socket whose payload took the stack once
 *   keeps using it (SP_SOCK_STACK), since redirected bytes are read before whatever waits in the
 *   peer's receive queue and would overtake it; a socket that redirected keeps redirecting.
 *   Sockets that carried payload before they were established (TCP Fast Open) are left out.
 * - Sockets leave the sockhash when they close (the kernel unlinks them); their state, socket-
 *   local storage, goes with them. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sockmap_maps.h"

#define SP_AF_INET 2
#define SP_AF_INET6 10

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, struct sp_sock_key);
  __type(value, __u64);
} sp_sockhash SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct sp_sock_state);
} sp_sock_state SEC(".maps");

/* Client ends established in the cgroup, keyed like the sockhash: the server end (established
 * after its client, which got the SYN-ACK first) joins the sockhash only when its client is
 * here, so a server answering remote or unhooked clients never pays for the shortcut's send
 * path. Each entry is consumed by its server end; those of clients whose server is elsewhere
 * age out of the LRU. (A sockhash lookup from sockops would return a socket reference that
 * sockops programs cannot release.) */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sp_sock_key);
  __type(value, __u64);
} sp_sock_active SEC(".maps");

/* Counters for tests and the bench; this run's alone (not pinned). */
__u64 sp_sm_inserted = 0;   /* sockets put into the sockhash */
__u64 sp_sm_redirects = 0;  /* sends handed to the peer socket */
__u64 sp_sm_bytes = 0;      /* their bytes */
__u64 sp_sm_stack = 0;      /* sockets whose first send found no peer: stack for good */
__u64 sp_sm_skipped = 0;    /* established sockets left out (payload before established) */

static __always_inline void mapped4(__u32 out[4], __u32 ip4) {
  out[0] = 0;
  out[1] = 0;
  out[2] = bpf_htonl(0xffff);
  out[3] = ip4;
}

/* Fills key (this socket) and peer (the other end) from a sock_ops context. */
static __always_inline int keys_of(struct bpf_sock_ops *ctx, struct sp_sock_key *key,
                                   struct sp_sock_key *peer) {
  if (ctx->family == SP_AF_INET) {
    mapped4(key->local_ip, ctx->local_ip4);
    mapped4(key->remote_ip, ctx->remote_ip4);
  } else if (ctx->family == SP_AF_INET6) {
    key->local_ip[0] = ctx->local_ip6[0];
    key->local_ip[1] = ctx->local_ip6[1];
    key->local_ip[2] = ctx->local_ip6[2];
    key->local_ip[3] = ctx->local_ip6[3];
    key->remote_ip[0] = ctx->remote_ip6[0];
    key->remote_ip[1] = ctx->remote_ip6[1];
    key->remote_ip[2] = ctx->remote_ip6[2];
    key->remote_ip[3] = ctx->remote_ip6[3];
  } else {
    return -1;
  }
  key->local_port = (__u16)ctx->local_port;            /* host order already */
  key->remote_port = (__u16)bpf_ntohl(ctx->remote_port); /* network order, in the top half */
  /* Nothing but the SYNs has been exchanged (checked by the caller): snd_nxt is this side's
   * ISN + 1, rcv_nxt the peer's. */
  key->own_seq = ctx->snd_nxt;
  key->peer_seq = ctx->rcv_nxt;
  key->pad = 0;
  __builtin_memcpy(peer->local_ip, key->remote_ip, sizeof(peer->local_ip));
  __builtin_memcpy(peer->remote_ip, key->local_ip, sizeof(peer->remote_ip));
  peer->local_port = key->remote_port;
  peer->remote_port = key->local_port;
  peer->own_seq = key->peer_seq;
  peer->peer_seq = key->own_seq;
  peer->pad = 0;
  return 0;
}

SEC("sockops")
int sp_sockops(struct bpf_sock_ops *ctx) {
  const __u32 op = ctx->op;
  if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
    return 1;
  }
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 1;
  if (ctx->data_segs_in || ctx->data_segs_out) {
    /* Payload before the connection was established (Fast Open): some of it may wait
     * unread in a receive queue, which redirected bytes would overtake. */
    __sync_fetch_and_add(&sp_sm_skipped, 1);
    return 1;
  }
  struct sp_sock_key key = {}, peer = {};
  if (keys_of(ctx, &key, &peer) != 0) return 1;
  if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
    /* No client end here: it is remote or outside the cgroup. */
    if (!bpf_map_lookup_elem(&sp_sock_active, &peer)) return 1;
    bpf_map_delete_elem(&sp_sock_active, &peer);
  }
  struct sp_sock_state *st =
      bpf_sk_storage_get(&sp_sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!st) return 1;
  st->peer = peer;
  st->mode = SP_SOCK_FRESH;
  /* BPF_NOEXIST: another socket holding this key (it cannot be this connection) keeps it. */
  if (bpf_sock_hash_update(ctx, &sp_sockhash, &key, BPF_NOEXIST) != 0) {
    st->mode = SP_SOCK_STACK;
    return 1;
  }
  __sync_fetch_and_add(&sp_sm_inserted, 1);
  if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
    __u64 cookie = bpf_get_socket_cookie(ctx);
    bpf_map_update_elem(&sp_sock_active, &key, &cookie, BPF_ANY);
  }
  return 1;
}

SEC("sk_msg")
int sp_sk_msg(struct sk_msg_md *msg) {
  struct bpf_sock *sk = msg->sk;
  if (!sk) return SK_PASS;
  struct sp_sock_state *st = bpf_sk_storage_get(&sp_sock_state, sk, 0, 0);
  if (!st || st->mode == SP_SOCK_STACK) return SK_PASS;
  const __u32 size = msg->size;
  /* SK_PASS with a redirect target set hands the bytes to the peer; when the peer is not in
   * the sockhash nothing is set and SK_PASS sends them through the stack. */
  if (bpf_msg_redirect_hash(msg, &sp_sockhash, &st->peer, BPF_F_INGRESS) == SK_PASS) {
    st->mode = SP_SOCK_REDIRECT;
    __sync_fetch_and_add(&sp_sm_redirects, 1);
    __sync_fetch_and_add(&sp_sm_bytes, size);
    return SK_PASS;
  }
  if (st->mode == SP_SOCK_FRESH) {
    /* The peer is not there (yet): this direction uses the stack from now on. */
    st->mode = SP_SOCK_STACK;
    __sync_fetch_and_add(&sp_sm_stack, 1);
  }
  /* SP_SOCK_REDIRECT and the peer gone: it closed (sockets leave the sockhash only then), so
   * the stack answers as it does for any send to a closed socket. */
  return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
