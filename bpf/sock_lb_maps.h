/* The map layout shared by the socket load-balancing programs (sock_lb.bpf.c) and their
 * userspace writer (backends/ebpf/). One header so both sides agree on every byte; every
 * struct is padded explicitly because the kernel compares keys bytewise. */
#ifndef SLICEPROXY_SOCK_LB_MAPS_H
#define SLICEPROXY_SOCK_LB_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
/* Backends that just left a service, for the stale-socket iterators: sockets this program
 * pointed at one of them are destroyed. Filled by userspace before it runs the iterators and
 * emptied after. Value unused. */
#define SP_DESTROY_MAX 4096

#endif

/* Addresses are 16 bytes in network order; IPv4 uses the first 4 and leaves the rest zero.
 * Ports are in network order. */
#define SP_FAMILY_V4 4
#define SP_FAMILY_V6 6

/* A service frontend: one (address, port, protocol) a client may dial. */
struct sp_svc_key {
  __u8 addr[16];
  __u16 port;
  __u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 family;
};

/* What a frontend leads to. A frontend's entry is the commit point of every change: the slots
 * it exposes (set_id, gen, 0..count-1) are always written before it. */
struct sp_svc_value {
  __u32 set_id;           /* which slot set serves this frontend */
  __u32 count;            /* backends in slots 0..count-1 of generation gen; 0: reject */
  __u32 gen;              /* 0 or 1: which of the set's two slot ranges is live */
  __u32 affinity_timeout; /* seconds; 0: no session affinity */
  __u32 flags;            /* SP_SVC_F_* */
};

/* A frontend whose traffic the proxier rejects even though it knows the service: connect()
 * and sendmsg() fail with ECONNREFUSED. Set whenever count is 0. */
#define SP_SVC_F_REJECT 1u

/* A frontend the proxier drops (iTP=Local with endpoints on other nodes only): the socket is
 * left untranslated, so its packets get no answer, as kube-proxy's drop; the entry is there so
 * the ClusterIP's catch-all entry does not reject it instead. */
#define SP_SVC_F_PASS 2u

/* Some pods of this node are backends of this frontend's port (sp_hairpin names them): a
 * socket in one of them is left untranslated, so the packet path picks its backend and
 * masquerades it when it lands on itself (kube-proxy's hairpin). Set on ClusterIP frontends
 * only, and only while such pods exist: every other socket pays no lookup for it. */
#define SP_SVC_F_HAIRPIN 4u

/* A ClusterIP's catch-all entry, keyed with port 0 and proto 0: a port the service does not
 * define is rejected, as kube-proxy does. Looked up only when the exact frontend is missing. */
#define SP_SVC_ANY_PORT 0

/* Slot keys carry the generation in the top bit of the index. */
#define SP_SLOT_GEN_BIT 0x80000000u

struct sp_slot_key {
  __u32 set_id;
  __u32 index; /* slot | (gen ? SP_SLOT_GEN_BIT : 0) */
};

struct sp_backend {
  __u8 addr[16];
  __u16 port;
  __u8 family;
  __u8 pad;
};

/* Where a backend sits in a set's generation, so a client's remembered backend is found again
 * after other endpoints came or went (and moved it to another slot). */
struct sp_member_key {
  __u32 set_id;
  __u32 gen;
  struct sp_backend backend;
};

/* ClientIP affinity: the client is the socket's network namespace (a pod, or the host), since
 * at connect() time the source address is not chosen yet. */
struct sp_affinity_key {
  __u64 client; /* netns cookie */
  __u32 set_id;
  __u32 pad;
};

struct sp_affinity_value {
  struct sp_backend backend;
  __u32 pad;
  __u64 last_ns; /* bpf_ktime_get_ns() of the last use */
};

/* (network namespace, port) for each pod of this node that is a backend of the port: the
 * port is its cluster-wide set id (odd; the node-local set is the next id). */
struct sp_hairpin_key {
  __u64 netns; /* netns cookie */
  __u32 set_id;
  __u32 pad;
};

/* Reverse translation for recvmsg and getpeername: which frontend a socket dialled, and the
 * backend it was translated to. A table of buckets of SP_REV_WAYS entries, the bucket chosen by
 * the socket cookie: the kernel hands cookies out in sequence (per CPU), so sockets created one
 * after another use neighbouring buckets and the table is walked, not hit at random (a random
 * entry of a 25 MB table was a TLB and cache miss that cost most of what connect and sendmsg
 * did). A socket sending again to a frontend keeps its backend while that backend still holds
 * its slot (as conntrack keeps a 5-tuple on one endpoint), so a socket needs one entry per
 * frontend it talks to; past SP_REV_WAYS frontends one of its entries is reused. A bucket passes
 * to the socket created 2^SP_REV_BUCKET_BITS cookies later, as an LRU map drops its oldest. */
#define SP_REV_WAYS 4
#define SP_REV_BUCKET_BITS 17
#define SP_REV_SLOTS (SP_REV_WAYS << SP_REV_BUCKET_BITS)

struct sp_rev_entry {
  __u64 cookie; /* socket cookie; 0 while the entry is being written */
  struct sp_backend backend;
  struct sp_backend frontend;
  __u32 slot; /* the backend's slot when it was picked, to check it still is */
  __u32 pad;
};

/* Backends that just left a service, for the stale-socket iterators: sockets this program
 * pointed at one of them are destroyed. Filled by userspace before it runs the iterators and
 * emptied after. Value unused. */
#define SP_DESTROY_MAX 4096

#endif
