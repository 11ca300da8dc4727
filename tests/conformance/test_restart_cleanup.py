#!/usr/bin/env python3
"""Acceptance test 3 of issue 3: `sliceproxy cleanup` leaves no sliceproxy table behind; after
`kill -9` the rules stay and traffic keeps flowing; a second run adopts that state without a
single failed connection during its start, and converges on the current manifests (a service
deleted while sliceproxy was down is no longer handled)."""

import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import kernel_state  # noqa: E402
import manifests  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import (CLUSTER_CIDR, Streams, answered, dropped, evaluate,  # noqa: E402
                       from_outside, refused)
from manifests import ep, port, svc  # noqa: E402
from sandbox import Sandbox  # noqa: E402

HTTP_NP = port(80, 8080, node_port=30080)


def ours(sb):
    """The kernel objects the backend under test owns in node-a."""
    return kernel_state.owned(sb, proxymod.backend())


class RestartAndCleanup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox()
        cls.sb.__enter__()
        for pod in ("a2", "a3", "b2"):
            cls.sb.pod(pod).listen("tcp", 8080)

    @classmethod
    def tearDownClass(cls):
        cls.sb.teardown()

    def setUp(self):
        proxymod.cleanup(self.sb)
        self.sb.flush_conntrack()
        self.dir = manifests.ManifestDir(self.sb.tmpdir("restart"))
        self.dir.write("nodes.json", manifests.nodes())
        self.dir.write("steady.json", svc("steady", ["10.96.0.2", "fd00:96::2"], HTTP_NP,
                                          [ep("a2"), ep("b2")], type="NodePort"))

    def check(self, *probes):
        outside = kernel_state.serves_outside(proxymod.backend())
        for p in probes:
            if not outside and from_outside(p.frm):
                continue  # declared unsupported in expectations.json
            res = self.sb.agent(p.frm).probe(p.proto, p.to, p.port, n=p.count(),
                                             timeout=p.wait())
            err = evaluate(self.sb, p, res)
            self.assertIsNone(err, "%s: %s\n%s" % (
                p.describe(), err, kernel_state.describe(self.sb, proxymod.backend())))

    def test_cleanup_leaves_no_sliceproxy_table(self):
        proxy = proxymod.SliceProxy(self.sb, self.dir.path, CLUSTER_CIDR).start()
        self.check(answered("a10", "10.96.0.2", 80, {"a2", "b2"}),
                   answered("a10", "fd00:96::2", 80, {"a2", "b2"}),
                   answered("client", "10.0.0.10", 30080, {"a2", "b2"}))
        self.assertTrue(ours(self.sb), "the backend owns nothing in the kernel while running")
        self.assertEqual(proxy.stop(), 0, proxy.log())
        # SIGTERM leaves the data plane as programmed ...
        self.check(answered("a10", "10.96.0.2", 80, {"a2", "b2"}))
        # ... and cleanup removes all of it
        p = proxymod.cleanup(self.sb)
        self.assertEqual(p.returncode, 0, p.stderr)
        left = ours(self.sb)
        self.assertEqual(left, [], "left behind after cleanup: %s" % left)
        self.check(dropped("a10", "10.96.0.2", 80),  # the router drops service addresses
                   refused("client", "10.0.0.10", 30080))
        # cleanup is idempotent
        p = proxymod.cleanup(self.sb)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(ours(self.sb), [])

    def test_kill9_keeps_rules_and_second_run_adopts_without_gap(self):
        self.dir.write("doomed.json", svc("doomed", "10.96.0.3", port(80, 8080),
                                          [ep("a3")]))
        first = proxymod.SliceProxy(self.sb, self.dir.path, CLUSTER_CIDR).start()
        self.check(answered("a10", "10.96.0.3", 80, {"a3"}))
        tables_before = sorted(ours(self.sb))
        # Every agent the test uses runs before the streams start: starting one (a Python
        # interpreter) while they run takes the qemu guest's one emulated CPU for seconds, and
        # the servers' late accepts then look like SYNs lost to a restart gap.
        for agent in ("client", "a10", "a11", "a12"):
            self.sb.agent(agent)
        streams = Streams(self.sb)
        second = None
        try:
            if kernel_state.serves_outside(proxymod.backend()):
                streams.start("nodeport", "client", "tcp", "10.0.0.10", 30080, rate=20)
            streams.start("clusterip", "a10", "tcp", "10.96.0.2", 80, rate=20)
            streams.start("ipv6", "a11", "tcp", "fd00:96::2", 80, rate=10)
            time.sleep(1.0)
            first.stop(signal.SIGKILL)
            time.sleep(1.5)
            # rules stay after a crash
            self.assertEqual(sorted(ours(self.sb)), tables_before)
            self.check(answered("a12", "10.96.0.3", 80, {"a3"}))
            # while it is down: one service deleted, one endpoint added to the steady service
            self.dir.delete("doomed.json")
            self.dir.write("steady.json", svc("steady", ["10.96.0.2", "fd00:96::2"], HTTP_NP,
                                              [ep("a2"), ep("b2"), ep("a3")], type="NodePort"))
            second = proxymod.SliceProxy(self.sb, self.dir.path, CLUSTER_CIDR).start()
            time.sleep(2.0)
        finally:
            streams.stop()
        text, problems = streams.report()
        print("\n" + text, file=sys.stderr)
        self.assertFalse(problems, "connections failed around kill -9 and restart:\n" +
                         "\n".join(problems) + "\n" + text + "\nsecond run:\n" +
                         (second.log() if second else ""))
        # the second run converged on the manifests and owns one table per family
        self.check(dropped("a12", "10.96.0.3", 80),
                   answered("a12", "10.96.0.2", 80, {"a2", "b2", "a3"}),
                   answered("client", "10.0.0.10", 30080, {"a2", "b2", "a3"}))
        self.assertEqual(sorted(ours(self.sb)), tables_before)
        # and it keeps applying changes
        mark = second.syncs()
        self.dir.write("steady.json", svc("steady", ["10.96.0.2", "fd00:96::2"], HTTP_NP,
                                          [ep("b2")], type="NodePort"))
        second.wait_sync_after(mark)
        self.check(answered("a12", "10.96.0.2", 80, {"b2"}, n=30))
        self.assertEqual(second.stop(), 0, second.log())
        self.assertFalse(second.errors(), "\n".join(second.errors()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
