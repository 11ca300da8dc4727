/* Shared by bpf/xdp_traffic.bpf.c and bench/xdp_traffic.cpp: the packet-rate bench's generator
 * and sink settings (globals of the BPF object, written through the skeleton) and map layouts. */
#pragma once

#define XT_HDR_LEN 64        /* bytes the generator writes at the start of every frame */
#define XT_STAMP_OFF 42      /* Ethernet + IPv4 (no options) + UDP: the send time, 8 bytes */
#define XT_HIST_BUCKETS 4096 /* latency histogram: 100 ns buckets, the last one open-ended */
#define XT_HIST_NS 100

enum xt_counter { XT_DELIVERED = 0, XT_OTHER = 1, XT_COUNTERS = 2 };

struct xt_gen_config {
  unsigned char hdr[XT_HDR_LEN]; /* Ethernet + IPv4 + UDP template, UDP checksum 0 */
  unsigned int flows;            /* flow of a frame = frame number % flows */
  unsigned int ports;            /* destination port = dport_base + flow % ports */
  unsigned short dport_base;     /* host byte order */
  unsigned short sport_base;     /* source port = sport_base + flow / ports */
  unsigned long long gap_ns;     /* 0: as fast as the core goes; else one frame per gap_ns */
};

struct xt_sink_config {
  unsigned int net, mask;  /* delivered: destination address in net/mask (network order) */
  unsigned short port;     /* and this destination port (network order; 0: any) */
  unsigned short pad;
};
