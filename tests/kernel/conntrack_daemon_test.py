#!/usr/bin/env python3
"""Conntrack stale-flow cleanup, end to end (issue 5 acceptance): the real daemon with the nftables
backend in a node namespace, real UDP and TCP traffic from a client namespace to pods.

    client 172.30.0.2 --- 172.30.0.1 node (sliceproxy) 10.244.N.1 --- 10.244.N.2 podN
                                      \\-- sink0/sink1: the node's default route, a dead end

Each pod answers UDP on 5353 and TCP on 8080 with its own name. One Service "echo" (NodePort,
clusterIP 10.96.0.10) has a UDP port 53 -> 5353 (NodePort 30053) and a TCP port 80 -> 8080.

- A UDP client sends every 100 ms from a fixed source port to the clusterIP, another to the
  NodePort, both served by the same pod; that pod is removed from the EndpointSlice but keeps
  running. With cleanup both clients reach the other pod within one sync (< 1.5 s, with
  --min-sync-period 1s); with --no-conntrack-cleanup they stay stuck on the removed pod.
- An established TCP connection to that same pod keeps working after the removal.
- 0 -> N: clients start before the Service exists (the clusterIP leaks out of the node's default
  route, the NodePort hits a closed local port: both flows are tracked untranslated), the Service
  appears without endpoints (rejected), then an endpoint appears. With cleanup both flows reach it
  within one sync; without, they stay stuck.

Needs root; namespaces that cannot be created fail the test, they never skip it.
"""

import atexit
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")
PREFIX = f"spct{os.getpid()}"
CLIENT_IP, NODE_IP = "172.30.0.2", "172.30.0.1"
VIP, UDP_PORT, TCP_PORT, NODE_PORT = "10.96.0.10", 53, 80, 30053
DEADLINE = 1.5  # one sync (--min-sync-period 1s) plus the cleanup, with margin
STUCK_FOR = 3.0  # without cleanup: still on the removed pod this long after the change

POD_SERVER = textwrap.dedent("""
    import socket, sys, threading
    name = sys.argv[1].encode()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind(("0.0.0.0", 8080))
    t.listen(16)
    def tcp():
        while True:
            c, _ = t.accept()
            def serve(c=c):
                f = c.makefile("rb")
                for _ in f:
                    c.sendall(name + b"\\n")
            threading.Thread(target=serve, daemon=True).start()
    threading.Thread(target=tcp, daemon=True).start()
    print("up", flush=True)
    while True:
        _, addr = u.recvfrom(2048)
        u.sendto(name, addr)
""")

# udp TARGET PORT SPORT WANT: probes from source ports SPORT, SPORT+1, ... until a reply from pod
# WANT ("*": any pod, "-": do not probe, just stream from SPORT), then sends every 100 ms from
# that port forever, printing "R <monotonic> <pod>" per reply and "E <monotonic> <error>".
UDP_CLIENT = textwrap.dedent("""
    import socket, sys, time
    target, port, sport, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    def sock(p):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", p))
        s.connect((target, port))
        return s
    if want != "-":
        deadline = time.monotonic() + 15
        while True:
            s = sock(sport)
            s.settimeout(0.3)
            got = None
            for _ in range(3):
                try:
                    s.send(b"probe")
                    got = s.recv(2048).decode()
                    break
                except OSError:
                    pass
            if got and (want == "*" or got == want):
                want = got
                break
            s.close()
            if time.monotonic() > deadline:
                print("FAIL no reply from", want, flush=True)
                sys.exit(1)
            if got:
                sport += 1  # that port's flow belongs to another pod now
    else:
        s = sock(sport)
    print("READY", sport, want, flush=True)
    s.setblocking(False)
    while True:
        try:
            s.send(b"ping")
        except OSError as e:
            print("E", time.monotonic(), e.errno, flush=True)
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            try:
                print("R", time.monotonic(), s.recv(2048).decode(), flush=True)
            except BlockingIOError:
                time.sleep(0.005)
            except OSError as e:
                print("E", time.monotonic(), e.errno, flush=True)
""")

# tcp TARGET PORT WANT: connects until the connection lands on pod WANT ("*": any), prints
# "READY <pod>", then sends a line every 200 ms on that one connection, printing "R <t> <pod>",
# or "E <t> <error>" and exits when the connection breaks.
TCP_CLIENT = textwrap.dedent("""
    import socket, sys, time
    target, port, want = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    deadline = time.monotonic() + 15
    while True:
        try:
            c = socket.create_connection((target, port), timeout=1)
            f = c.makefile("rb")
            c.sendall(b"hello\\n")
            got = f.readline().decode().strip()
        except OSError:
            got = None
        if got and (want == "*" or got == want):
            break
        if time.monotonic() > deadline:
            print("FAIL no connection to", want, flush=True)
            sys.exit(1)
        time.sleep(0.05)
    print("READY", got, flush=True)
    while True:
        time.sleep(0.2)
        try:
            c.sendall(b"ping\\n")
            line = f.readline().decode().strip()
            if not line:
                raise OSError("connection closed")
            print("R", time.monotonic(), line, flush=True)
        except OSError as e:
            print("E", time.monotonic(), e, flush=True)
            sys.exit(0)
""")

NODE_YAML = """
apiVersion: v1
kind: Node
metadata: {name: node-a}
status:
  addresses: [{type: InternalIP, address: 172.30.0.1}]
"""

SERVICE_YAML = """
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports:
    - {name: dns, protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}
    - {name: web, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
"""


def slice_yaml(pods):
    eps = "".join(f"""
  - addresses: ["10.244.{n}.2"]
    conditions: {{ready: true}}
    nodeName: node-a""" for n in pods)
    return f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: default
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: dns, protocol: UDP, port: 5353}}, {{name: web, protocol: TCP, port: 8080}}]
endpoints:{eps if pods else " []"}
"""


def sh(*cmd, check=True, ns=None):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    p = subprocess.run(full, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


class Lines:
    """A process whose stdout lines are collected with the time they arrived."""

    def __init__(self, ns, argv, name):
        self.name = name
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.q = queue.Queue()
        self.all = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.all.append(line.rstrip("\n"))
            self.q.put(line.rstrip("\n"))

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line
            if line.startswith("FAIL"):
                raise AssertionError(f"{self.name}: {line}")
        raise AssertionError(f"{self.name}: no '{prefix}' within {timeout}s; output: {self.all[-20:]}")

    def events(self, since=0.0):
        """(time, kind, value) for R/E lines printed after `since`."""
        out = []
        for line in list(self.all):
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] in ("R", "E"):
                t = float(parts[1])
                if t >= since:
                    out.append((t, parts[0], parts[2]))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Topology:
    def __init__(self):
        self.ns = {r: f"{PREFIX}-{r}" for r in ("node", "client", "pod1", "pod2")}
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="sliceproxy-ct-")
        atexit.register(self.teardown)

    def build(self):
        for r, ns in self.ns.items():
            sh("ip", "netns", "add", ns)  # raises: never skip for lack of privileges
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
               ns=ns)
        node = self.ns["node"]
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=node)
        self._link(node, "c0", NODE_IP + "/24", self.ns["client"], CLIENT_IP + "/24", NODE_IP)
        for n in (1, 2):
            self._link(node, f"p{n}", f"10.244.{n}.1/24", self.ns[f"pod{n}"], f"10.244.{n}.2/24",
                       f"10.244.{n}.1")
        # The node's default route: a link that leads nowhere (nothing answers ARP behind it), so
        # traffic to an address no rule translates is routed, tracked and lost, as it is when a
        # client starts before its Service is programmed.
        sh("ip", "link", "add", "sink0", "type", "veth", "peer", "name", "sink1", ns=node)
        sh("ip", "link", "set", "sink0", "up", ns=node)
        sh("ip", "link", "set", "sink1", "up", ns=node)
        sh("ip", "route", "add", "default", "dev", "sink0", ns=node)
        for n in (1, 2):
            p = Lines(self.ns[f"pod{n}"], [sys.executable, "-c", POD_SERVER, f"pod{n}"], f"pod{n}")
            self.procs.append(p)
            p.wait_for("up", 10)
        self.write("node.yaml", NODE_YAML)

    def _link(self, ns_a, name_a, ip_a, ns_b, ip_b, gw_b):
        tmp = f"t{os.getpid() % 100000}{name_a}"
        sh("ip", "link", "add", name_a, "type", "veth", "peer", "name", tmp, ns=ns_a)
        sh("ip", "link", "set", tmp, "netns", ns_b, ns=ns_a)
        sh("ip", "link", "set", tmp, "name", "eth0", ns=ns_b)
        sh("ip", "addr", "add", ip_a, "dev", name_a, ns=ns_a)
        sh("ip", "addr", "add", ip_b, "dev", "eth0", ns=ns_b)
        sh("ip", "link", "set", name_a, "up", ns=ns_a)
        sh("ip", "link", "set", "eth0", "up", ns=ns_b)
        sh("ip", "route", "add", "default", "via", gw_b, ns=ns_b)

    def write(self, name, text):
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.dir, name))  # write-then-rename, as editors save

    def daemon(self, cleanup):
        argv = [BINARY, "--backend", "nftables", "--source-dir", self.dir, "--hostname-override",
                "node-a", "--min-sync-period", "1s", "--cluster-cidr", "10.244.0.0/16",
                "--healthz-bind-address", "", "--metrics-bind-address", "", "--debug-port", "0",
                "--conntrack-cleanup" if cleanup else "--no-conntrack-cleanup"]
        d = Lines(self.ns["node"], argv, "sliceproxy")
        self.procs.append(d)
        return d

    def client(self, script, *args, name="client"):
        p = Lines(self.ns["client"], [sys.executable, "-c", script] + [str(a) for a in args], name)
        self.procs.append(p)
        return p

    def conntrack(self):
        return sh("conntrack", "-L", "-p", "udp", check=False, ns=self.ns["node"])

    def teardown(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_substr(self, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in l for l in list(self.all)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{self.name}: no '{text}' within {timeout}s; output: {self.all[-30:]}")


Lines.wait_for_substr = wait_for_substr


class ConntrackCleanupTest(unittest.TestCase):
    def setUp(self):
        self.topo = Topology()
        self.topo.build()

    def tearDown(self):
        self.topo.teardown()

    def dump(self, *procs):
        out = [f"--- conntrack in node:\n{self.topo.conntrack()}"]
        for p in procs:
            out.append(f"--- {p.name}:\n" + "\n".join(p.all[-40:]))
        return "\n".join(out)

    def _endpoint_removed(self, cleanup, before_change=None):
        t = self.topo
        t.write("echo.yaml", SERVICE_YAML + "---" + slice_yaml([1, 2]))
        d = t.daemon(cleanup)
        d.wait_for_substr("full sync", 15)
        if cleanup:
            # The nftables data plane records the UDP flows it translates; once the sweep after
            # start has seeded that record, an endpoint's flows are found without a table walk.
            d.wait_for_substr("flow record is seeded", 10)
        vip = t.client(UDP_CLIENT, VIP, UDP_PORT, 40000, "*", name="udp-clusterip")
        served = vip.wait_for("READY", 15).split()[2]
        other = "pod2" if served == "pod1" else "pod1"
        nodeport = t.client(UDP_CLIENT, NODE_IP, NODE_PORT, 41000, served, name="udp-nodeport")
        nodeport.wait_for("READY", 15)
        tcp = t.client(TCP_CLIENT, VIP, TCP_PORT, served, name="tcp")
        tcp.wait_for("READY", 15)
        if before_change == "full sync":
            # A full sync replaces every service table; the flow record must stay complete.
            d.proc.send_signal(signal.SIGHUP)
            d.wait_for_substr("received SIGHUP", 5)
            deadline = time.monotonic() + 5
            while sum("full sync:" in l for l in list(d.all)) < 2:
                self.assertLess(time.monotonic(), deadline, "no full sync after SIGHUP\n" +
                                self.dump(d))
                time.sleep(0.05)
        elif before_change == "restart":
            d.stop()
            d = t.daemon(cleanup)
            d.wait_for_substr("full sync", 15)
            d.wait_for_substr("flow record is seeded", 10)
        time.sleep(1.2)  # past --min-sync-period, so the change below syncs at once

        changed = time.monotonic()
        t.write("echo.yaml", SERVICE_YAML + "---" + slice_yaml([2 if served == "pod1" else 1]))
        time.sleep(STUCK_FOR + 0.3)
        procs = (vip, nodeport, tcp, d)
        for c in (vip, nodeport):
            ev = c.events(since=changed)
            self.assertGreater(len(ev), 15, f"{c.name} kept sending\n" + self.dump(*procs))
            moved = [e for e in ev if e[1] == "R" and e[2] == other]
            if cleanup:
                self.assertTrue(moved, f"{c.name} never reached {other}\n" + self.dump(*procs))
                took = moved[0][0] - changed
                print(f"{c.name}: reached {other} {took * 1000:.0f} ms after the change", flush=True)
                self.assertLess(took, DEADLINE, self.dump(*procs))
                self.assertFalse([e for e in ev if e[0] > moved[0][0] and e[2] != other],
                                 f"{c.name} went back\n" + self.dump(*procs))
            else:
                self.assertFalse(moved, f"{c.name} moved without cleanup?\n" + self.dump(*procs))
                stuck = [e for e in ev if e[1] == "R" and e[2] == served]
                self.assertTrue(stuck and stuck[-1][0] - changed > STUCK_FOR - 0.5,
                                f"{c.name} stuck on the removed {served}\n" + self.dump(*procs))
                print(f"{c.name}: still answered by the removed {served} "
                      f"{stuck[-1][0] - changed:.1f} s after the change", flush=True)
        # TCP: the established connection to the removed (still running) pod keeps working.
        tev = tcp.events(since=changed)
        self.assertFalse([e for e in tev if e[1] == "E"], "TCP broke\n" + self.dump(*procs))
        self.assertGreater(len([e for e in tev if e[2] == served]), 10, self.dump(*procs))
        if cleanup:
            d.wait_for_substr("stale flows deleted", 2)
            done = [l for l in d.all if "stale flows deleted" in l]
            self.assertIn("0 kernel walks, 1 flow record lookups", done[0], self.dump(*procs))
        return d

    def test_endpoint_removed_flows_move_within_one_sync_and_tcp_survives(self):
        self._endpoint_removed(cleanup=True)

    def test_cleanup_stays_exact_across_a_full_sync(self):
        self._endpoint_removed(cleanup=True, before_change="full sync")

    def test_cleanup_stays_exact_across_a_restart(self):
        self._endpoint_removed(cleanup=True, before_change="restart")

    def test_endpoint_removed_without_cleanup_flows_stay_stuck(self):
        self._endpoint_removed(cleanup=False)

    def _zero_to_n(self, cleanup):
        t = self.topo
        d = t.daemon(cleanup)
        d.wait_for_substr("full sync", 15)
        # Clients start before the Service exists: nothing translates their flows.
        vip = t.client(UDP_CLIENT, VIP, UDP_PORT, 42000, "-", name="udp-clusterip")
        nodeport = t.client(UDP_CLIENT, NODE_IP, NODE_PORT, 43000, "-", name="udp-nodeport")
        vip.wait_for("READY", 10)
        nodeport.wait_for("READY", 10)
        time.sleep(0.5)
        created = time.monotonic()
        t.write("echo.yaml", SERVICE_YAML)  # no endpoints yet: rejected
        d.wait_for_substr("partial sync", 10)
        time.sleep(1.5)
        procs = (vip, nodeport, d)
        for c in (vip, nodeport):
            self.assertFalse([e for e in c.events() if e[1] == "R"], self.dump(*procs))
        # Rejected with ICMP port unreachable (the kernel rate-limits ICMP errors per client
        # host, so not every packet of both clients sees one).
        self.assertTrue([e for c in (vip, nodeport) for e in c.events(since=created) if e[1] == "E"],
                        "the Service without endpoints rejects\n" + self.dump(*procs))

        changed = time.monotonic()
        t.write("echo.yaml", SERVICE_YAML + "---" + slice_yaml([1]))
        time.sleep(STUCK_FOR + 0.3)
        for c in (vip, nodeport):
            ok = [e for e in c.events(since=changed) if e[1] == "R" and e[2] == "pod1"]
            if cleanup:
                self.assertTrue(ok, f"{c.name} never reached pod1\n" + self.dump(*procs))
                took = ok[0][0] - changed
                print(f"{c.name}: reached pod1 {took * 1000:.0f} ms after it appeared", flush=True)
                self.assertLess(took, DEADLINE, self.dump(*procs))
            else:
                self.assertFalse(ok, f"{c.name} recovered without cleanup?\n" + self.dump(*procs))
                print(f"{c.name}: no answer {STUCK_FOR:.1f} s after pod1 appeared", flush=True)
        if cleanup:
            d.wait_for_substr("stale flows deleted", 2)

    def test_zero_to_n_stuck_flows_recover_within_one_sync(self):
        self._zero_to_n(cleanup=True)

    def test_zero_to_n_without_cleanup_flows_stay_stuck(self):
        self._zero_to_n(cleanup=False)


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("conntrack daemon tests need root (network namespaces); failing, not skipping")
        sys.exit(1)
    unittest.main(argv=sys.argv[:1], verbosity=2)
