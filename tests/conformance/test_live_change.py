#!/usr/bin/env python3
"""Acceptance test 2 of issue 3: continuous connections to an unchanged service (20/s from the
outside client to its NodePort, 20/s from a pod to its ClusterIP, 10/s over IPv6) all succeed
while 1000 other services are created and updated through manifest files, and while sliceproxy is
restarted (SIGTERM, then started again) under that load. Zero failed connections, and none that
needed a SYN retransmission (which would reveal a dropped packet)."""

import os
import random
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import kernel_state  # noqa: E402
import manifests  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import CLUSTER_CIDR, Probe, Streams, evaluate  # noqa: E402
from manifests import ep, port, svc  # noqa: E402
from sandbox import Sandbox  # noqa: E402

BULK = 1000
PER_FILE = 100


def bulk_ip(i):
    return "10.96.%d.%d" % (16 + i // 250, i % 250 + 1)


def bulk_file(k, pods, gen=0):
    objs = []
    for i in range(k * PER_FILE, (k + 1) * PER_FILE):
        if i % 2:
            p, kind = port(80, 8080, node_port=31000 + i), "NodePort"
        else:
            p, kind = port(80, 8080), "ClusterIP"
        # gen changes the endpoint set of every service of the file
        eps = [ep(x) for x in pods] + ([ep("b%d" % (10 + gen % 5))] if gen else [])
        objs += svc("bulk-%d" % i, bulk_ip(i), p, eps, type=kind)
    return objs


class LiveChange(unittest.TestCase):
    def test_no_failed_connection_while_1000_services_change_and_sliceproxy_restarts(self):
        with Sandbox() as sb:
            proxymod.cleanup(sb)
            for pod in ("a2", "b2", "a3", "b3") + tuple("b%d" % i for i in range(10, 15)):
                sb.pod(pod).listen("tcp", 8080)
            d = manifests.ManifestDir(sb.tmpdir("live"))
            d.write("nodes.json", manifests.nodes())
            d.write("steady.json", svc("steady", ["10.96.0.2", "fd00:96::2"],
                                       port(80, 8080, node_port=30080), [ep("a2"), ep("b2")],
                                       type="NodePort"))
            proxy = proxymod.SliceProxy(sb, d.path, CLUSTER_CIDR).start()
            streams = Streams(sb)
            try:
                if kernel_state.serves_outside(proxymod.backend()):
                    streams.start("nodeport", "client", "tcp", "10.0.0.10", 30080, rate=20)
                streams.start("clusterip", "a10", "tcp", "10.96.0.2", 80, rate=20)
                streams.start("ipv6", "a11", "tcp", "fd00:96::2", 80, rate=10)
                time.sleep(1.0)

                # 1. create 1000 services, 100 per file
                t0 = time.monotonic()
                mark = proxy.syncs()
                for k in range(BULK // PER_FILE):
                    d.write("bulk-%02d.json" % k, bulk_file(k, ["a3"]))
                self.wait_bulk(sb, proxy, mark, {"a3"})
                print("\n  1000 services created and served after %.2fs"
                      % (time.monotonic() - t0), file=sys.stderr)

                # 2. update all of them (one more endpoint each)
                t0 = time.monotonic()
                mark = proxy.syncs()
                for k in range(BULK // PER_FILE):
                    d.write("bulk-%02d.json" % k, bulk_file(k, ["a3", "b3"]))
                self.wait_bulk(sb, proxy, mark, {"a3", "b3"})
                print("  1000 services updated after %.2fs" % (time.monotonic() - t0),
                      file=sys.stderr)

                # 3. a stream of small updates (one file rewritten every 50 ms), during which
                #    sliceproxy is restarted twice (SIGTERM, then a new process)
                stop = threading.Event()
                gens = {}

                def churn():
                    gen = 1
                    while not stop.is_set():
                        k = random.randrange(BULK // PER_FILE)
                        d.write("bulk-%02d.json" % k, bulk_file(k, ["a3", "b3"], gen))
                        gens[k] = gen
                        gen += 1
                        stop.wait(0.05)

                churner = threading.Thread(target=churn)
                churner.start()
                try:
                    for _ in range(2):
                        time.sleep(1.5)
                        rc = proxy.stop()
                        self.assertEqual(rc, 0, proxy.log())
                        self.assertFalse(proxy.errors(), "\n".join(proxy.errors()))
                        t0 = time.monotonic()
                        proxy.start()
                        print("  restarted under load: first full sync after %.2fs"
                              % (time.monotonic() - t0), file=sys.stderr)
                    time.sleep(1.5)
                finally:
                    stop.set()
                    churner.join()
                mark = proxy.syncs()
                time.sleep(0.5)
                # the last rewritten files are what is served
                for k, gen in list(gens.items())[:3]:
                    i = k * PER_FILE + 1
                    want = {"a3", "b3", "b%d" % (10 + gen % 5)}
                    self.probe_until(sb, Probe("a10", bulk_ip(i), 80, pods=frozenset(want)))
                time.sleep(1.0)
            finally:
                streams.stop()
                rc = proxy.stop()
            text, problems = streams.report()
            print(text, file=sys.stderr)
            self.assertFalse(problems, "connections to the unchanged service failed:\n" +
                             "\n".join(problems) + "\n" + text + "\nsliceproxy log:\n" +
                             proxy.log(60))
            self.assertEqual(rc, 0, proxy.log())
            self.assertFalse(proxy.errors(), "\n".join(proxy.errors()))

    def wait_bulk(self, sb, proxy, mark, pods, timeout=30.0):
        proxy.wait_sync_after(mark, timeout=timeout)
        for i in (0, 1, 499, 998, 999):
            self.probe_until(sb, Probe("a10", bulk_ip(i), 80, pods=frozenset(pods)), timeout)
        if kernel_state.serves_outside(proxymod.backend()):
            self.probe_until(sb, Probe("client", "10.0.0.10", 31999, pods=frozenset(pods)),
                             timeout)

    def probe_until(self, sb, probe, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            res = sb.agent(probe.frm).probe(probe.proto, probe.to, probe.port,
                                            n=probe.count(), timeout=1.0)
            err = evaluate(sb, probe, res)
            if not err:
                return
            if time.monotonic() > deadline:
                self.fail("%s: %s" % (probe.describe(), err))
            time.sleep(0.2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
