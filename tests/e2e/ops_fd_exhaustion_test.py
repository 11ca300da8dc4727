#!/usr/bin/env python3
"""Issue 12, point 5: with its descriptors exhausted by idle connections, the daemon neither
spins (its accept loop backs off on EMFILE) nor stops answering /healthz (connections are capped
per listener, the oldest making room, and idle ones time out)."""

import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import BINARY, free_port, http_get, node_manifest, wait_for  # noqa: E402

HOGS = 400
FD_LIMIT = 256


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FdExhaustionTest(unittest.TestCase):
    def test_idle_connections_cannot_take_healthz_down(self):
        tmp = tempfile.mkdtemp(prefix="sliceproxy-fd-")
        with open(os.path.join(tmp, "node.yaml"), "w") as f:
            f.write(node_manifest())
        healthz, metrics = free_port(), free_port()
        args = [BINARY, "--backend", "dry-run", "--source-dir", tmp, "--hostname-override",
                "node-a", "--healthz-bind-address", f"127.0.0.1:{healthz}",
                "--metrics-bind-address", f"127.0.0.1:{metrics}", "--debug-port", "0"]
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))  # noqa
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=limit)
        err = []
        threading.Thread(target=lambda: [err.append(l) for l in p.stderr], daemon=True).start()
        hogs = []
        try:
            wait_for(lambda: http_get(f"http://127.0.0.1:{healthz}/healthz")[0] in (200, 503),
                     what="daemon up")
            # Idle connections spread over both listeners: more than the daemon has descriptors.
            for i in range(HOGS):
                s = socket.create_connection(("127.0.0.1", healthz if i % 2 else metrics))
                hogs.append(s)
            time.sleep(0.5)
            before, t0 = cpu_seconds(p.pid), time.monotonic()
            time.sleep(3.0)
            share = (cpu_seconds(p.pid) - before) / (time.monotonic() - t0)
            self.assertLess(share, 0.3, "the daemon spins at %.0f%% CPU with descriptors "
                            "exhausted" % (share * 100))
            # /healthz answers while the idle connections are still open.
            t0 = time.monotonic()
            code, _, body = wait_for(lambda: http_get(f"http://127.0.0.1:{healthz}/healthz",
                                                      timeout=2), timeout=20,
                                     what="/healthz with %d idle connections open" % HOGS)
            self.assertIn(code, (200, 503), body)
            sys.stderr.write("  /healthz answered %.1fs after asking, %.0f%% CPU while "
                             "exhausted\n" % (time.monotonic() - t0, share * 100))
            self.assertIsNone(p.poll(), "".join(err))
        finally:
            for s in hogs:
                s.close()
            p.terminate()
            p.wait(timeout=10)
        self.assertEqual(p.returncode, 0, "".join(err))


if __name__ == "__main__":
    unittest.main(verbosity=2)
