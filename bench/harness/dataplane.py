"""Data-plane comparison: real TCP and UDP traffic through a proxy node's rules.

Three namespaces per case: a client, the proxy node (routing between them, where the rules
live) and a backend pod running bench_echo_server on 10 addresses (the target service's 10
endpoints). N ClusterIP services are installed (three endpoints each, the target 10); traffic goes to the one in the middle of the
list (kube-proxy's iptables chain order follows a map's iteration, so a random position is
average). The other services' endpoints are addresses nothing answers on; no traffic goes
there. Systems: direct to the pod (no rules: the baseline), sliceproxy (the real daemon with
its nftables backend, fed manifests), kube-proxy's iptables rules (iptables-nft-restore) and
kube-proxy's nftables rules (nft -f). Every address is in 198.18.0.0/15 (or, for endpoints
that never see traffic, 10.128.0.0/9), inside namespaces this run creates."""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_iptables  # noqa: E402
import kube_nftables  # noqa: E402
from netns import sh  # noqa: E402

CLIENT, NODE_CLI, NODE_POD, POD = "198.18.1.2", "198.18.1.1", "198.18.2.1", "198.18.2.2"
POD_CIDR = "198.18.2.0/24"
SERVICE_CIDR = "198.19.0.0/16"
ENDPOINTS = [f"198.18.2.{10 + i}" for i in range(10)]
PORT, TARGET_PORT = 80, 8080
# The client, the pod's server and the softirq work their packets cause (veth hands a packet to
# the sending CPU's backlog) all run on this CPU, so a case measures the CPU cost of a request
# through its rules and not where the scheduler placed two processes: on the 2-core VM, four
# identical "direct" topologies measured tcp_rr p50 28-40 us unpinned and 23.0-23.2 us pinned
# (bench/RESULTS.md, "Pinned data plane"). The daemons run elsewhere (SLICEPROXY_CPU).
_CPUS = sorted(os.sched_getaffinity(0))
DP_CPU, SLICEPROXY_CPU = str(_CPUS[0]), str(_CPUS[-1])
PIN = ["taskset", "-c", DP_CPU]

SYSTEMS = ["direct", "sliceproxy-nftables", "sliceproxy-ebpf", "kube-proxy-iptables",
           "kube-proxy-nftables"]
# Variants only the A/B tools measure (bench/harness/ab_systems.py), not `bench/run`: system ->
# (the system it runs, more sliceproxy flags). Socket LB alone: in this topology the node's
# veths to the client and to the pods hold node addresses, so the default --devices puts the
# packet path on the pods' side too, which a CNI's pod interfaces would not get.
VARIANTS = {"sliceproxy-ebpf-sock": ("sliceproxy-ebpf", ["--devices", "none"])}


def systems(backends):
    """The systems this build can measure: sliceproxy's rows only for its backends here."""
    return [s for s in SYSTEMS
            if not s.startswith("sliceproxy-") or s.split("-", 1)[1] in backends]

# (test name, loadgen mode, concurrency)
TESTS = [
    ("tcp_rr", "tcp_rr", 1),
    ("tcp_crr", "tcp_crr", 1),
    ("tcp_crr_c4", "tcp_crr", 4),
    ("udp_rr", "udp_rr", 1),
]


def vip(i):
    n = i + 1
    return f"198.19.{n >> 8}.{n & 255}"


def services(count):
    """The dump-format service ports: `count` TCP services, the target also on UDP."""
    target = count // 2
    out = []
    for i in range(count):
        # Three endpoints each for the services no traffic goes to: what a packet meets on its
        # way (the dispatch by address and port) depends on the number of services, and
        # iptables-nft-restore could not load 10,000 x 10 endpoint chains in the run's time.
        # (Not one or two: sliceproxy's nftables backend fails its first sync with 10,000
        # services of one or two endpoints, see bench/RESULTS.md issue 7.)
        eps = ENDPOINTS if i == target else [
            f"10.{128 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}" for n in range(3 * i, 3 * i + 3)]
        base = {"service": f"bench/dp-{i:05}", "cluster_ip": vip(i), "port_num": PORT,
                "node_port": 0, "target_port": TARGET_PORT, "endpoints": eps}
        out.append({**base, "port": "http", "protocol": "tcp"})
        if i == target:
            out.append({**base, "port": "dns", "protocol": "udp"})
    return out, vip(target)


def manifests(svcs, path):
    """The same services as Kubernetes objects for the daemon's --source-dir."""
    by_name = {}
    for s in svcs:
        by_name.setdefault(s["service"], []).append(s)
    items = []
    for name, ports in by_name.items():
        ns, svc = name.split("/")
        items.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": svc, "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": ports[0]["cluster_ip"],
                     "clusterIPs": [ports[0]["cluster_ip"]],
                     "ports": [{"name": p["port"], "protocol": p["protocol"].upper(),
                                "port": p["port_num"], "targetPort": p["target_port"]}
                               for p in ports]}})
        items.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                           "nodeName": "node-b"} for ip in ports[0]["endpoints"]],
            "ports": [{"name": p["port"], "protocol": p["protocol"].upper(),
                       "port": p["target_port"]} for p in ports]})
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "cluster.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)


SHORT = {"direct": "d", "sliceproxy-nftables": "s", "sliceproxy-ebpf": "e",
         "kube-proxy-iptables": "i", "kube-proxy-nftables": "n", "sliceproxy-ebpf-sock": "es"}


class Topology:
    def __init__(self, run, tag):
        self.run = run
        self.cli = run.netns(f"{tag}-cli")
        self.node = run.netns(f"{tag}-node")
        self.pod = run.netns(f"{tag}-pod")
        ip = lambda *a: sh("ip", *a)  # noqa: E731
        ip("-n", self.node, "link", "add", "to-cli", "type", "veth", "peer", "name", "eth0",
           "netns", self.cli)
        ip("-n", self.node, "link", "add", "to-pod", "type", "veth", "peer", "name", "eth0",
           "netns", self.pod)
        ip("-n", self.node, "addr", "add", f"{NODE_CLI}/24", "dev", "to-cli")
        ip("-n", self.node, "addr", "add", f"{NODE_POD}/24", "dev", "to-pod")
        ip("-n", self.cli, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        ip("-n", self.pod, "addr", "add", f"{POD}/24", "dev", "eth0")
        for a in ENDPOINTS:
            ip("-n", self.pod, "addr", "add", f"{a}/24", "dev", "eth0")
        for ns, dev in ((self.node, "to-cli"), (self.node, "to-pod"), (self.cli, "eth0"),
                        (self.pod, "eth0")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", self.cli, "route", "add", "default", "via", NODE_CLI)
        ip("-n", self.pod, "route", "add", "default", "via", NODE_POD)
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", self.cli, "sysctl", "-qw",
           "net.ipv4.ip_local_port_range=1024 65535")

    def close(self):
        for ns in (self.cli, self.node, self.pod):
            self.run.delete(ns)


def start_echo(run, topo, bins, pin=True):
    p = run.spawn(topo.pod, [*(PIN if pin else []), bins["echo"], "--port", str(TARGET_PORT),
                             "--max-seconds", "3600"])
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("bench_echo_server did not start in the pod namespace")
    return p


def start_sliceproxy(run, ns, mdir, backend, bins, workdir, flags=()):
    """The daemon in namespace `ns`, fed the manifests in `mdir`; returns once its first full
    sync is done (its log in workdir/sliceproxy.log)."""
    logf = open(os.path.join(workdir, "sliceproxy.log"), "w")
    p = run.spawn(ns, ["taskset", "-c", SLICEPROXY_CPU, bins["sliceproxy"], "--source-dir", mdir,
                       "--backend", backend,
                       "--hostname-override", "node-a", "--min-sync-period", "100ms",
                       "--debug-port", "0", *flags],
                  stdout=logf, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"sliceproxy exited ({p.returncode}); see {logf.name}")
        with open(logf.name) as f:
            text = f.read()
        if "full sync:" in text:
            return p
        failed = [line for line in text.splitlines() if "sync with backend" in line and
                  "failed" in line]
        if failed:
            raise RuntimeError(f"sliceproxy's first sync failed: {failed[0][:400]}")
        time.sleep(0.2)
    run.stop(p)
    raise RuntimeError("sliceproxy did not finish its first sync in 600 s")


def install(system, run, topo, svcs, bins, workdir, log, extra=()):
    """Programs the node for `system`; returns a process to stop afterwards (or None) and the
    seconds it took. `extra`: more flags for sliceproxy (the ebpf backend's cgroup and pin
    directory)."""
    t0 = time.monotonic()
    if system == "direct":
        return None, 0.0
    if system.startswith("sliceproxy-"):
        mdir = os.path.join(workdir, "manifests")
        manifests(svcs, mdir)
        p = start_sliceproxy(run, topo.node, mdir, system.split("-", 1)[1], bins, workdir,
                             ["--cluster-cidr", POD_CIDR, *extra])
        return p, time.monotonic() - t0
    exec_ = ["ip", "netns", "exec", topo.node]
    if system == "kube-proxy-iptables":
        rs = kube_iptables.IptablesRuleset(svcs, POD_CIDR)
        cmd = exec_ + ["iptables-nft-restore", "-w", "5", "--noflush", "--counters"]
        sh(*cmd, input=kube_iptables.jump_rules())
        sh(*cmd, input=rs.restore_text(), timeout=1800)
    elif system == "kube-proxy-nftables":
        rs = kube_nftables.NftRuleset(svcs, POD_CIDR, SERVICE_CIDR, [NODE_CLI, NODE_POD])
        sh(*exec_, "nft", "-f", "-", input=rs.cold_text(), timeout=1800)
    else:
        raise ValueError(system)
    return None, time.monotonic() - t0


def loadgen(topo, bins, mode, target, seconds, concurrency, cgroup=None, pin=True):
    """`cgroup`: the client runs in it (where the ebpf backend's socket programs are attached).
    `pin`: on DP_CPU (bench/harness/pin_check.py measures without)."""
    out = sh("ip", "netns", "exec", topo.cli, *(PIN if pin else []), bins["loadgen"],
             "--mode", mode, "--target", target,
             "--seconds", str(seconds), "--concurrency", str(concurrency), check=False,
             capture=True, timeout=seconds + 30, cgroup=cgroup)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"mode": mode, "requests": 0, "errors": 1,
                "first_error": (out.stderr or "no output").strip()[:300]}


class Case:
    """One system with `count` services installed on its own client/node/pod namespaces."""

    def __init__(self, system, count, run, bins, workdir, log, ebpf=None):
        self.system, self.count, self.run, self.bins = system, count, run, bins
        self.topo = self.echo = self.daemon = None
        self.ebpf, self.cgroup, self.pin, extra = ebpf, None, None, []
        runs, more = VARIANTS.get(system, (system, []))
        if runs == "sliceproxy-ebpf":
            # The socket programs act on the client's cgroup: one per case, so cases never
            # rewrite each other's clients.
            self.cgroup, self.pin = ebpf.case(f"dp{count}")
            extra = ebpf.flags(self.cgroup, self.pin) + more
        svcs, target_vip = services(count)
        self.target = (f"{ENDPOINTS[0]}:{TARGET_PORT}" if system == "direct"
                       else f"{target_vip}:{PORT}")
        self.topo = Topology(run, f"{SHORT.get(system, system)}{count}")
        self.echo = start_echo(run, self.topo, bins)
        casedir = os.path.join(workdir, f"dp-{system}-{count}")
        os.makedirs(casedir, exist_ok=True)
        self.daemon, self.setup_s = install(runs, run, self.topo, svcs, bins, casedir, log,
                                            extra)
        # Warm-up: the first connections populate neighbour and route caches.
        r = loadgen(self.topo, bins, "tcp_rr", self.target, 0.3, 1, self.cgroup)
        if not r.get("requests") or r.get("errors"):
            raise RuntimeError(f"no traffic through {system} with {count} services: "
                               f"{r.get('first_error', r)}")

    def measure(self, test, seconds):
        mode, conc = next((m, c) for t, m, c in TESTS if t == test)
        return loadgen(self.topo, self.bins, mode, self.target, seconds, conc, self.cgroup)

    def close(self):
        for p in (self.daemon, self.echo):
            if p is not None:
                self.run.stop(p)
        if self.topo is not None:
            self.topo.close()
        if self.cgroup is not None:
            self.ebpf.release(self.cgroup, self.pin)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def combine(samples):
    """One row from the rounds of a test: medians of each statistic, requests and errors
    summed, so a single disturbed round cannot decide the result."""
    ok = [s for s in samples if s.get("requests")]
    row = {"rounds": len(samples), "requests": sum(s.get("requests", 0) for s in samples),
           "errors": sum(s.get("errors", 0) for s in samples)}
    for k in ("p50_us", "p90_us", "p99_us", "max_us", "rate_per_s"):
        row[k] = median([s.get(k) for s in ok])
    errs = [s["first_error"] for s in samples if s.get("first_error")]
    if errs:
        row["first_error"] = errs[0]
    return row
