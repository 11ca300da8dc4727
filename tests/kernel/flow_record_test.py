#!/usr/bin/env python3
"""The flow record keeps only flows sliceproxy translated (issue 14 point 9): the real daemon
with the nftables backend in a node namespace, real UDP from a client namespace to a pod.

    client 198.18.50.2 --- 198.18.50.1 node (sliceproxy) 10.244.5.1 --- 10.244.5.2 pod

- sliceproxy's UDP service (clusterIP 10.96.5.10:53 and NodePort 30053 -> pod:5353): both flows
  are recorded in table sliceproxy-flows;
- a foreign nft table (as Docker or a hostPort does) DNATs 198.18.50.1:5000 to the same pod:
  that flow is answered but NOT recorded;
- the cap is --flow-record-max and the fill is a metric;
- only the client's packets refresh a flow's element (replies are not recorded), expired
  elements are collected every 10 s, and a full sync writes the record's rules again while
  keeping its elements.

Needs root; a namespace that cannot be created fails the test, it never skips.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unittest

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")
P = f"spfr{os.getpid()}"
NODE, CLIENT, POD = P + "-node", P + "-cli", P + "-pod"
VIP, NODE_IP, POD_IP = "10.96.5.10", "198.18.50.1", "10.244.5.2"
CAP = 1000

MANIFESTS = textwrap.dedent(f"""
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Node
      metadata: {{name: node-a}}
      status: {{addresses: [{{type: InternalIP, address: {NODE_IP}}}]}}
    - apiVersion: v1
      kind: Service
      metadata: {{name: dns, namespace: default}}
      spec:
        type: NodePort
        clusterIP: {VIP}
        clusterIPs: [{VIP}]
        ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}}]
    - apiVersion: discovery.k8s.io/v1
      kind: EndpointSlice
      metadata: {{name: dns-1, namespace: default, labels: {{kubernetes.io/service-name: dns}}}}
      addressType: IPv4
      ports: [{{name: dns, protocol: UDP, port: 5353}}]
      endpoints: [{{addresses: [{POD_IP}], conditions: {{ready: true}}, nodeName: node-b}}]
    """)

FOREIGN = textwrap.dedent(f"""
    table ip {P}-foreign {{
      chain pre {{
        type nat hook prerouting priority -100; policy accept;
        ip daddr {NODE_IP} udp dport 5000 dnat to {POD_IP}:5353
      }}
    }}
    """)

# "later" is answered at once and again 1 s and 2 s after: datagrams that travel only in the
# flow's reply direction.
ECHO = textwrap.dedent("""
    import socket, threading, time
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    print("up", flush=True)
    def late(addr):
        for _ in range(2):
            time.sleep(1)
            u.sendto(b"late", addr)
    while True:
        data, addr = u.recvfrom(2048)
        u.sendto(b"pod", addr)
        if data == b"later":
            threading.Thread(target=late, args=(addr,), daemon=True).start()
    """)

# ask TARGET PORT SPORT [WORD]: one datagram from SPORT, prints the answer (or "timeout").
ASK = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[3])))
    s.settimeout(1)
    word = sys.argv[4].encode() if len(sys.argv) > 4 else b"hi"
    for _ in range(3):
        s.sendto(word, (sys.argv[1], int(sys.argv[2])))
        try:
            print(s.recv(100).decode())
            break
        except socket.timeout:
            pass
    else:
        print("timeout")
    """)


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30, **kw)


def in_ns(ns, *cmd, **kw):
    return sh("ip", "netns", "exec", ns, *cmd, **kw)


class FlowRecordTest(unittest.TestCase):
    procs = []

    @classmethod
    def setUpClass(cls):
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        for ns in (NODE, CLIENT, POD):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NODE, "link", "add", "to-cli", "type", "veth", "peer", "name", "eth0",
           "netns", CLIENT)
        sh("ip", "-n", NODE, "link", "add", "to-pod", "type", "veth", "peer", "name", "eth0",
           "netns", POD)
        sh("ip", "-n", NODE, "addr", "add", NODE_IP + "/24", "dev", "to-cli")
        sh("ip", "-n", NODE, "addr", "add", "10.244.5.1/24", "dev", "to-pod")
        sh("ip", "-n", CLIENT, "addr", "add", "198.18.50.2/24", "dev", "eth0")
        sh("ip", "-n", POD, "addr", "add", POD_IP + "/24", "dev", "eth0")
        for ns, dev in ((NODE, "to-cli"), (NODE, "to-pod"), (CLIENT, "eth0"), (POD, "eth0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", CLIENT, "route", "add", "default", "via", NODE_IP)
        sh("ip", "-n", POD, "route", "add", "default", "via", "10.244.5.1")
        in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        in_ns(NODE, "nft", "-f", "-", input=FOREIGN)
        echo = subprocess.Popen(["ip", "netns", "exec", POD, "python3", "-c", ECHO],
                                stdout=subprocess.PIPE, text=True)
        cls.procs.append(echo)
        assert echo.stdout.readline().strip() == "up"
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-fr-")
        with open(os.path.join(cls.dir, "all.yaml"), "w") as f:
            f.write(MANIFESTS)
        cls.log = open(os.path.join(cls.dir, "sliceproxy.log"), "w")
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", NODE, BINARY, "--backend", "nftables", "--source-dir",
             cls.dir, "--hostname-override", "node-a", "--cluster-cidr", "10.244.0.0/16",
             "--flow-record-max", str(CAP), "--metrics-bind-address", "127.0.0.1:10249",
             "--healthz-bind-address", "127.0.0.1:10256", "--debug-port", "0"],
            stdout=cls.log, stderr=subprocess.STDOUT)
        cls.procs.append(daemon)
        deadline = time.time() + 20
        def log():
            with open(cls.log.name) as f:
                return f.read()
        while "full sync:" not in log():
            if daemon.poll() is not None or time.time() > deadline:
                raise AssertionError("no first sync: " + log())
            time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p in cls.procs:
            if p.stdout:
                p.stdout.close()
        if getattr(cls, "log", None):
            cls.log.close()
        for ns in (NODE, CLIENT, POD):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if getattr(cls, "dir", None):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def recorded_client_ports(self):
        """Client ports of the flows in the record: key endpoint . eport . proto . client .
        cport . frontend . fport, 4-byte fields, as nft prints an untyped key (hex)."""
        out = in_ns(NODE, "nft", "list", "set", "ip", "sliceproxy-flows", "flows").stdout
        ports = set()
        for tok in out.replace(",", " ").split():
            # An untyped key prints as one number, its bytes in order, leading zeros dropped.
            if tok.startswith("0x") and len(tok) > 2 + 2 * 20:
                key = bytes.fromhex(tok[2:].zfill(2 * 28))
                if key[0:4] == bytes([10, 244, 5, 2]):
                    ports.add(int.from_bytes(key[16:18], "big"))
        return ports, out

    def test_only_our_translations_are_recorded(self):
        for target, port, sport in ((VIP, 53, 40001), (NODE_IP, 30053, 40002),
                                    (NODE_IP, 5000, 40003)):
            got = in_ns(CLIENT, "python3", "-c", ASK, target, str(port), str(sport)).stdout.strip()
            self.assertEqual(got, "pod", f"{target}:{port} not answered")
        ports, text = self.recorded_client_ports()
        self.assertIn(40001, ports, "the clusterIP flow is missing:\n" + text)
        self.assertIn(40002, ports, "the NodePort flow is missing:\n" + text)
        self.assertNotIn(40003, ports, "a foreign DNAT was recorded:\n" + text)

    def test_cap_is_the_flag_and_fill_is_a_metric(self):
        out = in_ns(NODE, "nft", "list", "set", "ip", "sliceproxy-flows", "flows").stdout
        self.assertIn(f"size {CAP}", out)
        metrics = in_ns(NODE, "python3", "-c",
                        "import urllib.request;print(urllib.request.urlopen("
                        "'http://127.0.0.1:10249/metrics').read().decode())").stdout
        self.assertIn(f"sliceproxy_flow_record_capacity {CAP}", metrics)
        self.assertRegex(metrics, r"sliceproxy_flow_record_flows \d+")
        self.assertRegex(metrics, r"sliceproxy_flow_record_fill_ratio [0-9.e-]+")


    def expires_ms(self, sport):
        """Milliseconds left on the element of the flow from client port `sport`."""
        out = in_ns(NODE, "nft", "list", "set", "ip", "sliceproxy-flows", "flows").stdout
        for elem in out.replace("{", ",").replace("}", ",").split(","):
            tok = elem.split()
            if not tok or not tok[0].startswith("0x") or "expires" not in tok:
                continue
            key = bytes.fromhex(tok[0][2:].zfill(2 * 28))
            if int.from_bytes(key[16:18], "big") != sport:
                continue
            ms = 0
            for num, unit in re.findall(r"(\d+)(ms|s|m|h|d)", tok[tok.index("expires") + 1]):
                ms += int(num) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000,
                                  "d": 86400000}[unit]
            return ms
        self.fail(f"no element for client port {sport}:\n{out}")

    def test_replies_do_not_refresh_but_the_client_does(self):
        sport = 40010
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport), "later").stdout.strip()
        self.assertEqual(got, "pod")
        first = self.expires_ms(sport)
        time.sleep(2.6)  # the pod sends twice more in the reply direction meanwhile
        after_replies = self.expires_ms(sport)
        self.assertGreater(first - after_replies, 2000,
                           "a reply refreshed the element (replies must not be recorded)")
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport)).stdout.strip()
        self.assertEqual(got, "pod")
        self.assertGreater(self.expires_ms(sport), after_replies + 2000,
                           "the client's packet did not refresh its element")

    def test_elements_live_as_long_as_their_conntrack_entries_not_longer(self):
        """A flow's element lasts what conntrack gives the flow after the same packet, plus a
        margin of 10 s: nf_conntrack_udp_timeout before the flow is answered,
        nf_conntrack_udp_timeout_stream after. One timeout for every flow (the longest, 240 s)
        kept a one-shot DNS flow's element eight times longer than its conntrack entry, and a
        busy node's record full of flows long gone."""
        def sysctl(name):
            return int(in_ns(NODE, "sysctl", "-n", "net.netfilter." + name).stdout)
        unreplied, stream = sysctl("nf_conntrack_udp_timeout"), sysctl(
            "nf_conntrack_udp_timeout_stream")
        sport = 40030
        # The client's first packet is recorded as it passes the node, before the answer.
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport), "later").stdout.strip()
        self.assertEqual(got, "pod")
        first = self.expires_ms(sport)
        self.assertLessEqual(first, (unreplied + 10) * 1000, "unanswered flow kept too long")
        self.assertGreater(first, (unreplied - 5) * 1000, "unanswered flow kept too short")
        # Answered now: the client's next packet gives the flow the stream timeout.
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport)).stdout.strip()
        self.assertEqual(got, "pod")
        second = self.expires_ms(sport)
        self.assertLessEqual(second, (stream + 10) * 1000, "answered flow kept too long")
        self.assertGreater(second, (stream - 5) * 1000, "answered flow kept too short")

    def test_full_sync_rewrites_the_rules_and_keeps_the_flows(self):
        sport = 40020
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport)).stdout.strip()
        self.assertEqual(got, "pod")
        listed = in_ns(NODE, "nft", "list", "table", "ip", "sliceproxy-flows").stdout
        self.assertIn("gc-interval 10s", listed)
        # Another program (or an older sliceproxy) left the record's chains without rules.
        for chain in ("record-forward", "record-input", "record-output"):
            in_ns(NODE, "nft", "flush", "chain", "ip", "sliceproxy-flows", chain)
        daemon = self.procs[1]
        with open(self.log.name) as f:
            syncs = f.read().count("full sync:")
        daemon.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            with open(self.log.name) as f:
                if f.read().count("full sync:") > syncs:
                    break
            self.assertLess(time.time(), deadline, "SIGHUP brought no full sync")
            time.sleep(0.2)
        listed = in_ns(NODE, "nft", "list", "table", "ip", "sliceproxy-flows").stdout
        self.assertEqual(listed.count("@flows"), 3, "the rules were not written again:\n" + listed)
        self.assertEqual(listed.count("goto record-flow"), 6,
                         "the rules were not written again:\n" + listed)
        ports, text = self.recorded_client_ports()
        self.assertIn(sport, ports, "the full sync lost a recorded flow:\n" + text)
        got = in_ns(CLIENT, "python3", "-c", ASK, VIP, "53", str(sport + 1)).stdout.strip()
        self.assertEqual(got, "pod")
        ports, text = self.recorded_client_ports()
        self.assertIn(sport + 1, ports, "a flow after the full sync was not recorded:\n" + text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
