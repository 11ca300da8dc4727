#!/usr/bin/env python3
"""Issue 12, point 6, through the API: a Service whose externalIP is another Service's address
(the CVE-2020-8554 class, which no allocator stops) does not take the older Service's traffic;
the loser gets one Warning Event (events.k8s.io/v1) that `kubectl describe service` shows, not
one per sync."""

import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apiserver"))

import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402
from harness import make_plane  # noqa: E402

OWNER = "default/owner:http/TCP/IPv4"
THIEF = "default/thief:http/TCP/IPv4"


class ApiEventsTest(unittest.TestCase):
    def test_conflict_is_one_warning_event_on_the_losing_service(self):
        d = tempfile.mkdtemp(prefix="sliceproxy-events-")
        certs = tls_certs.generate(d)
        srv = ApiServer(certs).start()
        plane = None
        try:
            srv.create(k.node("node-a"))
            owner = k.service("owner", "10.96.0.10")
            owner["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
            srv.create(owner)
            srv.create(k.endpoint_slice("owner-1", "owner", [k.endpoint("10.244.1.1", "node-a")]))
            kubeconfig = kubeconfig_file.write(os.path.join(d, "kubeconfig"), srv.url,
                                               certs.ca_cert, token="test-token")
            plane = make_plane(node="node-a").start(kubeconfig)
            plane.wait_for({OWNER: ["10.244.1.1:8080"]})

            thief = k.service("thief", "10.96.0.20", externalIPs=["10.96.0.10"])
            srv.create(thief)
            srv.create(k.endpoint_slice("thief-1", "thief", [k.endpoint("10.244.2.1", "node-a")]))
            plane.wait_for({OWNER: ["10.244.1.1:8080"], THIEF: ["10.244.2.1:8080"]})

            def events():
                _, objs = srv.store.snapshot("events")
                return [e for e in objs.values() if e["regarding"]["name"] == "thief"]
            deadline = time.time() + 15
            while not events() and time.time() < deadline:
                time.sleep(0.1)
            evs = events()
            self.assertEqual(len(evs), 1, evs)
            ev = evs[0]
            self.assertEqual(ev["type"], "Warning")
            self.assertEqual(ev["reason"], "FrontendConflict")
            self.assertEqual(ev["reportingController"], "sliceproxy")
            self.assertEqual(ev["regarding"], {"apiVersion": "v1", "kind": "Service",
                                               "namespace": "default", "name": "thief"})
            self.assertIn("10.96.0.10:80/TCP", ev["note"])
            self.assertIn("default/owner", ev["note"])
            self.assertRegex(ev["eventTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

            # More syncs of the same state: no more events.
            srv.update(k.endpoint_slice("thief-1", "thief", [k.endpoint("10.244.2.2", "node-a")]))
            plane.wait_for({OWNER: ["10.244.1.1:8080"], THIEF: ["10.244.2.2:8080"]})
            time.sleep(1.0)
            self.assertEqual(len(events()), 1)
        finally:
            code = plane.stop() if plane else 0
            srv.stop()
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(code, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
