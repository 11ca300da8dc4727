#!/usr/bin/env python3
"""What another program removes from the data plane behind sliceproxy's back (issue 18, Faults >
Kernel) is noticed by the periodic check and repaired within a sync period, with a warning naming
it and `sliceproxy_data_plane_repairs_total`; traffic works again. And what clients depend on
(ClientIP affinity, a UDP flow) survives a full sync and a restart.

With the IPVS backend (CTest conformance_drift_ipvs_vm, in Debian's kernel under qemu) the
removals are `ipvsadm -C`, one virtual service deleted, one real server deleted, the dummy link
deleted, either table deleted and `nft flush ruleset`; with nftables, a table deleted and `nft flush ruleset`."""

import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))

import kernel_state  # noqa: E402
import manifests  # noqa: E402
import netns  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import CLUSTER_CIDR, answered, evaluate  # noqa: E402
from manifests import ep, port, svc  # noqa: E402
from sandbox import Sandbox  # noqa: E402

SYNC_PERIOD = 3.0  # --sync-period: the check runs at least this often
# Under software emulation (the qemu guest) a full sync and the probes take a while.
MARGIN = float(os.environ.get("SLICEPROXY_DRIFT_MARGIN", "6"))
METRICS_PORT = 10249  # sliceproxy's default --metrics-bind-address, on node-a's loopback

# (command run in node-a, what the warning says was gone, command that succeeds once repaired)
REMOVALS = {
    "ipvs": [
        ("ipvsadm -C", "IPVS virtual services", "ipvsadm -L -n | grep -qw 10.96.0.2:80"),
        ("ipvsadm -D -t 10.96.0.2:80", "IPVS virtual service TCP 10.96.0.2:80 removed",
         "ipvsadm -L -n | grep -qw 10.96.0.2:80"),
        # One real server alone: the virtual service and everything else stay.
        ("ipvsadm -d -t 10.96.0.2:80 -r 10.244.1.2:8080",
         "real server 10.244.1.2:8080 of IPVS virtual service TCP 10.96.0.2:80 removed",
         "ipvsadm -L -n -t 10.96.0.2:80 | grep -qw 10.244.1.2:8080"),
        ("ip link del sliceproxy-ipvs", "link sliceproxy-ipvs removed",
         "ip addr show dev sliceproxy-ipvs | grep -q 10.96.0.2/32"),
        ("ip addr del 10.96.0.2/32 dev sliceproxy-ipvs",
         "address 10.96.0.2 removed from link sliceproxy-ipvs",
         "ip addr show dev sliceproxy-ipvs | grep -q 10.96.0.2/32"),
        ("nft delete table ip sliceproxy-ipvs", "table ip sliceproxy-ipvs removed",
         "nft list table ip sliceproxy-ipvs"),
        ("nft delete table ip sliceproxy", "table ip sliceproxy removed",
         "nft list table ip sliceproxy"),
        ("nft flush ruleset", "table ip6 sliceproxy-ipvs removed",
         "nft list table ip6 sliceproxy-ipvs && nft list table ip6 sliceproxy"),
    ],
    "nftables": [
        ("nft delete table ip sliceproxy", "table ip sliceproxy removed",
         "nft list table ip sliceproxy"),
        ("nft flush ruleset", "table ip6 sliceproxy removed", "nft list table ip6 sliceproxy"),
    ],
}

STEADY = port(80, 8080, node_port=30080)


class DriftRepair(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if proxymod.backend() not in REMOVALS:
            raise AssertionError("no removals defined for backend %s" % proxymod.backend())
        cls.sb = Sandbox()
        cls.sb.__enter__()
        for pod in ("a2", "a3", "b2"):
            cls.sb.pod(pod).listen("tcp", 8080)
            cls.sb.pod(pod).listen("udp", 8080)

    @classmethod
    def tearDownClass(cls):
        cls.sb.teardown()

    def setUp(self):
        proxymod.cleanup(self.sb)
        self.sb.flush_conntrack()
        self.dir = manifests.ManifestDir(self.sb.tmpdir("drift"))
        self.dir.write("nodes.json", manifests.nodes())
        self.proxy = None

    def tearDown(self):
        if self.proxy:
            self.proxy.stop()

    def start(self):
        self.proxy = proxymod.SliceProxy(
            self.sb, self.dir.path, list(CLUSTER_CIDR) + ["--sync-period", "%gs" % SYNC_PERIOD]).start()
        return self.proxy

    def sh(self, cmd):
        return self.sb.node_exec(["sh", "-c", cmd], check=False)

    def repairs(self):
        status, body = netns.http_get(self.sb.ns("node-a"), "127.0.0.1", METRICS_PORT,
                                      "/metrics")
        self.assertEqual(status, 200, body[:500])
        m = re.search(r"^sliceproxy_data_plane_repairs_total\{[^}]*\} (\S+)$", body, re.M)
        self.assertIsNotNone(m, "no sliceproxy_data_plane_repairs_total in /metrics")
        return int(float(m.group(1)))

    def check(self, *probes):
        for p in probes:
            res = self.sb.agent(p.frm).probe(p.proto, p.to, p.port, n=p.count(),
                                             timeout=p.wait())
            err = evaluate(self.sb, p, res)
            self.assertIsNone(err, "%s: %s\n%s\n%s" % (
                p.describe(), err, kernel_state.describe(self.sb, proxymod.backend()),
                self.proxy.log() if self.proxy else ""))

    def test_removed_behind_its_back_is_repaired_within_a_sync_period(self):
        self.dir.write("steady.json", svc("steady", ["10.96.0.2", "fd00:96::2"], STEADY,
                                          [ep("a2"), ep("b2")], type="NodePort"))
        traffic = (answered("a10", "10.96.0.2", 80, {"a2", "b2"}),
                   answered("a11", "fd00:96::2", 80, {"a2", "b2"}),
                   answered("client", "10.0.0.10", 30080, {"a2", "b2"}))
        proxy = self.start()
        self.check(*traffic)
        self.assertEqual(self.repairs(), 0)
        done = 0
        for cmd, said, present in REMOVALS[proxymod.backend()]:
            with self.subTest(removal=cmd):
                p = self.sh(cmd)
                self.assertEqual(p.returncode, 0, "%s: %s" % (cmd, p.stderr))
                # Not checked here that it is gone: the daemon may already have repaired it.
                # The warning naming it says that it was.
                t0 = time.monotonic()
                while self.repairs() == done and time.monotonic() - t0 < SYNC_PERIOD + MARGIN:
                    time.sleep(0.1)
                took = time.monotonic() - t0
                self.assertEqual(self.repairs(), done + 1, "not repaired %.1fs after `%s`:\n%s"
                                 % (took, cmd, proxy.log()))
                done += 1
                print("  %-48s repaired after %.1fs" % (cmd, took), file=sys.stderr)
                warned = [l for l in proxy.lines if "behind sliceproxy's back" in l]
                self.assertTrue(warned and said in warned[-1],
                                "the last warning does not say %r:\n%s" % (said, proxy.log()))
                p = self.sh(present)
                self.assertEqual(p.returncode, 0, "after the repair `%s` fails: %s\n%s" % (
                    present, p.stderr, kernel_state.describe(self.sb, proxymod.backend())))
                self.check(*traffic)
        self.assertFalse(proxy.errors(), "\n".join(proxy.errors()))
        # Nothing gone: no more repairs.
        time.sleep(SYNC_PERIOD + 1)
        self.assertEqual(self.repairs(), done)

    def test_affinity_and_udp_flows_survive_full_sync_and_restart(self):
        # ClientIP affinity (IPVS: persistence templates) and UDP flows (IPVS: connection
        # entries; nftables: the flow record) pin each client to one of three pods. Asked again
        # in the reverse order after a full sync and after a restart, every client gets the same
        # pod: a data plane built again would hand them out anew.
        self.dir.write("sticky.json", svc("sticky", "10.96.0.5", port(80, 8080),
                                          [ep("a2"), ep("a3"), ep("b2")], affinity_timeout=600))
        self.dir.write("dns.json", svc("dns", "10.96.0.6", port(53, 8080, proto="UDP"),
                                       [ep("a2"), ep("a3"), ep("b2")]))
        clients = ["a10", "a11", "a12", "a13"]

        def pods(order):
            got = {}
            for i, c in enumerate(order):
                tcp = self.sb.agent(c).probe("tcp", "10.96.0.5", 80, n=3, sequential=True,
                                             timeout=3)
                udp = self.sb.agent(c).probe("udp", "10.96.0.6", 53, n=2, sequential=True,
                                             sport=41000 + clients.index(c), timeout=3)
                for proto, res in (("tcp", tcp), ("udp", udp)):
                    answered_by = {r.get("pod") for r in res}
                    self.assertTrue(all(r["r"] == "answered" for r in res) and
                                    len(answered_by) == 1,
                                    "%s %s: %s" % (c, proto, res))
                    got[(c, proto)] = answered_by.pop()
            return got

        proxy = self.start()
        first = pods(clients)
        self.assertGreater(len(set(first.values())), 1,
                           "the clients are not all on one pod: %s" % first)
        stats = self.ipvs_conns()
        print("  pods by client: %s; IPVS connection counters: %s" % (first, stats),
              file=sys.stderr)
        proxy.full_sync_now()
        self.assertEqual(self.ipvs_conns_reset(stats), {}, "virtual services created anew")
        self.assertEqual(pods(list(reversed(clients))), first, "after a full sync")
        stats = self.ipvs_conns()
        self.assertEqual(proxy.stop(), 0, proxy.log())
        self.proxy = None
        self.start()
        self.assertEqual(self.ipvs_conns_reset(stats), {}, "virtual services created anew")
        self.assertEqual(pods(list(reversed(clients))), first, "after a restart")
        self.assertFalse(self.proxy.errors(), "\n".join(self.proxy.errors()))
        # Persistence and the adopted services read back as programmed: nothing to repair.
        time.sleep(SYNC_PERIOD + 1)
        self.assertEqual(self.repairs(), 0, self.proxy.log())

    # IPVS: a virtual service's connection counter starts at 0 when it is created, so one that
    # did not go down is one that was adopted, not created again.
    def ipvs_conns(self):
        if proxymod.backend() != "ipvs":
            return {}
        time.sleep(2.5)  # the kernel adds up its per-CPU counters every 2 s
        p = self.sh("ipvsadm -L -n --stats")
        self.assertEqual(p.returncode, 0, p.stderr)
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^((?:TCP|UDP)\s+\S+)\s+(\d+)", p.stdout, re.M)}

    def ipvs_conns_reset(self, before):
        now = self.ipvs_conns()
        return {k: (n, now.get(k)) for k, n in before.items() if now.get(k, 0) < n}


if __name__ == "__main__":
    unittest.main(verbosity=2)
