#!/usr/bin/env python3
"""Prints the BPF programs attached to the interfaces of the network namespace it runs in, one
per line: "HOOK DEVICE PROGRAM" (HOOK: xdp, tc_ingress / tc_egress for netlink tc filters,
tcx_ingress / tcx_egress). bpftool 7.1 (Debian 12) lists XDP and tc filters but not tcx (Linux
6.6), so tcx is asked of the kernel directly (BPF_PROG_QUERY on the interface)."""

import ctypes
import json
import socket
import struct
import subprocess

SYS_BPF = 321  # x86_64
BPF_PROG_QUERY = 16
TCX = {"tcx_ingress": 46, "tcx_egress": 47}  # enum bpf_attach_type


def prog_name(prog_id):
    p = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)],
                       capture_output=True, text=True)
    try:
        return json.loads(p.stdout).get("name", "?")
    except ValueError:
        return "?"


def tcx_programs(ifindex, attach_type):
    libc = ctypes.CDLL(None, use_errno=True)
    ids = (ctypes.c_uint32 * 16)()
    # union bpf_attr.query: target_ifindex, attach_type, query_flags, attach_flags, prog_ids,
    # prog_cnt, (pad), prog_attach_flags, link_ids, link_attach_flags, revision
    attr = ctypes.create_string_buffer(
        struct.pack("<IIIIQII", ifindex, attach_type, 0, 0, ctypes.addressof(ids), 16, 0), 128)
    if libc.syscall(SYS_BPF, BPF_PROG_QUERY, attr, 128) != 0:
        return []  # no tcx on this kernel
    count = struct.unpack_from("<I", attr.raw, 24)[0]
    return list(ids[:count])


def main():
    out = []
    net = json.loads(subprocess.run(["bpftool", "-j", "net", "show"], capture_output=True,
                                    text=True, check=True).stdout or "[{}]")[0]
    for x in net.get("xdp", []):
        out.append("xdp %s %s" % (x.get("devname"), prog_name(x.get("id"))))
    for t in net.get("tc", []):
        hook = "tc_" + t.get("kind", "?").split("/")[-1]
        out.append("%s %s %s" % (hook, t.get("devname"), t.get("name")))
    for ifindex, dev in socket.if_nameindex():
        for hook, attach_type in TCX.items():
            for prog_id in tcx_programs(ifindex, attach_type):
                out.append("%s %s %s" % (hook, dev, prog_name(prog_id)))
    print("\n".join(sorted(out)))


if __name__ == "__main__":
    main()
