/* SPDX-License-Identifier: GPL-2.0 */
/* The sockmap shortcut's map layouts, shared by bpf/sockmap.bpf.c and the loader. */
#pragma once

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* A TCP connection end, as its own socket sees it. Addresses are IPv6 or IPv4-mapped IPv6
 * (network order), so an AF_INET6 socket talking IPv4 and its AF_INET peer build the same key;
 * ports are in host order. own_seq and peer_seq are the first sequence numbers after the two
 * SYNs (each side's ISN + 1): they tell this connection from another one with the same
 * addresses in another network namespace (two pods both on 127.0.0.1, say), which the
 * 4-tuple alone cannot. The peer's key is this one with both sides swapped. */
struct sp_sock_key {
  __u32 local_ip[4];
  __u32 remote_ip[4];
  __u16 local_port;
  __u16 remote_port;
  __u32 own_seq;
  __u32 peer_seq;
  __u32 pad;
};

/* What one socket may do with its sends (socket-local storage, freed with the socket). */
enum sp_sock_mode {
  /* In the sockhash, nothing sent yet: the next send redirects if the peer is there too. */
  SP_SOCK_FRESH = 1,
  /* Its sends go to the peer's socket: they must keep going there, never through the stack. */
  SP_SOCK_REDIRECT = 2,
  /* Its payload took the TCP/IP stack once: it must keep doing so, or later bytes redirected
   * into the peer would overtake earlier ones still in the peer's receive queue. */
  SP_SOCK_STACK = 3,
};

struct sp_sock_state {
  struct sp_sock_key peer;
  __u32 mode;
  __u32 pad;
};
