"""The table's vocabulary (Probe, Phase, Case) and the runner that plays one case in the sandbox:
fresh manifest directory, fresh sliceproxy process, real traffic, exact expectations."""

import collections
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import kernel_state
import manifests
import proxy as proxymod
from sandbox import NODES, family

ANSWERED, REFUSED, DROPPED = "answered", "refused", "timeout"

# Expected source address seen by the answering pod.
SRC_CLIENT = "client"    # the prober's own address: not masqueraded
SRC_NODE = "node"        # node-a's address of the family: masqueraded
SRC_HAIRPIN = "hairpin"  # node-a's address when a pod reaches itself, the pod's own otherwise

CLUSTER_CIDR = ("--cluster-cidr", "10.244.0.0/16,fd00:244::/32")

FEATURES = ("ClusterIP", "NodePort", "LoadBalancerVIP", "ExternalIPs",
            "ExternalTrafficPolicyLocal", "InternalTrafficPolicyLocal", "SessionAffinity",
            "LoadBalancerSourceRanges", "IPv6", "SCTP", "Hairpin")

# Not a service feature but where traffic starts: a probe from outside node-a (the outside
# clients, node-b, node-b's pods). A backend that only acts on traffic starting on its node
# (the eBPF backend's socket programs) has this in its expectations.json `unsupported` list.
FROM_OUTSIDE = "TrafficFromOutsideNode"
# Nor is --masquerade-all: a backend that never masquerades (socket rewrite) refuses the flag.
MASQUERADE_ALL = "MasqueradeAll"
TABLE_ONLY = frozenset({FROM_OUTSIDE, MASQUERADE_ALL})


def from_outside(frm):
    return frm not in ("node-a",) and not frm.startswith("a")


@dataclass(frozen=True)
class Probe:
    frm: str                      # client, client2, node-a, node-b or a pod (a10, b2, ...)
    to: str                       # destination address
    port: int
    proto: str = "tcp"
    expect: str = ANSWERED        # answered | refused | timeout
    pods: Optional[frozenset] = None  # answered: exactly these pods, each seen at least once
    source: Optional[str] = None  # SRC_* or a literal address; None: not checked
    dport: Optional[int] = None   # the port the pod must see (the service's targetPort)
    n: Optional[int] = None
    sticky: bool = False          # sequential connections all answered by one pod of `pods`
    src: Optional[str] = None     # bind to this source address
    sport: Optional[int] = None   # one flow: the same source port every time (sequential)
    timeout: Optional[float] = None
    key: Optional[str] = None     # name under which results are kept for a Phase.check

    @property
    def fam(self):
        return family(self.to)

    def count(self):
        if self.n:
            return self.n
        if self.expect != ANSWERED:
            return 3
        if self.sticky or self.sport:
            return 8
        return min(72, max(20, 12 * len(self.pods or ())))

    def wait(self):
        base = self.timeout or (1.0 if self.proto == "udp" else 1.5)
        # An expected drop is a timeout: waiting longer for it proves nothing more.
        return base if self.expect == DROPPED else base * probe_timeout_scale()

    def describe(self):
        dst = "[%s]" % self.to if self.fam == 6 else self.to
        frm = self.frm + ("(%s)" % self.src if self.src else "")
        return "%s -> %s:%d/%s" % (frm, dst, self.port, self.proto)


def answered(frm, to, port, pods, source=None, proto="tcp", **kw):
    return Probe(frm, to, port, proto, ANSWERED, frozenset(pods), source, **kw)


def refused(frm, to, port, proto="tcp", **kw):
    return Probe(frm, to, port, proto, REFUSED, **kw)


def dropped(frm, to, port, proto="tcp", **kw):
    return Probe(frm, to, port, proto, DROPPED, **kw)


@dataclass
class Phase:
    probes: list
    write: dict = field(default_factory=dict)   # file name -> objects, written before probing
    delete: list = field(default_factory=list)  # file names removed before probing
    within: Optional[float] = None  # retry until the probes pass, at most this long after the change
    sleep: float = 0.0              # pause before probing (e.g. to let affinity expire)
    label: str = ""
    check: Optional[Callable] = None  # check(results by probe key, over all phases) -> error or None
    full_sync: bool = False         # SIGHUP before probing: a full sync replaces every table
    restart: str = ""               # "term" or "kill9": sliceproxy is stopped and started again


@dataclass
class Case:
    name: str
    doc: str
    files: dict                     # initial manifest files: name -> objects (Nodes are added)
    phases: list
    flags: tuple = CLUSTER_CIDR
    extra_features: tuple = ()      # features not visible in the manifests (Hairpin)
    node_addrs: tuple = ()          # extra addresses on node-a for the case's duration

    def all_objects(self):
        objs = [o for objects in self.files.values() for o in objects]
        for ph in self.phases:
            objs += [o for objects in ph.write.values() for o in objects]
        return objs

    def probes(self):
        return [p for ph in self.phases for p in ph.probes]

    def kernel_needs(self):
        """What the probing kernel itself must offer beyond TCP and UDP: {"sctp"} when a probe
        sends SCTP (test_conformance.KERNEL_NEEDS says where such cases run)."""
        return {p.proto for p in self.probes()} & {"sctp"}

    def features(self):
        """The backend features this case needs, read from its manifests and probes."""
        f = {"ClusterIP"}
        node_ips = {spec["ip"][fam] for spec in NODES.values() for fam in (4, 6)}
        node_ips |= set(a for a in self.node_addrs)
        for o in self.all_objects():
            if o["kind"] != "Service":
                continue
            spec = o["spec"]
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                f.add("NodePort")
            if o.get("status", {}).get("loadBalancer", {}).get("ingress"):
                f.add("LoadBalancerVIP")
            if spec.get("externalIPs"):
                f.add("ExternalIPs")
            if spec.get("externalTrafficPolicy") == "Local":
                f.add("ExternalTrafficPolicyLocal")
            if spec.get("internalTrafficPolicy") == "Local":
                f.add("InternalTrafficPolicyLocal")
            if spec.get("sessionAffinity") == "ClientIP":
                f.add("SessionAffinity")
            if spec.get("loadBalancerSourceRanges"):
                f.add("LoadBalancerSourceRanges")
            if any(p.get("protocol") == "SCTP" for p in spec.get("ports", [])):
                f.add("SCTP")
        if any(p.fam == 6 for p in self.probes()):
            f.add("IPv6")
        if any(from_outside(p.frm) for p in self.probes()):
            f.add(FROM_OUTSIDE)
        if "--masquerade-all" in self.flags:
            f.add(MASQUERADE_ALL)
        f |= set(self.extra_features)
        return f


# ---------------------------------------------------------------------------------------------
# evaluation


def expected_source(sandbox, probe, pod):
    s = probe.source
    if s is None:
        return None
    if s == SRC_CLIENT:
        return probe.src or sandbox.address(probe.frm, probe.fam)
    if s == SRC_NODE:
        return NODES["node-a"]["ip"][probe.fam]
    if s == SRC_HAIRPIN:
        if pod == probe.frm:
            return NODES["node-a"]["ip"][probe.fam]
        return sandbox.address(probe.frm, probe.fam)
    return s


def summarize(results):
    c = collections.Counter()
    for r in results:
        if r["r"] == "answered":
            c["answered by %s (source %s, port %s)" % (r["pod"], r["src"], r["dport"])] += 1
        elif r["r"] == "error":
            c["error %s" % r.get("errno")] += 1
        else:
            c[r["r"]] += 1
    return ", ".join("%d x %s" % (n, k) for k, n in sorted(c.items()))


def evaluate(sandbox, probe, results):
    """None if the results meet the probe's expectation, else what went wrong."""
    want = probe.expect
    if want != ANSWERED:
        if all(r["r"] == want for r in results):
            return None
        return "expected every attempt %s, got %s" % (want, summarize(results))
    problems = []
    if any(r["r"] != ANSWERED for r in results):
        problems.append("not all answered")
    seen = {r["pod"] for r in results if r["r"] == ANSWERED}
    pods = set(probe.pods or ())
    if probe.sticky:
        if len(seen) > 1:
            problems.append("affinity broken: answered by %s" % sorted(seen))
        if not seen <= pods:
            problems.append("answered by %s outside %s" % (sorted(seen - pods), sorted(pods)))
    else:
        if seen - pods:
            problems.append("answered by %s, not eligible" % sorted(seen - pods))
        if pods - seen:
            problems.append("%s never answered in %d attempts" % (sorted(pods - seen),
                                                                  len(results)))
    for r in results:
        if r["r"] != ANSWERED:
            continue
        exp = expected_source(sandbox, probe, r["pod"])
        if exp and r["src"] != exp:
            problems.append("%s saw source %s, expected %s" % (r["pod"], r["src"], exp))
            break
        if probe.dport and r["dport"] != probe.dport:
            problems.append("%s answered on port %s, expected %s" % (r["pod"], r["dport"],
                                                                     probe.dport))
            break
    if not problems:
        return None
    what = "answered by %s" % ("one of " if probe.sticky else "") + \
        "{%s}" % ",".join(sorted(pods))
    if probe.source:
        what += " seeing source %s" % probe.source
    return "expected %s: %s; got %s" % (what, "; ".join(problems), summarize(results))


class Runner:
    def __init__(self, sandbox, backend_name=None):
        self.sb = sandbox
        self.backend = backend_name or proxymod.backend()

    def prepare(self, case):
        proxymod.cleanup(self.sb, self.backend)
        self.sb.flush_conntrack()
        for pod, ports in manifests.listeners(case.all_objects()).items():
            agent = self.sb.pod(pod)
            for proto, port in sorted(ports):
                agent.listen(proto, port)
        for p in case.probes():
            self.sb.agent(p.frm)

    def run_probe(self, probe):
        return self.sb.agent(probe.frm).probe(
            probe.proto, probe.to, probe.port, n=probe.count(), timeout=probe.wait(),
            src=probe.src, sport=probe.sport, sequential=probe.sticky)

    def run_probes(self, probes):
        """All probes of a phase, concurrently (each agent serializes its own)."""
        out = [None] * len(probes)

        def one(i):
            try:
                out[i] = self.run_probe(probes[i])
            except Exception as e:  # surfaces as a probe failure
                out[i] = [{"r": "error", "errno": "HARNESS", "msg": str(e)}]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(probes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def run(self, case, log=None):
        """Plays the case; raises AssertionError describing the first failing phase."""
        log = log or (lambda msg: None)
        self.prepare(case)
        added = []
        proxy = None
        try:
            for a in case.node_addrs:
                self.sb.add_node_address(a)
                added.append(a)
            d = manifests.ManifestDir(self.sb.tmpdir("case"))
            d.write("nodes.json", manifests.nodes())
            for name, objects in case.files.items():
                d.write(name, objects)
            proxy = proxymod.SliceProxy(self.sb, d.path, case.flags, self.backend)
            # The guest's first sync loads the nftables modules on its emulated CPU.
            proxy.start(timeout=20.0 * probe_timeout_scale())
            keyed = {}
            for i, ph in enumerate(case.phases):
                label = ph.label or "phase %d" % (i + 1)
                t0 = time.monotonic()
                if ph.write or ph.delete:
                    mark = proxy.syncs()
                    for name, objects in ph.write.items():
                        d.write(name, objects)
                    for name in ph.delete:
                        d.delete(name)
                    proxy.wait_sync_after(mark)
                if ph.full_sync:
                    proxy.full_sync_now()
                if ph.restart:
                    proxy.stop(signal.SIGKILL if ph.restart == "kill9" else signal.SIGTERM)
                    proxy.start()
                if ph.sleep:
                    time.sleep(ph.sleep)
                while True:
                    results = self.run_probes(ph.probes)
                    failures = []
                    for p, res in zip(ph.probes, results):
                        err = evaluate(self.sb, p, res)
                        if err:
                            failures.append("%s: %s" % (p.describe(), err))
                    if not failures or ph.within is None or \
                            time.monotonic() - t0 > ph.within:
                        break
                    time.sleep(0.1)
                for p, res in zip(ph.probes, results):
                    if p.key:
                        keyed[p.key] = res
                if not failures and ph.check:
                    err = ph.check(keyed)
                    if err:
                        failures.append(err)
                took = time.monotonic() - t0
                if failures:
                    raise AssertionError(self.report(case, label, failures, proxy, ph, took))
                log("  %s: %d probes ok (%.2fs)" % (label, len(ph.probes), took))
            errs = proxy.errors()
            if errs:
                raise AssertionError("%s: sliceproxy logged errors:\n%s" % (case.name,
                                                                          "\n".join(errs)))
        finally:
            rc = proxy.stop() if proxy else 0
            for a in added:
                self.sb.del_node_address(a)
        if rc != 0:
            raise AssertionError("%s: sliceproxy exited with %s on SIGTERM:\n%s"
                                 % (case.name, rc, proxy.log()))

    def report(self, case, label, failures, proxy, phase, took):
        lines = ["case %s, %s (%s%.2fs): %s" % (
            case.name, label, "change applied, retried for " if phase.within else "", took,
            case.doc)]
        lines += ["  FAIL " + f for f in failures]
        lines.append("  sliceproxy flags: %s" % " ".join(proxy.command()[1:]))
        lines.append("  sliceproxy log (tail):\n    " + proxy.log(15).replace("\n", "\n    "))
        if os.environ.get("SLICEPROXY_CONFORMANCE_RULESET", "1") != "0":
            lines.append("  node-a kernel state (%s):\n" % self.backend
                         + kernel_state.describe(self.sb, self.backend))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# continuous traffic, for the live-change and restart acceptance tests


def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % int((t % 1) * 1000)


def probe_timeout_scale():
    """SLICEPROXY_CONFORMANCE_TIMEOUT_SCALE (default 1, at least 1): a factor on how long a probe
    waits for an answer or a refusal, and sliceproxy for its first sync. The qemu guest
    (vm_guest.sh) emulates its CPU in software and shares the host's two cores with another
    guest: a connection that takes 1.5 s there is slow, not lost."""
    scale = float(os.environ.get("SLICEPROXY_CONFORMANCE_TIMEOUT_SCALE", "1"))
    if scale < 1:
        raise ValueError("SLICEPROXY_CONFORMANCE_TIMEOUT_SCALE must be >= 1, not %s" % scale)
    return scale


def stream_rate_scale():
    """SLICEPROXY_CONFORMANCE_STREAM_SCALE (default 1): a factor on every stream's rate. The qemu
    guest (vm_guest.sh) runs on one emulated CPU, where the full rates are more than the agents
    and the kernel can serve (no idle time left, connects take seconds, whatever the backend)."""
    scale = float(os.environ.get("SLICEPROXY_CONFORMANCE_STREAM_SCALE", "1"))
    if not 0 < scale <= 1:
        raise ValueError("SLICEPROXY_CONFORMANCE_STREAM_SCALE must be in (0, 1], not %s" % scale)
    return scale


class Streams:
    """Steady connection streams (e.g. 20/s each) from several namespaces at once."""

    def __init__(self, sandbox):
        self.sb = sandbox
        self.specs = {}
        self.results = {}

    def start(self, sid, frm, proto, addr, port, rate=20, timeout=3.0):
        rate = rate * stream_rate_scale()
        self.sb.agent(frm).stream_start(sid, proto, addr, port, rate=rate, timeout=timeout)
        self.specs[sid] = (frm, proto, addr, port, rate, time.time())

    def stop(self):
        for sid, (frm, *_rest) in self.specs.items():
            self.results[sid] = (self.sb.agent(frm).stream_stop(sid), time.time())
        return self.results

    def report(self, slow_ms=1000):
        """(text, problems): one line per stream; problems lists failed or slow connections."""
        lines, problems = [], []
        for sid, (frm, proto, addr, port, rate, t0) in self.specs.items():
            res, t1 = self.results[sid]
            ok = [r for r in res if r["r"] == ANSWERED]
            bad = [r for r in res if r["r"] != ANSWERED]
            slow = [r for r in ok if r["ms"] >= slow_ms]
            pods = collections.Counter(r["pod"] for r in ok)
            lat = sorted(r["ms"] for r in ok) or [0]
            lines.append("%-10s %s -> %s:%d/%s: %d connections in %.1fs, %d answered %s, "
                         "%d failed, %d slow (>= %dms, a dropped SYN), p50 %.1fms max %.1fms"
                         % (sid, frm, addr, port, proto, len(res), t1 - t0, len(ok), dict(pods),
                            len(bad), len(slow), slow_ms, lat[len(lat) // 2], lat[-1]))
            for r in bad[:10]:
                problems.append("%s: connection at %s: %s %s" % (sid, clock(r["t"]), r["r"],
                                                                 r.get("errno", "")))
            for r in slow[:10]:
                problems.append("%s: connection at %s took %.0fms" % (sid, clock(r["t"]),
                                                                     r["ms"]))
            expected = rate * (t1 - t0) * 0.7
            if len(res) < expected:
                problems.append("%s: only %d connections, expected about %d" % (
                    sid, len(res), rate * (t1 - t0)))
        return "\n".join(lines), problems
