#!/usr/bin/env python3
"""README command 1, checked: the daemon on the example manifests with the dry-run backend prints
the planned state, and each edit of a file in the directory prints only the matching diff."""

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")
EXAMPLES = os.environ.get("SLICEPROXY_EXAMPLES", "examples")

EXTRA_V1 = """
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  clusterIP: 10.96.200.1
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: extra-1
  namespace: default
  labels: {kubernetes.io/service-name: extra}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.244.1.200"]
    nodeName: node-a
  - addresses: ["10.244.2.200"]
    nodeName: node-b
"""


class Daemon:
    def __init__(self, manifest_dir):
        self.proc = subprocess.Popen(
            [BINARY, "--backend", "dry-run", "--source-dir", manifest_dir,
             "--hostname-override", "node-a", "--min-sync-period", "100ms",
             # Other tests run daemons in this network namespace at the same time.
             "--healthz-bind-address", "", "--metrics-bind-address", "", "--debug-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    @staticmethod
    def _pump(stream, q):
        for line in stream:
            q.put(line)

    def _collect(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def next_json(self, timeout=10.0):
        line = self.lines.get(timeout=timeout)
        return json.loads(line)

    def drain(self, quiet=1.5, limit=20.0):
        """Every line printed until the daemon has been quiet for `quiet` seconds."""
        out, deadline = [], time.time() + limit
        while time.time() < deadline:
            try:
                out.append(json.loads(self.lines.get(timeout=quiet)))
            except queue.Empty:
                return out
        raise AssertionError("daemon never went quiet")

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


class DryRunDaemonTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sliceproxy-e2e-")
        for name in os.listdir(EXAMPLES):
            if name.endswith((".yaml", ".yml", ".json")):
                shutil.copy(os.path.join(EXAMPLES, name), self.dir)
        self.daemon = Daemon(self.dir)

    def tearDown(self):
        code = self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(code, 0, "".join(self.daemon.stderr))

    def write(self, name, text):
        # Write-then-rename, the way editors save.
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.dir, name))

    def test_planned_state_then_only_matching_diffs(self):
        head = self.daemon.next_json(timeout=20)
        self.assertEqual(head["op"], "full-sync", head)
        self.assertEqual(head["node"]["name"], "node-a")
        ports = [self.daemon.next_json() for _ in range(head["servicePorts"])]
        self.assertGreaterEqual(len(ports), 7, "the examples define at least 7 service ports")
        names = {p["servicePort"] for p in ports}
        self.assertTrue(all(p["op"] == "program" for p in ports))
        self.assertTrue(any(n.startswith("default/web:") for n in names), names)
        self.assertTrue(any("/UDP/" in n for n in names), "a UDP service port is planned")
        self.assertTrue(any("/IPv6" in n for n in names), "a dual-stack service port is planned")
        self.assertTrue(any(p.get("externalTrafficPolicy") == "Local" for p in ports))
        for p in ports:
            for ep in p["internalEndpoints"]:
                self.assertRegex(ep, r":\d+$")
        self.assertEqual(self.daemon.drain(), [], "nothing more without a change")

        self.write("extra.yaml", EXTRA_V1)
        lines = self.daemon.drain()
        self.assertEqual([(l["op"], l["servicePort"]) for l in lines],
                         [("create", "default/extra:http/TCP/IPv4")], lines)
        self.assertEqual(lines[0]["state"]["internalEndpoints"],
                         ["10.244.1.200:8080", "10.244.2.200:8080"])

        # One endpoint replaced: one update naming exactly the two endpoints that changed.
        self.write("extra.yaml", EXTRA_V1.replace("10.244.2.200", "10.244.2.201"))
        lines = self.daemon.drain()
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["op"], "update")
        self.assertNotIn("state", lines[0], "frontends did not change")
        self.assertEqual(lines[0]["endpointChanges"], [
            {"endpoint": "10.244.2.200:8080", "from": ["cluster"], "to": []},
            {"endpoint": "10.244.2.201:8080", "from": [], "to": ["cluster"]},
        ])

        # A bad edit is reported and changes nothing that was programmed.
        self.write("broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\n"
                                  "spec: {clusterIP: 10.96.200.2, ports: [{port: 70000}]}\n")
        self.assertEqual(self.daemon.drain(), [])
        deadline = time.time() + 5
        while time.time() < deadline and not any("70000" in l for l in self.daemon.stderr):
            time.sleep(0.1)
        self.assertTrue(any("broken" in l and "spec.ports[0].port" in l for l in self.daemon.stderr),
                        "".join(self.daemon.stderr))

        os.remove(os.path.join(self.dir, "extra.yaml"))
        lines = self.daemon.drain()
        self.assertEqual([(l["op"], l["servicePort"]) for l in lines],
                         [("delete", "default/extra:http/TCP/IPv4")], lines)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
