// SPDX-License-Identifier: GPL-2.0
/* Traffic for the packet-rate bench (bench/xdp_traffic.cpp, issue 16), both ends in XDP.
 *
 * xt_gen runs through BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES): every
 * run writes a whole UDP frame from the template and returns XDP_TX, which the kernel turns into
 * a transmission out of the veth given as the ingress interface, so the frame reaches the node
 * under test as if a NIC had received it. Live frames come from a page pool and are recycled
 * after the node rewrote them (NAT), so nothing of a previous run may be trusted: the template
 * is copied whole each time. The flow number spreads frames over flows and destination ports;
 * the send time goes into the payload.
 *
 * xt_sink runs natively on the far end's veth: it counts frames addressed to the expected
 * backends (translated) apart from any other, records send-to-sink latency, and drops. */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "xdp_traffic_shared.h"

struct xt_gen_config xt_gen_cfg = {};
struct xt_sink_config xt_sink_cfg = {};
/* Frames generated; one generator thread at a time. */
__u64 xt_sent = 0;
/* Paced mode: when the next frame is due. */
__u64 xt_next_ns = 0;

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, XT_COUNTERS);
  __type(key, __u32);
  __type(value, __u64);
} xt_counts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, XT_HIST_BUCKETS);
  __type(key, __u32);
  __type(value, __u64);
} xt_hist SEC(".maps");

static long xt_wait(__u32 i, void* due) {
  return bpf_ktime_get_ns() >= *(__u64*)due ? 1 : 0;
}

/* A fixed rate: a test run cannot sleep, so the generator spins until the frame is due. With a
 * batch of one frame the node forwards each frame (softirq at the batch's end) before the next
 * one is made, so a frame's latency is the node's alone, never a queue behind its own batch. */
static __always_inline void xt_pace(void) {
  const __u64 gap = xt_gen_cfg.gap_ns;
  if (!gap) return;
  __u64 now = bpf_ktime_get_ns();
  __u64 due = xt_next_ns;
  /* First frame, or far behind (the node took longer than many gaps): no burst to catch up. */
  if (due == 0 || now > due + 64 * gap) due = now;
  if (now < due) bpf_loop(1 << 22, xt_wait, &due, 0);
  xt_next_ns = due + gap;
}

SEC("xdp")
int xt_gen(struct xdp_md* ctx) {
  xt_pace();
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  if (data + XT_HDR_LEN > end) return XDP_ABORTED;
  __builtin_memcpy(data, xt_gen_cfg.hdr, XT_HDR_LEN);
  const __u32 flows = xt_gen_cfg.flows ? xt_gen_cfg.flows : 1;
  const __u32 ports = xt_gen_cfg.ports ? xt_gen_cfg.ports : 1;
  const __u32 flow = (__u32)(xt_sent++ % flows);
  struct udphdr* udp = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
  udp->source = bpf_htons((__u16)(xt_gen_cfg.sport_base + flow / ports));
  udp->dest = bpf_htons((__u16)(xt_gen_cfg.dport_base + flow % ports));
  *(__u64*)(data + XT_STAMP_OFF) = bpf_ktime_get_ns();
  return XDP_TX;
}

static __always_inline void xt_count(__u32 which) {
  __u64* c = bpf_map_lookup_elem(&xt_counts, &which);
  if (c) *c += 1;
}

SEC("xdp")
int xt_sink(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  if (data + XT_STAMP_OFF + sizeof(__u64) > end) {
    xt_count(XT_OTHER);
    return XDP_DROP;
  }
  struct ethhdr* eth = data;
  struct iphdr* ip = data + sizeof(*eth);
  struct udphdr* udp = (void*)(ip + 1);
  if (eth->h_proto != bpf_htons(0x0800 /* IPv4 */) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
      (ip->daddr & xt_sink_cfg.mask) != xt_sink_cfg.net ||
      (xt_sink_cfg.port && udp->dest != xt_sink_cfg.port)) {
    xt_count(XT_OTHER);
    return XDP_DROP;
  }
  xt_count(XT_DELIVERED);
  const __u64 sent = *(__u64*)(data + XT_STAMP_OFF);
  const __u64 now = bpf_ktime_get_ns();
  __u32 bucket = now > sent ? (__u32)((now - sent) / XT_HIST_NS) : 0;
  if (bucket >= XT_HIST_BUCKETS) bucket = XT_HIST_BUCKETS - 1;
  __u64* h = bpf_map_lookup_elem(&xt_hist, &bucket);
  if (h) *h += 1;
  return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
