#!/usr/bin/env python3
"""Issue 12, point 1: no listener bind failure may stop the daemon. A healthCheckNodePort that is
taken (by another program, or equal to sliceproxy's own healthz port) is logged with its
Service, counted in sliceproxy_healthcheck_port_bind_failures_total and retried, and nothing
else is affected; a startup listener whose address is in use is retried for 10 s, then the
daemon exits with code 3 and one line naming the flag and the address."""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import BINARY, Daemon, free_port, http_get, node_manifest, wait_for  # noqa: E402
from ops_health_test import lb  # noqa: E402


def hold(port, host="0.0.0.0"):
    """A listening socket on the port, as another program would hold it."""
    s = socket.socket()
    s.bind((host, port))
    s.listen(1)
    return s


def failures(d):
    m = re.search(r"^sliceproxy_healthcheck_port_bind_failures_total (\S+)$", d.scrape(), re.M)
    return float(m.group(1)) if m else None


class HealthCheckPortBindTest(unittest.TestCase):
    def test_taken_port_is_reported_retried_and_harms_nothing(self):
        hc = free_port()
        blocker = hold(hc)
        d = Daemon({"node.yaml": node_manifest(), "lb.yaml": lb(hc)})
        try:
            wait_for(lambda: (failures(d) or 0) >= 1, what="bind failure counted")
            wait_for(lambda: any("health check port %d for Service edge/gw "
                                 "(spec.healthCheckNodePort): cannot listen" % hc in l
                                 for l in d.stderr), what="the failure logged with its Service")
            # Retries (every 5 s) are counted, not logged again.
            wait_for(lambda: failures(d) >= 2, timeout=12, what="a retry")
            logged = [l for l in d.stderr if "cannot listen" in l]
            self.assertEqual(len(logged), 1, "".join(logged))
            # Everything else works.
            self.assertEqual(d.health()[0], 200)
            self.assertIsNone(d.proc.poll())
            blocker.close()
            code, _, body = wait_for(lambda: http_get(f"http://127.0.0.1:{hc}/"), timeout=12,
                                     what="the port served once free")
            self.assertEqual(code, 200, body)
        finally:
            blocker.close()
            self.assertEqual(d.stop(), 0, "".join(d.stderr))

    def test_port_equal_to_the_healthz_port(self):
        d = Daemon({"node.yaml": node_manifest()})
        try:
            d.write("lb.yaml", lb(d.healthz))
            wait_for(lambda: (failures(d) or 0) >= 1, what="bind failure counted")
            self.assertIsNone(d.proc.poll(), "".join(d.stderr))
            code, body = d.health()
            self.assertEqual(code, 200, body)
        finally:
            self.assertEqual(d.stop(), 0, "".join(d.stderr))


class StartupListenerTest(unittest.TestCase):
    def start(self, healthz):
        tmp = tempfile.mkdtemp(prefix="sliceproxy-listen-")
        args = [BINARY, "--backend", "dry-run", "--source-dir", tmp, "--hostname-override",
                "node-a", "--healthz-bind-address", f"127.0.0.1:{healthz}",
                "--metrics-bind-address", "", "--debug-port", "0"]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    def test_address_in_use_exits_3_with_one_line(self):
        port = free_port()
        blocker = hold(port, "127.0.0.1")
        try:
            t0 = time.monotonic()
            p = self.start(port)
            _, err = p.communicate(timeout=30)
            took = time.monotonic() - t0
        finally:
            blocker.close()
        self.assertEqual(p.returncode, 3, err)
        self.assertGreaterEqual(took, 9.5, "gave up before retrying for 10 s")
        errors = [l for l in err.splitlines() if "[error]" in l]
        self.assertEqual(len(errors), 1, err)
        self.assertIn("--healthz-bind-address 127.0.0.1:%d" % port, errors[0])
        self.assertIn("in use", errors[0])
        self.assertNotIn("terminate", err)

    def test_address_freed_within_the_retry_window(self):
        # What a restart right after kill -9 meets: the old process's port frees a moment later.
        port = free_port()
        blocker = hold(port, "127.0.0.1")
        threading.Timer(2.0, blocker.close).start()
        p = self.start(port)
        try:
            code, _, _ = wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz"),
                                  timeout=15, what="healthz after the port freed")
            self.assertIn(code, (200, 503))
            self.assertIsNone(p.poll())
        finally:
            p.terminate()
            _, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
