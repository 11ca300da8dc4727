/* The map layout shared by the packet-path load balancer (nodeport_lb.bpf.c) and its userspace
 * writer (backends/ebpf/nodeport_*). Every struct is padded explicitly: the kernel compares keys
 * bytewise. Addresses are 16 bytes in network order (IPv4 in the first 4, the rest zero); ports
 * are in network order unless said otherwise. */
#ifndef SLICEPROXY_NODEPORT_LB_MAPS_H
#define SLICEPROXY_NODEPORT_LB_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define NP_FAMILY_V4 4
#define NP_FAMILY_V6 6

/* A frontend reached from outside the node: a node address and NodePort, an externalIP or a
 * LoadBalancer ingress address, with the service port. */
struct np_fe_key {
  __u8 addr[16];
  __u16 port;
  __u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 family;
};

/* What userspace decided for the frontend (traffic policy, topology, terminating fallback are
 * all resolved by the proxier: the program only follows these). */
struct np_frontend {
  __u32 table_id;  /* key of the frontend's Maglev table in np_maglev */
  __u32 size;      /* entries in that table (a prime); 0: no backends, see flags */
  __u32 flags;     /* NP_F_* */
  __u32 ranges_id; /* with NP_F_SOURCE_RANGES: whose entries in np_src_ranges admit a client */
  __u32 svc_id;    /* the frontends of one service port reached alike: ClientIP affinity scope */
  __u32 affinity_timeout; /* seconds; 0: no ClientIP affinity */
};

/* ClientIP affinity (LRU): a client's new flows to the service go to the backend it last got
 * while that is younger than the timeout and still in the service. */
struct np_aff_key {
  __u8 client[16];
  __u32 svc_id;
  __u8 family;
  __u8 pad[3];
};

struct np_aff_value {
  __u64 last_ns; /* bpf_ktime_get_ns() of the client's last new flow */
  __u32 backend_id;
  __u32 pad;
};

/* externalTrafficPolicy Cluster: the client's address is replaced with the node's (np_snat)
 * so the reply comes back through this node for the reverse translation. */
#define NP_F_SNAT 1u
/* No endpoints and kube-proxy rejects: TCP gets a RST, UDP an ICMP port unreachable, both
 * generated here and sent back out of the interface the packet came in on. */
#define NP_F_REJECT 2u
/* kube-proxy drops (eTP Local without a local endpoint while others exist): dropped here. */
#define NP_F_DROP 4u
/* A LoadBalancer address with loadBalancerSourceRanges: a new flow from a client outside them
 * is dropped before any translation. */
#define NP_F_SOURCE_RANGES 8u
/* Direct server return (--enable-dsr), with NP_F_SNAT: a flow that enters the node from outside
 * is DNATed only, the client's address kept, and its frontend travels to the backend's node in
 * an IP option (below), where sliceproxy's np_ingress records it, so the backend's replies leave
 * that node with the frontend as their source, straight to the client. The node's own flows
 * (np_egress) are still SNATed: a reply to the node's address from another node's pod, with
 * this node's address as its source, would be martian here. */
#define NP_F_DSR 16u
/* A ClusterIP reached from a pod of this node (np_local_pod): the socket programs leave a pod's
 * flows to its own service to the packet path (sp_hairpin), which keeps the pod's address as
 * kube-proxy keeps it for pod-to-ClusterIP traffic, unless the flow lands on the pod itself:
 * that one is SNATed (kube-proxy's hairpin masquerade) whatever the flags, or the pod would
 * answer itself directly. Not set with --masquerade-all (every pod is SNATed). */
#define NP_F_POD_KEEPS_SOURCE 32u

/* The DSR option. IPv4: type 158 (copied, class 0, number 30: RFC 4727's experiment value),
 * length 8: the frontend's port, then its address. IPv6: a Destination Options header of 24
 * bytes: option type 0x1e (RFC 4727's experiment value; its top bits 00 tell a node that does not
 * know it to skip it), length 18: port, address, then a PadN option of 2 bytes. TCP carries it on
 * the SYN only (a full-size segment has no room for it), UDP on every datagram. */
#define NP_DSR_OPT4_TYPE 0x9e
#define NP_DSR_OPT4_LEN 8
#define NP_DSR_OPT6_TYPE 0x1e
#define NP_DSR_OPT6_LEN 18
#define NP_DSR_HDR6_LEN 24

/* np_src_ranges, an LPM trie: (ranges_id, family, client prefix). prefixlen counts the bits of
 * everything after it: 64 for ranges_id and family, then the CIDR's prefix length. */
struct np_range_key {
  __u32 prefixlen;
  __u32 ranges_id;
  __u8 family;
  __u8 pad[3];
  __u8 addr[16];
};
#define NP_RANGE_FIXED_BITS 64
/* Ranges id 0 is no service's: this node's pods, as its pod CIDRs (the Node's spec.podCIDRs,
 * with --enable-dsr) and as the addresses of the pods' network namespaces that userspace found
 * (host prefixes, for NP_F_POD_KEEPS_SOURCE, also where the Node has no podCIDRs). A pod's flows
 * to a DSR frontend are SNATed all the same: the backend's node would answer it with the
 * frontend as source, which is this node's own address for a NodePort, and martian when it
 * arrives back here. */
#define NP_RANGES_LOCAL_PODS 0u

/* np_live: which backend ids are live, for the check every packet of an established UDP flow
 * makes (its backend left: balanced again). An array indexed by id % NP_LIVE_SLOTS holding the
 * id while it is live, 0 after: ids are handed out in sequence, skipping a slot a live id still
 * holds, so the live ones are a dense run of slots and the check is one cached load, where a
 * lookup in np_backends was a random bucket of a table of megabytes (at 10,000 services, 30,000
 * backends, 530 of the 680 ns a packet cost at XDP). Written by userspace through mmap. */
#define NP_LIVE_SLOTS (1u << 20)

/* np_backends: id -> backend. Ids belong to one frontend's table (the same endpoint in two
 * services has two ids) and are never reused while the writer lives, so a missing id means the
 * backend left that frontend. */
struct np_backend {
  __u8 addr[16];
  __u16 port;
  __u8 family;
  __u8 pad;
};

/* The connection-tracking entry of a flow from outside: established flows keep their backend
 * (and SNAT port) whatever happens to the Maglev table. */
struct np_ct_key {
  __u8 client[16];
  __u8 vip[16];
  __u16 cport;
  __u16 vport;
  __u8 proto;
  __u8 family;
  __u8 pad[2];
};

struct np_ct_value {
  struct np_backend backend;
  __u16 snat_port; /* network order; 0: not SNATed */
  __u16 pad;
  __u32 flags;
  __u32 backend_id; /* its np_backends entry: gone once the backend left the frontend */
};

/* The reverse translation, keyed as the reply arrives: from the backend to the SNAT address
 * and port (eTP Cluster, at ingress) or to the client itself (DNAT only, at egress). */
/* A Maglev table's element: two entries (backend ids in np_backends). An array lays its
 * elements out 8 bytes apart, so a 4-byte value would leave half of every table's memory unused
 * (10,000 ports at the default size held 1.3 GB). Entry i is id[i % 2] of element i / 2. */
struct np_maglev_pair {
  __u32 id[2];
};

struct np_rnat_key {
  __u8 backend[16];
  __u8 dst[16]; /* the SNAT address, or the client */
  __u16 bport;
  __u16 dport; /* the SNAT port, or the client's port */
  __u8 proto;
  __u8 family;
  __u8 pad[2];
};

struct np_rnat_value {
  __u8 client[16];
  __u8 vip[16];
  __u16 cport;
  __u16 vport;
};

/* np_snat[0] for IPv4, [1] for IPv6: the address SNATed flows leave with (the node address or
 * --snat-address) and the port range they get, in host order, outside the kernel's ephemeral
 * range so local sockets never collide with them. addr all zero: no SNAT for that family. */
struct np_snat {
  __u8 addr[16];
  __u16 port_min;
  __u16 port_max;
};

#define NP_SNAT_PORT_TRIES 8

/* np_local: this node's own addresses (key: 16 bytes + family + pad; value unused). A
 * translated packet for one of them is handed to the loopback's ingress: delivered on any other
 * interface, its source (the node itself, or a frontend on it) would be martian. */
struct np_local_key {
  __u8 addr[16];
  __u8 family;
  __u8 pad[3];
};

#endif
