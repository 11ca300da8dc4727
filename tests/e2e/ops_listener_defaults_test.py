#!/usr/bin/env python3
"""Issue 18, Security: the listeners sliceproxy opens when not told otherwise. Health on
0.0.0.0:10256 (where kube-proxy serves it, for the load balancers' checks from outside), metrics
on 127.0.0.1:10249 (kube-proxy's metricsBindAddress default), and no debug server: /debug/state
shows the node's whole service state, so it opens only when --debug-port asks for it, on
127.0.0.1 only; `sliceproxy explain` then finds it on 10260 without being told. The daemon runs
in a network namespace of its own so the default ports are free and its sockets are all its
own."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import BINARY, node_manifest, wait_for  # noqa: E402

WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, protocol: TCP}]
"""


def listening(pid):
    """The TCP sockets listening in the process's network namespace, as "addr:port"."""
    out = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/{pid}/net/{name}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                hexaddr, hexport = fields[1].split(":")
                raw = bytes.fromhex(hexaddr)
                # /proc prints each 32-bit word in host (little-endian) order.
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                addr = socket.inet_ntop(family, raw)
                out.add(f"{addr}:{int(hexport, 16)}" if family == socket.AF_INET
                        else f"[{addr}]:{int(hexport, 16)}")
    return out


class ListenerDefaultsTest(unittest.TestCase):
    def start(self, *args):
        d = tempfile.mkdtemp(prefix="sliceproxy-listeners-")
        self.addCleanup(shutil.rmtree, d, True)
        for name, text in (("node.yaml", node_manifest()), ("web.yaml", WEB)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        cmd = [BINARY, "--backend", "dry-run", "--source-dir", d, "--hostname-override",
               "node-a", *args]
        # unshare execs sh, which execs sliceproxy: the pid is the daemon's.
        p = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"',
                              "sh", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
        self.addCleanup(self.stop, p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.terminate()
            self.assertEqual(p.wait(timeout=15), 0)
        p.stderr.close()

    def wait_listening(self, p, expected):
        def settled():
            if p.poll() is not None:
                raise AssertionError("sliceproxy exited: " + p.stderr.read())
            return listening(p.pid) == expected
        wait_for(settled, timeout=15, what=f"listeners {sorted(expected)}")

    def test_defaults_health_public_metrics_loopback_no_debug(self):
        p = self.start()
        self.wait_listening(p, {"0.0.0.0:10256", "127.0.0.1:10249"})

    def test_debug_server_only_when_asked_and_on_loopback(self):
        p = self.start("--debug-port", "10260")
        self.wait_listening(p, {"0.0.0.0:10256", "127.0.0.1:10249", "127.0.0.1:10260"})
        # explain without --debug-port asks 10260, inside the daemon's namespace.
        r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % p.pid, BINARY, "explain",
                            "10.96.0.10:80"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("10.96.0.10", r.stdout)

    def test_explain_names_the_flag_when_the_debug_server_is_off(self):
        p = self.start()
        self.wait_listening(p, {"0.0.0.0:10256", "127.0.0.1:10249"})
        r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % p.pid, BINARY, "explain",
                            "10.96.0.10:80"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--debug-port", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
