#!/usr/bin/env python3
"""Issue 18, process faults on the real data plane (nftables backend, in node-a of the
conformance sandbox): kill -9 at several moments of the cold sync of a 100,000-endpoint service,
and SIGTERM during it, each followed by a restart.

A cold sync is one nf_tables transaction per family, so after any kill the kernel holds either
nothing of that run or all of it: the big service's endpoints map has 0 or 100,000 elements,
never a part, and the main table exists exactly when the service table does. The next run
converges (every endpoint programmed) and an unchanged service answers real TCP. Needs root;
fails, never skips, without it.
"""

import os
import re
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))

import manifests as mf  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import CLUSTER_CIDR  # noqa: E402
from sandbox import Sandbox  # noqa: E402

ENDPOINTS = 100_000
BIG_IP = "10.96.0.90"
# kill -9 this long after the start: before the manifests are read, while they are, during and
# after the sync (the whole start takes about a second here).
KILL_AFTER = (0.05, 0.3, 0.6, 0.9, 1.3)


def big_service():
    svc = mf.service("big", [BIG_IP], [mf.port(80, 8080, name="http")])
    slices = []
    for s in range(ENDPOINTS // 1000):
        eps = [{"addresses": ["10.%d.%d.%d" % (200 + s // 64, (s % 64) * 4 + i // 250,
                                               i % 250 + 1)],
                "conditions": {"ready": True}}
               for i in range(1000)]
        slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "big-%03d" % s, "namespace": mf.NAMESPACE,
                                    "labels": {"kubernetes.io/service-name": "big"}},
                       "addressType": "IPv4", "endpoints": eps,
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return [svc] + slices


class ProcessFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox().__enter__()
        for p in ("a2", "b2"):
            cls.sb.pod(p).listen("tcp", 8080)
        cls.dir = mf.ManifestDir(cls.sb.tmpdir("faults"))
        cls.dir.write("nodes.json", mf.nodes())
        cls.dir.write("web.json", mf.svc("web", "10.96.0.11", mf.port(80, 8080, name="http"),
                                         [mf.ep("a2"), mf.ep("b2")]))
        cls.dir.write("big.json", big_service())

    @classmethod
    def tearDownClass(cls):
        proxymod.cleanup(cls.sb)
        cls.sb.__exit__(None, None, None)

    def proxy(self):
        return proxymod.SliceProxy(self.sb, self.dir.path, CLUSTER_CIDR)

    def kernel(self):
        """(tables, big endpoints programmed) in node-a."""
        out = self.sb.node_exec(["nft", "list", "ruleset", "ip"]).stdout
        tables = set(re.findall(r"^table ip (sliceproxy\S*) \{", out, re.M))
        return tables, out.count("%s . tcp . 80 . 0x" % BIG_IP)

    def assert_all_or_nothing(self, when):
        tables, n = self.kernel()
        self.assertIn(n, (0, ENDPOINTS), "%s: %d of the big service's endpoints programmed"
                      % (when, n))
        svc_tables = {t for t in tables if t.startswith("sliceproxy-svc-")}
        self.assertEqual("sliceproxy" in tables, bool(svc_tables),
                         "%s: main table and service tables not together: %s" % (when, tables))
        self.assertEqual(n == ENDPOINTS, bool(svc_tables), "%s: %s, %d" % (when, tables, n))
        return n

    def assert_converges(self):
        p = self.proxy().start(timeout=120)
        try:
            self.assertEqual(self.kernel()[1], ENDPOINTS)
            res = self.sb.agent("a10").probe("tcp", "10.96.0.11", 80, n=4, sequential=True)
            self.assertTrue(all(r["r"] == "answered" for r in res), res)
            self.assertEqual(p.errors(), [])
        finally:
            self.assertEqual(p.stop(), 0, p.log())

    def test_kill9_during_the_cold_sync(self):
        seen = set()
        for delay in KILL_AFTER:
            proxymod.cleanup(self.sb)
            p = self.proxy().start(wait=False)
            time.sleep(delay)
            p.kill9()
            seen.add(self.assert_all_or_nothing("kill -9 after %.2fs" % delay))
        # The moments chosen straddle the sync: some kills came before it committed.
        self.assertIn(0, seen, "every kill came after the sync: shorten KILL_AFTER")
        self.assert_converges()

    def test_sigterm_during_the_cold_sync_exits_cleanly(self):
        for delay in (0.3, 0.8):
            proxymod.cleanup(self.sb)
            p = self.proxy().start(wait=False)
            time.sleep(delay)
            self.assertEqual(p.stop(signal.SIGTERM, timeout=60), 0, p.log())
            self.assert_all_or_nothing("SIGTERM after %.2fs" % delay)
        self.assert_converges()

    def test_restart_over_a_killed_run_replaces_it(self):
        proxymod.cleanup(self.sb)
        p = self.proxy().start(timeout=120)
        p.kill9()
        self.assertEqual(self.assert_all_or_nothing("after a completed run"), ENDPOINTS)
        self.assert_converges()


if __name__ == "__main__":
    unittest.main(verbosity=2)
