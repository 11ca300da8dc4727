"""NodePort forwarding rate (issue 16): packets per second one core forwards through the node,
and latency at a fixed rate, for the nftables backend, the eBPF backend at tc and at XDP, and
two floors.

Three namespaces per case: a generator, the node (where sliceproxy runs) and a backend side
whose veth runs an XDP sink that counts and drops. bench_xdp_traffic (bench/xdp_traffic.cpp)
generates UDP frames in XDP live-frames mode: they arrive at the node's veth as received
traffic, so the node's XDP program sees them before an skb exists, and without one the stack
(nftables, tc) takes them as from a NIC. Every packet goes to a NodePort of the node (N
services, NodePorts 20000.., three endpoints each, eTP Cluster: DNAT and SNAT), 10,000 flows
spread over the services. The generator runs pinned to one CPU and the node's receive
processing runs in the softirq it raises there, so a rate is one core's: generating, forwarding
and counting.

Floors, measured in the same run:
  generator          the sink on the node's own veth: what the generator and the veth cost alone
                     (no forwarding); every other rate is bounded by it.
  kernel-forwarding  plain IP forwarding to an endpoint address, no rules (the skb path's floor:
                     what the stack costs before nftables or tc add anything).

Addresses: generator 198.18.4.2, node 198.18.4.1 / 198.18.5.1, backend side 198.18.5.2,
endpoints 198.19.128.0/17 routed there (a permanent neighbour: the sink answers no ARP)."""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane  # noqa: E402
from netns import sh  # noqa: E402

GEN, NODE_GEN, NODE_BE, BE = "198.18.4.2", "198.18.4.1", "198.18.5.1", "198.18.5.2"
ENDPOINT_NET = "198.19.128.0/17"
NODEPORT_BASE, TARGET_PORT, SPORT_BASE = 20000, 8080, 10000
FLOWS = 10000

FLOORS = ["generator", "kernel-forwarding"]
SLICEPROXY = ["sliceproxy-nftables", "sliceproxy-ebpf-tc", "sliceproxy-ebpf-xdp"]


def systems(backends):
    return FLOORS + [s for s in SLICEPROXY
                     if s.split("-")[1] in backends]


def endpoint(n):
    """The n-th endpoint address (n from 1) in 198.19.128.0/17."""
    return f"198.19.{128 + (n >> 8)}.{n & 255}"


def manifests(count, path):
    """`count` UDP NodePort services, three endpoints each, on node-b (no local endpoint)."""
    items = [{"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": "node-a"},
              "status": {"addresses": [{"type": "InternalIP", "address": NODE_GEN}]}}]
    for i in range(count):
        name = f"pps-{i:05}"
        items.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"type": "NodePort", "clusterIP": f"198.19.{i >> 8}.{i & 255}",
                     "clusterIPs": [f"198.19.{i >> 8}.{i & 255}"],
                     "externalTrafficPolicy": "Cluster",
                     "ports": [{"name": "dns", "protocol": "UDP", "port": 53,
                                "targetPort": TARGET_PORT, "nodePort": NODEPORT_BASE + i}]}})
        items.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x", "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [endpoint(3 * i + k + 1)], "conditions": {"ready": True},
                           "nodeName": "node-b"} for k in range(3)],
            "ports": [{"name": "dns", "protocol": "UDP", "port": TARGET_PORT}]})
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "cluster.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)


def mac(ns, dev):
    out = sh("ip", "-n", ns, "-o", "link", "show", dev, capture=True).stdout
    m = re.search(r"link/ether ([0-9a-f:]{17})", out)
    if not m:
        raise RuntimeError(f"no MAC address for {dev} in {ns}")
    return m.group(1)


class Topology:
    def __init__(self, run, tag):
        self.run = run
        self.gen = run.netns(f"{tag}-gen")
        self.node = run.netns(f"{tag}-node")
        self.be = run.netns(f"{tag}-be")
        ip = lambda *a: sh("ip", *a)  # noqa: E731
        ip("-n", self.node, "link", "add", "to-gen", "type", "veth", "peer", "name", "eth0",
           "netns", self.gen)
        ip("-n", self.node, "link", "add", "to-be", "type", "veth", "peer", "name", "eth0",
           "netns", self.be)
        ip("-n", self.node, "addr", "add", f"{NODE_GEN}/24", "dev", "to-gen")
        ip("-n", self.node, "addr", "add", f"{NODE_BE}/24", "dev", "to-be")
        ip("-n", self.gen, "addr", "add", f"{GEN}/24", "dev", "eth0")
        ip("-n", self.be, "addr", "add", f"{BE}/24", "dev", "eth0")
        for ns, dev in ((self.node, "to-gen"), (self.node, "to-be"), (self.gen, "eth0"),
                        (self.be, "eth0")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", self.node, "route", "add", ENDPOINT_NET, "via", BE, "dev", "to-be")
        ip("-n", self.node, "neigh", "replace", BE, "lladdr", mac(self.be, "eth0"), "dev",
           "to-be", "nud", "permanent")
        ip("-n", self.node, "neigh", "replace", GEN, "lladdr", mac(self.gen, "eth0"), "dev",
           "to-gen", "nud", "permanent")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        self.node_mac = mac(self.node, "to-gen")

    def close(self):
        for ns in (self.gen, self.node, self.be):
            self.run.delete(ns)


class Case:
    """One system with `count` services on its own three namespaces."""

    def __init__(self, system, count, run, bins, workdir, ebpf=None):
        self.system, self.count, self.run, self.bins = system, count, run, bins
        self.daemon = self.cgroup = self.pin = None
        self.ebpf = ebpf
        self.topo = Topology(run, f"p{system[0]}{system[-1]}{count}")
        self.setup_s = 0.0
        casedir = os.path.join(workdir, f"pps-{system}-{count}")
        os.makedirs(casedir, exist_ok=True)
        if system.startswith("sliceproxy-"):
            backend = system.split("-")[1]
            flags = []
            if backend == "ebpf":
                self.cgroup, self.pin = ebpf.case(f"pps{system[-3:]}{count}")
                flags += ebpf.flags(self.cgroup, self.pin)
                # Exact names: native XDP in front of tc; PREFIX+: tc only.
                flags += ["--devices", "to-gen,to-be" if system.endswith("-xdp")
                          else "to-gen+,to-be+"]
            mdir = os.path.join(casedir, "manifests")
            manifests(count, mdir)
            t0 = time.monotonic()
            self.daemon = dataplane.start_sliceproxy(run, self.topo.node, mdir, backend, bins,
                                                     casedir, flags)
            self.setup_s = time.monotonic() - t0
            if system.endswith("-xdp"):
                with open(os.path.join(casedir, "sliceproxy.log")) as f:
                    if "to-gen: NodePort load balancer at native XDP" not in f.read():
                        raise RuntimeError(f"{system}: np_xdp is not on to-gen natively; see "
                                           f"{casedir}/sliceproxy.log")

    def traffic_args(self):
        t = self.topo
        if self.system == "generator":
            dst, dport, ports = NODE_GEN, NODEPORT_BASE, self.count
            sink_ns, sink_dev, match, mport = t.node, "to-gen", f"{NODE_GEN}/32", 0
        elif self.system == "kernel-forwarding":
            dst, dport, ports = endpoint(1), TARGET_PORT, 1
            sink_ns, sink_dev, match, mport = t.be, "eth0", ENDPOINT_NET, TARGET_PORT
        else:
            dst, dport, ports = NODE_GEN, NODEPORT_BASE, self.count
            sink_ns, sink_dev, match, mport = t.be, "eth0", ENDPOINT_NET, TARGET_PORT
        return ["--gen-netns", t.gen, "--gen-dev", "eth0", "--sink-netns", sink_ns,
                "--sink-dev", sink_dev, "--gro-netns", t.node, "--gro-dev", "to-gen",
                "--src-ip", GEN, "--dst-ip", dst,
                "--dst-mac", t.node_mac, "--dport-base", str(dport), "--ports", str(ports),
                "--sport-base", str(SPORT_BASE), "--flows", str(FLOWS), "--match-net", match,
                "--match-port", str(mport)]

    def measure(self, frames, rounds, rate, latency_s, cpu=0):
        cmd = [self.bins["xdp_traffic"], *self.traffic_args(), "--frames", str(frames),
               "--rounds", str(rounds), "--rate", str(rate), "--latency-seconds",
               str(latency_s), "--cpu", str(cpu)]
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=60 + rounds * frames / 50000 + latency_s)
        if out.returncode != 0:
            raise RuntimeError(f"bench_xdp_traffic ({self.system}, {self.count} services): "
                               f"{out.stderr.strip()[:600]}")
        return json.loads(out.stdout)

    def close(self):
        if self.daemon is not None:
            self.run.stop(self.daemon)
        self.topo.close()
        if self.cgroup is not None:
            self.ebpf.release(self.cgroup, self.pin)


def row(system, count, samples, setup_s):
    """One row from the measurement rounds of a case (the rate's median over every round of
    every sample; latency quantiles' medians)."""
    rounds = [r for s in samples for r in s["rounds"]]
    lat = [s["latency"] for s in samples]
    delivered = sum(r["delivered"] for r in rounds)
    frames = sum(r["frames"] for r in rounds)
    out = {"system": system, "services": count, "rounds": len(rounds), "frames": frames,
           "delivered": delivered, "untranslated": sum(r["other"] for r in rounds),
           "pps": dataplane.median([r["pps"] for r in rounds]),
           "ns_per_packet": round(1e9 / dataplane.median([r["pps"] for r in rounds]), 1)
           if rounds else None,
           "latency_rate": dataplane.median([x["rate"] for x in lat]),
           "latency_p50_us": dataplane.median([x["p50_us"] for x in lat]),
           "latency_p90_us": dataplane.median([x["p90_us"] for x in lat]),
           "latency_p99_us": dataplane.median([x["p99_us"] for x in lat]),
           "latency_lost": sum(x["sent"] - x["delivered"] for x in lat),
           "setup_s": round(setup_s, 3)}
    return out
