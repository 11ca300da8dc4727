#!/usr/bin/env python3
"""Issue 6, health: /healthz and /livez transitions and healthCheckNodePort servers, against the
running daemon (dry-run backend)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import TESTING_BINARY, Daemon, free_port, http_get, node_manifest, wait_for  # noqa: E402,E501

WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.244.1.{last}"]
    nodeName: node-a
"""

LB = """
apiVersion: v1
kind: Service
metadata: {name: gw, namespace: edge}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  healthCheckNodePort: {hc}
  ports: [{name: https, port: 443, targetPort: 8443, nodePort: 30443}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: gw-1, namespace: edge, labels: {kubernetes.io/service-name: gw}}
addressType: IPv4
ports: [{name: https, port: 8443, protocol: TCP}]
endpoints:
  - addresses: ["10.244.1.50"]
    conditions: {ready: {local_ready}}
    nodeName: node-a
  - addresses: ["10.244.2.50"]
    conditions: {ready: true}
    nodeName: node-b
"""


def lb(hc, local_ready=True):
    return LB.replace("{hc}", str(hc)).replace("{local_ready}", "true" if local_ready else "false")


class HealthzTest(unittest.TestCase):
    def test_healthy_then_stale_then_healthy(self):
        # Health timeout = 2 x sync period = 2 s; min-sync-period 8 s with a burst of 2 keeps
        # the second change after start-up queued for ~8 s.
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": WEB.replace("{last}", "10")},
                   min_sync="8s", sync="1s")
        try:
            code, body = wait_for(lambda: (lambda r: r if r[1]["lastUpdated"] else None)(d.health()),
                                  what="first sync")
            self.assertEqual(code, 200)
            for key in ("lastUpdated", "currentTime", "nodeEligible", "healthy", "status"):
                self.assertIn(key, body)
            self.assertTrue(body["healthy"])
            self.assertTrue(body["nodeEligible"])
            self.assertEqual(set(body["status"]), {"IPv4", "IPv6"})
            code, body = d.health("/livez")
            self.assertEqual(code, 200)

            # First change: uses the second token, applied at once.
            first = body["lastUpdated"]
            d.write("web.yaml", WEB.replace("{last}", "11"))
            wait_for(lambda: d.health()[1]["lastUpdated"] != first, what="second sync")
            # Second change: waits for the token bucket, longer than the health timeout.
            queued_at = time.time()
            d.write("web.yaml", WEB.replace("{last}", "12"))
            code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(d.health()),
                                  timeout=7, what="healthz 503 on a stale update")
            self.assertGreaterEqual(time.time() - queued_at, 1.9)
            self.assertFalse(body["healthy"])
            self.assertFalse(body["status"]["IPv4"]["healthy"])
            self.assertEqual(d.health("/livez")[0], 503)
            # Once applied, healthy again.
            wait_for(lambda: d.health()[0] == 200, timeout=12, what="healthz back to 200")
            self.assertEqual(d.health("/livez")[0], 200)
            metrics = d.scrape()
            self.assertRegex(metrics, r'kubeproxy_proxy_healthz_total\{code="503"\} [1-9]')
            self.assertRegex(metrics, r'kubeproxy_proxy_livez_total\{code="503"\} [1-9]')
        finally:
            d.stop()

    def test_node_being_deleted_or_tainted(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": WEB.replace("{last}", "10")})
        try:
            wait_for(lambda: d.health()[0] == 200 and d.health()[1]["lastUpdated"], what="healthy")
            d.write("node.yaml", node_manifest(deleting=True))
            code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(d.health()),
                                  what="healthz 503 for a Node being deleted")
            self.assertFalse(body["nodeEligible"])
            self.assertEqual(d.health("/livez")[0], 200, "livez ignores node eligibility")
            d.write("node.yaml", node_manifest())
            wait_for(lambda: d.health()[0] == 200, what="eligible again")
            d.write("node.yaml", node_manifest(taint="ToBeDeletedByClusterAutoscaler"))
            code, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(d.health()),
                                  what="healthz 503 for a ToBeDeleted taint")
            self.assertFalse(body["nodeEligible"])
            self.assertEqual(d.health("/livez")[0], 200)
            d.write("node.yaml", node_manifest(taint="some-other-taint"))
            wait_for(lambda: d.health()[0] == 200, what="other taints do not matter")
        finally:
            d.stop()


class HealthCheckNodePortTest(unittest.TestCase):
    def test_lifecycle(self):
        hc = free_port()
        url = f"http://127.0.0.1:{hc}/"
        # The first two syncs fail (retried every second): the port is open but answers 503.
        d = Daemon({"node.yaml": node_manifest(), "lb.yaml": lb(hc)}, sync="1s",
                   extra_args=["--testing-fail-first-syncs", "2"], binary=TESTING_BINARY)
        try:
            code, headers, body = wait_for(lambda: http_get(url), what="health check port open")
            if code == 503:
                import json
                self.assertEqual(json.loads(body)["localEndpoints"], 0)
                self.assertNotIn("X-Load-Balancing-Endpoint-Weight", headers)
            seen_503_first = code == 503
            self.assertTrue(seen_503_first, f"first answer before a completed sync: {code} {body}")

            code, headers, body = wait_for(
                lambda: (lambda r: r if r[0] == 200 else None)(http_get(url)), timeout=10,
                what="200 after the first successful sync")
            import json
            doc = json.loads(body)
            self.assertEqual(doc, {"service": {"namespace": "edge", "name": "gw"},
                                   "localEndpoints": 1, "serviceProxyHealthy": True})
            self.assertEqual(headers.get("X-Load-Balancing-Endpoint-Weight"), "1")

            # The local endpoint stops being ready: 503, no weight.
            d.write("lb.yaml", lb(hc, local_ready=False))
            code, headers, body = wait_for(
                lambda: (lambda r: r if r[0] == 503 else None)(http_get(url)),
                what="503 without local endpoints")
            self.assertEqual(json.loads(body)["localEndpoints"], 0)
            self.assertNotIn("X-Load-Balancing-Endpoint-Weight", headers)
            d.write("lb.yaml", lb(hc))
            wait_for(lambda: http_get(url)[0] == 200, what="200 again")

            # Service gone: listener closed.
            d.remove("lb.yaml")

            def closed():
                try:
                    http_get(url, timeout=1)
                    return False
                except OSError:
                    return True
            wait_for(closed, what="listener closed")
            # And back: listener reopened.
            d.write("lb.yaml", lb(hc))
            wait_for(lambda: http_get(url)[0] == 200, what="listener reopened")
            st = d.state()
            self.assertEqual(st["healthCheckPorts"], [{"service": "edge/gw", "port": hc,
                                                       "localEndpoints": 1, "listening": True}])
        finally:
            d.stop()


# Dual-stack, two ports, two local pods and one remote: kube-proxy reports 2 local endpoints
# (pods), not pods x ports x families (8).
MULTI = """
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: edge}
spec:
  type: LoadBalancer
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  clusterIPs: [10.96.0.60, "fd00:96::60"]
  externalTrafficPolicy: Local
  healthCheckNodePort: {hc}
  ports:
    - {name: https, port: 443, targetPort: 8443, nodePort: 30444}
    - {name: http, port: 80, targetPort: 8080, nodePort: 30081}
"""


def multi_slice(fam, addrs):
    eps = "".join(f"""
  - addresses: ["{a}"]
    conditions: {{ready: true}}
    nodeName: {node}""" for a, node in addrs)
    return f"""
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: multi-{fam}, namespace: edge, labels: {{kubernetes.io/service-name: multi}}}}
addressType: IP{fam}
ports: [{{name: https, port: 8443, protocol: TCP}}, {{name: http, port: 8080, protocol: TCP}}]
endpoints:{eps}
"""


class HealthCheckCountTest(unittest.TestCase):
    def test_counts_local_endpoints_not_ports_or_families(self):
        import json
        hc = free_port()
        text = (MULTI.replace("{hc}", str(hc))
                + multi_slice("v4", [("10.244.1.60", "node-a"), ("10.244.1.61", "node-a"),
                                     ("10.244.2.60", "node-b")])
                + multi_slice("v6", [("fd00:244:1::60", "node-a"), ("fd00:244:1::61", "node-a"),
                                     ("fd00:244:2::60", "node-b")]))
        d = Daemon({"node.yaml": node_manifest(), "multi.yaml": text})
        try:
            url = f"http://127.0.0.1:{hc}/"
            code, headers, body = wait_for(
                lambda: (lambda r: r if r[0] == 200 else None)(http_get(url)),
                what="200 from the health check port")
            self.assertEqual(json.loads(body)["localEndpoints"], 2, body)
            self.assertEqual(headers.get("X-Load-Balancing-Endpoint-Weight"), "2")
        finally:
            d.stop()


class HealthCheckAddressesTest(unittest.TestCase):
    """With --nodeport-addresses, health check node ports listen on those addresses only, as
    kube-proxy's do. In a network namespace of its own with an address in 10.99.0.0/24."""

    def test_listens_on_nodeport_addresses_only(self):
        import shutil
        import subprocess
        import tempfile
        from ops_common import BINARY
        ns = f"sphc{os.getpid()}"
        d = tempfile.mkdtemp(prefix="sliceproxy-hcaddr-")
        proc = None
        try:
            def sh(*cmd):
                subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, timeout=20,
                               capture_output=True)
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
            sh("ip", "link", "set", "lo", "up")
            sh("ip", "link", "add", "hc0", "type", "veth", "peer", "name", "hc1")
            sh("ip", "addr", "add", "10.99.0.1/24", "dev", "hc0")
            sh("ip", "link", "set", "hc0", "up")
            sh("ip", "link", "set", "hc1", "up")
            hc = free_port()
            for name, text in {"node.yaml": node_manifest(), "lb.yaml": lb(hc)}.items():
                with open(os.path.join(d, name), "w") as f:
                    f.write(text)
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, BINARY, "--backend", "dry-run", "--source-dir", d,
                 "--hostname-override", "node-a", "--nodeport-addresses", "10.99.0.0/24",
                 "--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "",
                 "--debug-port", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

            def get(host):
                r = subprocess.run(
                    ["ip", "netns", "exec", ns, sys.executable, "-c",
                     "import sys, urllib.request\n"
                     "try:\n"
                     f"  print(urllib.request.urlopen('http://{host}:{hc}/', timeout=2).status)\n"
                     "except urllib.error.HTTPError as e:\n  print(e.code)\n"
                     "except OSError as e:\n  print('refused', e)"],
                    capture_output=True, text=True, timeout=20)
                return r.stdout.strip()
            wait_for(lambda: get("10.99.0.1") == "200", what="health check port on 10.99.0.1")
            self.assertTrue(get("127.0.0.1").startswith("refused"), get("127.0.0.1"))
        finally:
            if proc:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
