#!/usr/bin/env python3
"""How the API source recovers from watches the API server will not resume, end to end, against
the test API server (each test has its own server and sliceproxy, dry-run backend):

- an etcd restore: sliceproxy's resourceVersion is ahead of the server, every watch from it gets
  504 "Too large resource version"; sliceproxy must relist and program what comes after;
- a resourceVersion the server cannot parse (400): same;
- a source that makes no progress turns /healthz 503 naming the source, and 200 again after; an
  idle cluster (watches that time out and restart, bookmarks) stays 200;
- after a relist, a watch dropped 1.8 s later is retried at once, not after the backoff grown
  during the outage before;
- an invalid --master URL with credentials never shows the password.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))
sys.path.insert(0, HERE)

import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402
from harness import BINARY, make_plane  # noqa: E402
from ops_common import free_port, http_get, wait_for  # noqa: E402

WEB = "default/web:http/TCP/IPv4"


def svc_port(name):
    return "default/%s:http/TCP/IPv4" % name


class Cluster:
    """A test API server with a node, one service, and sliceproxy watching it."""

    def __init__(self, server_kw=None, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="sliceproxy-watch-e2e-")
        certs = tls_certs.generate(self.dir)
        # No bookmarks unless a test asks: a bookmark is progress, and some tests need none.
        kw = dict(bookmark_interval=600)
        kw.update(server_kw or {})
        self.srv = ApiServer(certs, **kw).start()
        self.srv.create(k.node("node-a"))
        self.add("web", "10.96.0.20", "10.244.1.1")
        self.expected = {WEB: ["10.244.1.1:8080"]}
        kc = kubeconfig_file.write(os.path.join(self.dir, "kubeconfig"), self.srv.url, certs.ca_cert,
                                   token="test-token")
        self.plane = make_plane(node="node-a", extra_args=extra_args).start(kc)
        self.plane.wait_for(self.expected, timeout=20)
        self.plane.wait_log(r"listed: synced")

    def add(self, name, cluster_ip, endpoint_ip):
        self.srv.create(k.service(name, cluster_ip))
        self.srv.create(k.endpoint_slice(name + "-1", name, [k.endpoint(endpoint_ip, "node-a")]))

    def close(self):
        code = self.plane.stop()
        self.srv.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


class ApiWatchRecoveryTest(unittest.TestCase):
    def start(self, **kw):
        c = Cluster(**kw)
        self.addCleanup(self.finish, c)
        return c

    def finish(self, c):
        code = c.close()
        if code != 0:
            raise AssertionError("sliceproxy exited with %s:\n%s" % (code, c.plane.stderr()[-5000:]))

    def test_etcd_restore_too_large_resource_version_relists(self):
        c = self.start()
        snapshot = c.srv.store.backup()
        # Written after the backup: the Service and EndpointSlice watches' resourceVersions move
        # well ahead of what the restored server will reach during the test. (A restore that
        # reuses resourceVersions a client already holds cannot be told apart by any client:
        # that is why etcdutl restores for Kubernetes use --bump-revision --mark-compacted.)
        c.add("lost", "10.96.0.21", "10.244.1.2")
        for i in range(10):
            c.srv.update(k.service("lost", "10.96.0.21", labels={"generation": str(i)}))
            c.srv.update(k.endpoint_slice("lost-1", "lost", [k.endpoint("10.244.1.2", "node-a")],
                                          labels={"generation": str(i)}))
        c.expected[svc_port("lost")] = ["10.244.1.2:8080"]
        c.plane.wait_for(c.expected)

        # etcd is restored from the backup and the API server restarted.
        c.srv.stop()
        c.srv.store.restore(snapshot)
        c.srv.refuse(0)
        c.add("fresh", "10.96.0.22", "10.244.1.3")
        # The restore took "lost" away; "fresh" was created after it.
        del c.expected[svc_port("lost")]
        c.expected[svc_port("fresh")] = ["10.244.1.3:8080"]
        c.plane.wait_for(c.expected, timeout=15)
        c.plane.wait_log(r"Too large resource version")
        c.plane.wait_log(r"relisted at resourceVersion")

    def test_unparseable_resource_version_relists(self):
        c = self.start()
        # Something between us and etcd hands out a resourceVersion the server cannot parse.
        for res, kind, api in (("services", "Service", "v1"),
                               ("endpointslices", "EndpointSlice", "discovery.k8s.io/v1"),
                               ("nodes", "Node", "v1")):
            c.srv.inject(res, json.dumps({"type": "BOOKMARK", "object": {
                "kind": kind, "apiVersion": api, "metadata": {"resourceVersion": "not-a-number"}}}).encode())
        time.sleep(0.5)  # the bookmarks are written
        c.srv.drop_watches()
        c.plane.wait_log(r"HTTP 400|400 BadRequest|invalid resourceVersion")
        c.add("fresh", "10.96.0.22", "10.244.1.3")
        c.expected[svc_port("fresh")] = ["10.244.1.3:8080"]
        c.plane.wait_for(c.expected, timeout=15)

    def test_stuck_source_turns_healthz_unhealthy_and_idle_does_not(self):
        port = free_port()
        # Watches end every 2 s and are restarted; a bookmark every second.
        c = self.start(server_kw=dict(max_watch_timeout=2, bookmark_interval=1),
                       extra_args=["--healthz-bind-address", "127.0.0.1:%d" % port,
                                   "--source-progress-timeout", "3s"])
        url = "http://127.0.0.1:%d/healthz" % port
        deadline = time.time() + 8
        while time.time() < deadline:
            code, _, body = http_get(url)
            self.assertEqual(code, 200, "an idle, healthy source must stay healthy: %s" % body)
            time.sleep(0.2)

        c.srv.refuse(12)  # unreachable for 12 s, then back
        t0 = time.time()
        code, body = wait_for(lambda: (lambda r: (r[0], r[2]) if r[0] == 503 else None)(http_get(url)),
                              timeout=10, what="/healthz 503 while the API server is unreachable")
        self.assertGreaterEqual(time.time() - t0, 2.0, "not before the bound: %s" % body)
        src = json.loads(body)["source"]
        self.assertIn(c.srv.url.split("://")[1], src["name"])
        self.assertGreater(src["secondsWithoutProgress"], 3.0, body)
        self.assertTrue(src["stuck"], body)
        # The API server is back: a fresh list or watch makes the source healthy again.
        wait_for(lambda: http_get(url)[0] == 200, timeout=30, what="/healthz 200 after recovery")
        c.add("fresh", "10.96.0.22", "10.244.1.3")
        c.expected[svc_port("fresh")] = ["10.244.1.3:8080"]
        c.plane.wait_for(c.expected, timeout=10)

    def test_backoff_starts_over_after_a_relist(self):
        c = self.start()
        # An outage long enough to grow the backoff (0.8, 1.6, 3.2, 6.4 s ...), ending with the
        # history compacted: every watch gets 410 and relists.
        relisted = c.plane.stderr().count("relisted at resourceVersion")
        c.srv.refuse(7, compact=True)
        c.plane.wait_log(r"relisted at resourceVersion", timeout=40, count=relisted + 3)
        time.sleep(1.8)
        c.srv.drop_watches()
        t0 = time.time()
        c.add("fresh", "10.96.0.22", "10.244.1.3")
        c.expected[svc_port("fresh")] = ["10.244.1.3:8080"]
        # The relist was progress: the retry waits the initial 0.8 s (+20% jitter), not 12.8 s.
        c.plane.wait_for(c.expected, timeout=3.0)
        self.assertLess(time.time() - t0, 3.0)

    def test_master_url_password_is_never_shown(self):
        for url in ("https://admin:s3cr3t-pw@127.0.0.1:6443",
                    "ftp://admin:s3cr3t-pw@127.0.0.1:6443",
                    "https://admin:s3cr3t-pw@127.0.0.1:99999/x"):
            p = subprocess.run([BINARY, "--backend", "dry-run", "--master", url, "--hostname-override", "node-a",
                                "--healthz-bind-address", "", "--metrics-bind-address", "", "--debug-port", "0"],
                               capture_output=True, text=True, timeout=20)
            out = p.stdout + p.stderr
            self.assertNotEqual(p.returncode, 0, out)
            self.assertIn("--master", out)
            self.assertNotIn("s3cr3t-pw", out)
            self.assertIn("admin:xxxxx@", out)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
