#!/usr/bin/env python3
"""Issue 18, kernel faults on the real data plane (nftables backend in node-a of the conformance
sandbox), injected through sliceproxy-testing's --testing-fault-file (proxier/core/injected_faults.h):

- an nf_tables batch the kernel refuses after processing every message of it (reported as
  EPERM, ENOBUFS, ENOMEM in turn): the kernel keeps the last good state (`nft list` unchanged,
  traffic still goes to the old endpoints, the new service is not there), the error names what
  was being programmed, the sync is retried (a full sync, within --sync-period) and converges;
  kubeproxy_sync_proxy_rules_nftables_sync_failures_total and sliceproxy_sync_failures_total
  count each failure;
- a real receive-buffer overrun (ENOBUFS on the netlink socket) while reading a batch's answers:
  reported as an unknown outcome, the full sync that follows converges, later syncs work;
- conntrack deletes that fail: logged naming the flow, counted
  (sliceproxy_conntrack_cleanup_errors_total), the stale flows stay until the next sync retries
  them and deletes them; the flows of the endpoint that stays are never touched.

Needs root; fails, never skips, without it.
"""

import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))

import manifests as mf  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import CLUSTER_CIDR  # noqa: E402
from sandbox import Sandbox, pod_ip  # noqa: E402

TESTING_BIN = os.environ.get("SLICEPROXY_TESTING_BIN") or os.path.join(
    proxymod.REPO, "build", "tests", "sliceproxy-testing")
SYNC_PERIOD = 3.0
WEB_IP, DNS_IP = "10.96.0.11", "10.96.0.53"
STRERROR = {"EPERM": "Operation not permitted", "ENOBUFS": "No buffer space available",
            "ENOMEM": "Cannot allocate memory"}


class TestingProxy(proxymod.SliceProxy):
    """sliceproxy-testing with a fault file and a short --sync-period (the retry interval)."""

    def __init__(self, sandbox, manifest_dir, fault_file):
        super().__init__(sandbox, manifest_dir, list(CLUSTER_CIDR) + [
            "--testing-fault-file", fault_file, "--sync-period", "%gs" % SYNC_PERIOD])

    def command(self):
        cmd = super().command()
        cmd[0] = TESTING_BIN
        return cmd

    def count(self, text):
        with self.cond:
            return sum(1 for l in self.lines if text in l)

    def wait_line(self, pattern, after=0, timeout=10.0):
        """The first line matching `pattern` among the lines logged after line `after`."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for l in self.lines[after:]:
                    if re.search(pattern, l):
                        return l
                if self.proc.poll() is not None:
                    raise AssertionError("sliceproxy exited:\n" + self.log())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no line matching %r within %.0fs:\n%s"
                                         % (pattern, timeout, self.log(60)))
                self.cond.wait(min(left, 0.1))

    def mark(self):
        with self.cond:
            return len(self.lines)


def web(endpoints, extra=None):
    objs = mf.svc("web", WEB_IP, mf.port(80, 8080, name="http"), [mf.ep(p) for p in endpoints])
    if extra is not None:
        objs += mf.svc("extra%d" % extra, "10.96.0.%d" % (20 + extra),
                       mf.port(80, 8080, name="http"), [mf.ep("a2")])
    return objs


class KernelFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sb = Sandbox().__enter__()
        try:
            for p in ("a2", "a3", "b2"):
                cls.sb.pod(p).listen("tcp", 8080)
                cls.sb.pod(p).listen("udp", 5353)
            cls.client = cls.sb.agent("a10")
        except BaseException:
            cls.sb.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        proxymod.cleanup(cls.sb)
        cls.sb.__exit__(None, None, None)

    def setUp(self):
        proxymod.cleanup(self.sb)
        self.sb.flush_conntrack()
        self.dir = mf.ManifestDir(self.sb.tmpdir("kfaults"))
        self.faults = os.path.join(self.sb.tmpdir("kfaults-ctl"), "faults")
        self.dir.write("nodes.json", mf.nodes())
        self.dir.write("web.json", web(["a2", "b2"]))
        self.dir.write("dns.json", mf.svc("dns", DNS_IP, mf.port(53, 5353, "UDP", name="dns"),
                                          [mf.ep("a2"), mf.ep("b2")]))
        self.p = TestingProxy(self.sb, self.dir.path, self.faults).start(timeout=30)

    def tearDown(self):
        rc = self.p.stop()
        self.assertEqual(rc, 0, self.p.log())

    # -- helpers ---------------------------------------------------------------------------------

    def arm(self, spec):
        mark = self.p.mark()
        tmp = self.faults + ".tmp"
        with open(tmp, "w") as f:
            f.write(spec + "\n")
        os.rename(tmp, self.faults)
        want = spec.split(":")[0] if spec else "none"
        self.p.wait_line(r"testing: faults armed: .*%s" % re.escape(want), mark)

    def kernel(self):
        """sliceproxy's IPv4 tables as `nft list` prints them, without the flow record (its
        elements expire as time passes)."""
        out = self.sb.node_exec(["nft", "list", "ruleset", "ip"]).stdout
        tables = re.split(r"(?m)^(?=table )", out)
        return "".join(t for t in tables if t.startswith("table ip sliceproxy")
                       and not t.startswith("table ip sliceproxy-flows "))

    def metric(self, name):
        out = self.sb.node_exec(["curl", "-sf", "http://127.0.0.1:10249/metrics"]).stdout
        m = re.search(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), out)
        self.assertIsNotNone(m, "no metric %s:\n%s" % (name, out))
        return float(m.group(1))

    def web_pods(self, n=8):
        res = self.client.probe("tcp", WEB_IP, 80, n=n, timeout=1.0, sequential=True)
        self.assertTrue(all(r["r"] == "answered" for r in res), res)
        return {r["pod"] for r in res}

    def udp_flows(self):
        """{endpoint address: number of flows} of the dns service's conntrack entries in node-a."""
        out = self.sb.node_exec(["conntrack", "-L", "-p", "udp", "--orig-dst", DNS_IP],
                                check=False).stdout
        flows = {}
        for line in out.splitlines():
            m = re.search(r"src=(\S+) dst=\S+ sport=5353 dport=\d+", line)
            if m:
                flows[m.group(1)] = flows.get(m.group(1), 0) + 1
        return flows

    # -- tests -----------------------------------------------------------------------------------

    def test_refused_batch_keeps_the_last_good_state_then_converges(self):
        endpoints = ["a2", "b2"]
        for i, err in enumerate(("EPERM", "ENOBUFS", "ENOMEM")):
            before = self.kernel()
            self.assertIn("table ip sliceproxy-svc-0", before)
            self.arm("nft-commit:%s:once" % err)
            mark = self.p.mark()
            new = ["a2", "a3"] if endpoints == ["a2", "b2"] else ["a2", "b2"]
            # One file, one event, one sync: new endpoints for web and a new service.
            self.dir.write("web.json", web(new, extra=i))
            error = self.p.wait_line(r"sync with backend nftables failed", mark)
            # Nothing of the refused batch is in the kernel, and traffic still follows it.
            self.assertEqual(self.kernel(), before, "the kernel changed after a refused batch")
            self.assertLessEqual(self.web_pods(4), set(endpoints))
            lost = self.client.probe("tcp", "10.96.0.%d" % (20 + i), 80, timeout=0.5)[0]
            self.assertNotEqual(lost["r"], "answered", "the refused service answers")
            # The error says what was programmed and what became of it.
            self.assertIn(STRERROR[err], error)
            self.assertIn("injected fault", error)
            self.assertIn("conf/web:http/TCP/IPv4 (changed)", error)
            self.assertIn("conf/extra%d:http/TCP/IPv4 (new)" % i, error)
            self.assertIn("the kernel applied none of the batch", error)
            self.p.wait_line(r"retrying the failed sync within 3\.0 s", mark)
            # The retry is a full sync, within the sync period, and converges.
            t0 = time.monotonic()
            self.p.wait_line(r"full sync:", mark, timeout=SYNC_PERIOD + 5)
            retry_s = time.monotonic() - t0
            self.assertEqual(self.p.errors()[-1], error, "an error after the retry")
            self.assertLessEqual(self.web_pods(), set(new))
            res = self.client.probe("tcp", "10.96.0.%d" % (20 + i), 80, timeout=1.0)[0]
            self.assertEqual(res.get("pod"), "a2", res)
            ruleset = self.kernel()
            for p in new:
                self.assertIn("%s . 8080" % pod_ip(p), ruleset)
            endpoints = new
            print("%s: refused batch left the kernel unchanged; converged %.1fs later\n  %s"
                  % (err, retry_s, error.split("] ", 2)[-1][:400]))
        self.assertEqual(self.metric("kubeproxy_sync_proxy_rules_nftables_sync_failures_total"), 3)
        self.assertEqual(self.metric('sliceproxy_sync_failures_total'), 3)

    def test_receive_buffer_overrun_is_an_unknown_outcome_then_converges(self):
        self.arm("nft-ack-overrun:ENOBUFS:once")
        mark = self.p.mark()
        self.dir.write("web.json", web(["a2", "a3"], extra=7))
        error = self.p.wait_line(r"sync with backend nftables failed", mark)
        self.assertIn("No buffer space available", error)
        self.assertIn("receive buffer overran; whether the batch was committed is unknown", error)
        self.assertIn("conf/extra7:http/TCP/IPv4 (new)", error)
        print("\n  " + error.split("] ", 2)[-1][:400])
        self.p.wait_line(r"full sync:", mark, timeout=SYNC_PERIOD + 5)
        self.assertLessEqual(self.web_pods(), {"a2", "a3"})
        self.assertEqual(self.client.probe("tcp", "10.96.0.27", 80)[0].get("pod"), "a2")
        # The socket works as before: a later change is a clean partial sync.
        mark = self.p.mark()
        self.dir.write("web.json", web(["a2", "b2"], extra=7))
        line = self.p.wait_line(r"partial sync:|sync with backend", mark)
        self.assertIn("partial sync:", line)
        self.assertLessEqual(self.web_pods(), {"a2", "b2"})
        self.assertEqual(self.metric("kubeproxy_sync_proxy_rules_nftables_sync_failures_total"), 1)

    def test_failed_conntrack_deletes_are_counted_and_retried(self):
        # UDP flows from distinct source ports, spread over both endpoints.
        res = self.client.probe("udp", DNS_IP, 53, n=24, timeout=1.0)
        self.assertTrue(all(r["r"] == "answered" for r in res), res)
        flows = self.udp_flows()
        a2, b2 = pod_ip("a2"), pod_ip("b2")
        self.assertTrue(flows.get(a2) and flows.get(b2), flows)
        self.arm("conntrack-delete:EPERM:always")
        errors_before = self.metric("sliceproxy_conntrack_cleanup_errors_total")
        mark = self.p.mark()
        self.dir.write("dns.json", mf.svc("dns", DNS_IP, mf.port(53, 5353, "UDP", name="dns"),
                                          [mf.ep("a2")]))
        failed = self.p.wait_line(r"conntrack: cannot delete", mark)
        self.assertIn("Operation not permitted", failed)
        self.assertIn("to %s:53" % DNS_IP, failed)
        print("\n  " + failed.split("] ", 2)[-1][:300])
        self.p.wait_line(r"conntrack: the flows of 1 stale selectors are tried again", mark)
        self.assertEqual(self.udp_flows(), flows, "flows changed although every delete failed")
        self.assertEqual(self.metric("sliceproxy_conntrack_cleanup_errors_total") - errors_before,
                         flows[b2])
        # Deletes work again: the next sync (the periodic one, nothing changed) retries them.
        self.arm("")
        mark = self.p.mark()
        done = self.p.wait_line(r"conntrack: \d+ stale flows deleted", mark,
                                timeout=SYNC_PERIOD + 5)
        self.assertIn("conntrack: %d stale flows deleted, 0 already gone, 0 errors" % flows[b2],
                      done)
        after = self.udp_flows()
        self.assertEqual(after, {a2: flows[a2]}, "the retry deleted too little or too much")
        res = self.client.probe("udp", DNS_IP, 53, n=4, timeout=1.0)
        self.assertEqual({r.get("pod") for r in res}, {"a2"}, res)


if __name__ == "__main__":
    unittest.main(verbosity=2)
