"""Shared helpers for the ops_* end-to-end tests: a sliceproxy daemon (dry-run backend, manifest
directory) with its health, metrics and debug servers on free loopback ports."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")
# The same daemon with test-only fault injection (hidden --testing-* flags).
TESTING_BINARY = os.environ.get("SLICEPROXY_TESTING_BIN", "build/tests/sliceproxy-testing")

NODE_A = """
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {topology.kubernetes.io/zone: zone-a}
  {deletion}
spec:
  podCIDRs: [10.244.1.0/24]
  {taints}
status:
  addresses: [{type: InternalIP, address: 10.0.0.10}]
"""


def node_manifest(deleting=False, taint=None):
    return (NODE_A.replace("{deletion}", "deletionTimestamp: \"2024-01-01T00:00:00Z\"" if deleting else "")
            .replace("{taints}", f"taints: [{{key: {taint}, effect: NoSchedule}}]" if taint else ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    """(status, headers, body) without raising on 5xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def wait_for(pred, timeout=15.0, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Daemon:
    def __init__(self, files, extra_args=(), min_sync="100ms", sync="30s", binary=None):
        self.dir = tempfile.mkdtemp(prefix="sliceproxy-ops-")
        for name, text in files.items():
            self.write(name, text)
        self.healthz, self.metrics, self.debug = free_port(), free_port(), free_port()
        self.args = [binary or BINARY, "--backend", "dry-run", "--source-dir", self.dir,
                     "--hostname-override", "node-a", "--min-sync-period", min_sync,
                     "--sync-period", sync,
                     "--healthz-bind-address", f"127.0.0.1:{self.healthz}",
                     "--metrics-bind-address", f"127.0.0.1:{self.metrics}",
                     "--debug-port", str(self.debug), *extra_args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stderr = []
        # Drain stdout (dry-run JSON lines) so the daemon never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.stderr.append(l) for l in self.proc.stderr],
                         daemon=True).start()
        wait_for(lambda: self._up(), what="daemon listening")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("daemon exited: " + "".join(self.stderr))
        with socket.create_connection(("127.0.0.1", self.healthz), timeout=0.5):
            return True

    def write(self, name, text):
        tmp = os.path.join(self.dir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.dir, name))

    def remove(self, name):
        os.unlink(os.path.join(self.dir, name))

    def get(self, port, path):
        return http_get(f"http://127.0.0.1:{port}{path}")

    def health(self, path="/healthz"):
        code, headers, body = self.get(self.healthz, path)
        return code, json.loads(body)

    def scrape(self):
        code, _, body = self.get(self.metrics, "/metrics")
        assert code == 200, code
        return body

    def state(self):
        return json.loads(self.get(self.debug, "/debug/state")[2])

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()
