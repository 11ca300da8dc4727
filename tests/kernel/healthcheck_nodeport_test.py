#!/usr/bin/env python3
"""healthCheckNodePort as kube-proxy serves it (issue 14 point 5), the real daemon in its own
network namespace:

- the count is of local ready endpoints (pods), not endpoint x port x family: a dual-stack
  LoadBalancer Service with two ports and two local ready pods (plus a local unready one and a
  remote one) answers localEndpoints 2;
- with --nodeport-addresses the server listens only on the node's addresses it selects (here
  10.77.0.1 of 10.77.0.0/24), not on every address (10.78.0.1 and 127.0.0.1 refuse), and a
  connection to the selected address answers.

The health check server does not depend on the data plane, so the daemon runs the dry-run
backend. Needs root; a namespace that cannot be created fails the test, it never skips.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")
NS = f"sphc{os.getpid()}"
HC = 32100
SELECTED, OTHER = "10.77.0.1", "10.78.0.1"

NODE = textwrap.dedent("""
    apiVersion: v1
    kind: Node
    metadata: {name: node-a}
    status:
      addresses: [{type: InternalIP, address: 10.77.0.1}]
    """)

SVC = textwrap.dedent(f"""
    apiVersion: v1
    kind: Service
    metadata: {{name: gw, namespace: edge}}
    spec:
      type: LoadBalancer
      clusterIP: 10.96.0.50
      clusterIPs: [10.96.0.50, "fd00:96::50"]
      ipFamilies: [IPv4, IPv6]
      ipFamilyPolicy: RequireDualStack
      externalTrafficPolicy: Local
      healthCheckNodePort: {HC}
      ports:
        - {{name: https, port: 443, targetPort: 8443, nodePort: 30443}}
        - {{name: http, port: 80, targetPort: 8080, nodePort: 30080}}
    status:
      loadBalancer:
        ingress: [{{ip: 203.0.113.10}}]
    """)


def slice_(fam, addrs):
    eps = "\n".join(
        f"  - addresses: [\"{a}\"]\n    conditions: {{ready: {r}}}\n    nodeName: {n}"
        for a, r, n in addrs)
    return textwrap.dedent(f"""
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {{name: gw-v{fam}, namespace: edge, labels: {{kubernetes.io/service-name: gw}}}}
        addressType: IPv{fam}
        ports: [{{name: https, port: 8443, protocol: TCP}}, {{name: http, port: 8080, protocol: TCP}}]
        endpoints:
        """) + eps + "\n"


SLICES = (slice_(4, [("10.244.1.2", "true", "node-a"), ("10.244.1.3", "true", "node-a"),
                     ("10.244.1.4", "false", "node-a"), ("10.244.2.2", "true", "node-b")]) +
          "---\n" +
          slice_(6, [("fd00:244:1::2", "true", "node-a"), ("fd00:244:1::3", "true", "node-a"),
                     ("fd00:244:1::4", "false", "node-a"), ("fd00:244:2::2", "true", "node-b")]))

# get HOST PORT: prints "<status> <body>" or "refused".
GET = textwrap.dedent("""
    import http.client, sys
    try:
        c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=3)
        c.request("GET", "/")
        r = c.getresponse()
        print(r.status, r.read().decode().strip())
    except ConnectionRefusedError:
        print("refused")
    """)


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def get(host):
    out = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", GET, host, str(HC)],
                         check=True, capture_output=True, text=True, timeout=10).stdout.strip()
    if out == "refused":
        return None
    status, body = out.split(" ", 1)
    return int(status), json.loads(body)


class HealthCheckNodePortTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            cls.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start(cls):
        sh("ip", "netns", "add", NS)
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        # A veth pair inside the namespace (the dummy driver is not always built).
        sh("ip", "-n", NS, "link", "add", "hc0", "type", "veth", "peer", "name", "hc1")
        sh("ip", "-n", NS, "addr", "add", SELECTED + "/24", "dev", "hc0")
        sh("ip", "-n", NS, "addr", "add", OTHER + "/24", "dev", "hc0")
        sh("ip", "-n", NS, "link", "set", "hc1", "up")
        sh("ip", "-n", NS, "link", "set", "hc0", "up")
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-hc-")
        for name, text in (("node.yaml", NODE), ("svc.yaml", SVC), ("slices.yaml", SLICES)):
            with open(os.path.join(cls.dir, name), "w") as f:
                f.write(text)
        cls.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, BINARY, "--backend", "dry-run", "--source-dir", cls.dir,
             "--hostname-override", "node-a", "--nodeport-addresses", "10.77.0.0/24",
             "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address",
             "127.0.0.1:10249", "--debug-port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if cls.proc.poll() is not None:
                raise AssertionError("daemon exited: " + cls.proc.stderr.read())
            r = get(SELECTED)
            if r and r[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError("health check port never answered 200 on %s" % SELECTED)

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "proc", None):
            cls.proc.terminate()
            try:
                cls.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        if getattr(cls, "dir", None):
            shutil.rmtree(cls.dir, ignore_errors=True)

    def test_counts_local_ready_endpoints_once(self):
        status, body = get(SELECTED)
        self.assertEqual(status, 200)
        self.assertEqual(body, {"service": {"namespace": "edge", "name": "gw"},
                                "localEndpoints": 2, "serviceProxyHealthy": True})

    def test_listens_only_on_nodeport_addresses(self):
        self.assertIsNotNone(get(SELECTED))
        self.assertIsNone(get(OTHER), "answered on an address --nodeport-addresses leaves out")
        self.assertIsNone(get("127.0.0.1"), "answered on loopback")

    def test_count_follows_changes(self):
        # One local pod stops being ready (in both families): 1; back: 2. Applied through the
        # incremental path (the port's endpoint changes), not a rebuild.
        def write(text):
            tmp = os.path.join(self.dir, ".slices.tmp")
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, os.path.join(self.dir, "slices.yaml"))

        def wait_count(n):
            deadline = time.time() + 10
            while time.time() < deadline:
                r = get(SELECTED)
                if r and r[1]["localEndpoints"] == n:
                    return r
                time.sleep(0.1)
            self.fail("localEndpoints never became %d; last %r" % (n, r))

        try:
            write(SLICES.replace('"10.244.1.3"]\n    conditions: {ready: true}',
                                 '"10.244.1.3"]\n    conditions: {ready: false}')
                  .replace('"fd00:244:1::3"]\n    conditions: {ready: true}',
                           '"fd00:244:1::3"]\n    conditions: {ready: false}'))
            self.assertEqual(wait_count(1)[0], 200)
        finally:
            write(SLICES)
        wait_count(2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
