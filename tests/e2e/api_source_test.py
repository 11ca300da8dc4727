#!/usr/bin/env python3
"""Acceptance of the Kubernetes API source, end to end: the test API server (TLS, bearer token)
and sliceproxy started with --kubeconfig. Each step drives the cluster through the API, or
breaks the API server, and checks what sliceproxy programs.

The data plane is observed through a plane (tests/apiserver/harness.py): the dry-run backend by
default; $SLICEPROXY_E2E_PLANE selects another. $SLICEPROXY_E2E_OUTAGE sets how long the API
server stays unreachable (default 30 s, as in the issue).
"""

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

OUTAGE = float(os.environ.get("SLICEPROXY_E2E_OUTAGE", "30"))
# After the outage, the reconnect waits out the current backoff step (capped at 30 s).
CATCH_UP = 45.0

WEB = "default/web:http/TCP/IPv4"
DNS = "kube-system/dns:dns/UDP/IPv4"
API = "default/api:http/TCP/IPv4"


def web_slice(name, ips, **kw):
    return k.endpoint_slice(name, "web", [k.endpoint(ip, node, **kw.get("conds", {}).get(ip, {}))
                                          for ip, node in ips])


class ApiSourceTest(unittest.TestCase):
    """Steps run in order (test_1 ... test_8) against one API server and one sliceproxy."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-api-e2e-")
        cls.certs = tls_certs.generate(cls.dir)
        cls.srv = ApiServer(cls.certs, bookmark_interval=2).start()
        s = cls.srv
        s.create(k.node("node-a", zone="zone-a"))
        s.create(k.service("web", "10.96.0.20"))
        s.create(web_slice("web-1", [("10.244.1.1", "node-a"), ("10.244.2.1", "node-b")]))
        s.create(web_slice("web-2", [("10.244.3.1", "node-c")]))
        s.create(k.service("dns", "10.96.0.10", namespace="kube-system", ports=(("dns", 53, 53, "UDP"),)))
        s.create(k.endpoint_slice("dns-1", "dns", [k.endpoint("10.244.1.53", "node-a")],
                                  ports=(("dns", 53, "UDP"),), namespace="kube-system"))
        # Not ours: headless, and another proxy's service.
        s.create(k.service("headless", "10.96.0.30", labels={k.HEADLESS_LABEL: ""}))
        s.create(k.service("other", "10.96.0.31", labels={k.PROXY_NAME_LABEL: "other-proxy"}))
        s.create(k.endpoint_slice("other-1", "other", [k.endpoint("10.244.9.1")],
                                  labels={k.PROXY_NAME_LABEL: "other-proxy"}))
        cls.kubeconfig = kubeconfig_file.write(os.path.join(cls.dir, "kubeconfig"), s.url,
                                               cls.certs.ca_cert, token="test-token")
        cls.plane = make_plane(node="node-a").start(cls.kubeconfig)
        cls.expected = {WEB: ["10.244.1.1:8080", "10.244.2.1:8080", "10.244.3.1:8080"],
                        DNS: ["10.244.1.53:53"]}

    @classmethod
    def tearDownClass(cls):
        code = cls.plane.stop()
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        if code != 0:
            raise AssertionError("sliceproxy exited with %s:\n%s" % (code, cls.plane.stderr()))

    def expect(self, mark, changes):
        """The diffs since `mark` are exactly `changes`, if the plane can tell."""
        got = self.plane.changes_since(mark)
        if got is not None:
            self.assertEqual(sorted(got, key=repr), sorted(changes, key=repr))

    def test_1_initial_list_is_programmed(self):
        self.plane.wait_for(self.expected, timeout=20)
        self.plane.wait_log(r"Services, EndpointSlices and this Node listed: synced")
        # Lists are chunked and watches resume from the list's resourceVersion with bookmarks.
        reqs = [p for _, p in self.srv.requests]
        self.assertTrue(any(p.startswith("/api/v1/services?limit=500&labelSelector=") for p in reqs), reqs)
        self.assertTrue(any("allowWatchBookmarks=true" in p and "timeoutSeconds=" in p for p in reqs), reqs)
        self.assertTrue(any("fieldSelector=metadata.name%3Dnode-a" in p for p in reqs), reqs)

    def test_2_service_created_through_the_api(self):
        m = self.plane.mark()
        self.srv.create(k.service("api", "10.96.0.40"))
        self.srv.create(k.endpoint_slice("api-1", "api", [k.endpoint("10.244.4.1", "node-a"),
                                                          k.endpoint("10.244.4.2", "node-b")]))
        self.expected[API] = ["10.244.4.1:8080", "10.244.4.2:8080"]
        self.plane.wait_for(self.expected)
        got = self.plane.changes_since(m)
        if got is not None:
            # The service and its slice may land in one sync or two.
            self.assertEqual({(op, sp) for op, sp, _ in got} - {("update", API)}, {("create", API)}, got)

    def test_3_scale_down_and_endpoint_termination(self):
        m = self.plane.mark()
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a")]))
        self.expected[WEB] = ["10.244.1.1:8080", "10.244.3.1:8080"]
        self.plane.wait_for(self.expected)
        self.expect(m, [("update", WEB, {"10.244.2.1:8080": "-"})])

        m = self.plane.mark()
        self.srv.update(web_slice("web-2", [("10.244.3.1", "node-c")],
                                  conds={"10.244.3.1": dict(ready=False, serving=True, terminating=True)}))
        self.expected[WEB] = ["10.244.1.1:8080"]
        self.plane.wait_for(self.expected)
        self.expect(m, [("update", WEB, {"10.244.3.1:8080": "-"})])

    def test_4_service_deleted(self):
        m = self.plane.mark()
        self.srv.delete("Service", "api")
        self.srv.delete("EndpointSlice", "api-1")
        del self.expected[API]
        self.plane.wait_for(self.expected)
        self.expect(m, [("delete", API, {})])

    def test_5_restart_with_compacted_history_relists_without_flapping(self):
        relisted = self.plane.stderr().count("relisted at resourceVersion")
        m = self.plane.mark()
        self.srv.restart(compact=True)
        # Every watch gets 410, relists, and finds nothing new: nothing is reprogrammed.
        self.plane.wait_log(r"relisted at resourceVersion .* 0 upserted, 0 deleted", timeout=20,
                            count=relisted + 3)
        self.plane.assert_unchanged(2.0)
        self.expect(m, [])

        # Changes made while the server is down and its history compacted: the relist delivers
        # exactly the difference, deletes included.
        m = self.plane.mark()
        self.srv.stop()
        self.srv.store.compact()
        self.srv.store.delete("endpointslices", "default", "web-2")
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a"), ("10.244.2.2", "node-b")]))
        self.srv.refuse(0)
        self.expected[WEB] = ["10.244.1.1:8080", "10.244.2.2:8080"]
        self.plane.wait_for(self.expected)
        self.expect(m, [("update", WEB, {"10.244.2.2:8080": "+"})])

    def test_6_unreachable_api_server_changes_nothing_and_is_caught_up(self):
        self.plane.assert_unchanged(0.5)
        m = self.plane.mark()
        timer_start = time.time()
        self.srv.refuse(OUTAGE)  # listening again after OUTAGE seconds
        # The cluster changes meanwhile.
        self.srv.create(k.service("late", "10.96.0.50"))
        self.srv.create(k.endpoint_slice("late-1", "late", [k.endpoint("10.244.5.1", "node-a")]))
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a")]))
        self.plane.assert_unchanged(max(0.0, OUTAGE - (time.time() - timer_start) - 0.5))
        self.assertTrue(self.plane.stderr().count("retrying in") >= 3, "sliceproxy kept retrying")
        self.assertNotIn("deleted", [op for op, _, _ in self.plane.changes_since(m) or []])
        self.expected[WEB] = ["10.244.1.1:8080"]
        self.expected["default/late:http/TCP/IPv4"] = ["10.244.5.1:8080"]
        self.plane.wait_for(self.expected, timeout=CATCH_UP)
        self.plane.wait_log(r"in contact with the API server again after")

    def test_7_malformed_endpointslice_is_reported_and_costs_only_itself(self):
        # As kube-proxy: an endpoint without a usable address is left out, the rest of its
        # slice served.
        bad = web_slice("web-bad", [("10.244.1.99", "node-a"), ("10.244.1.98", "node-a")])
        bad["endpoints"][0]["addresses"] = ["not-an-ip"]
        self.srv.create(bad)
        self.plane.wait_log(r"EndpointSlice default/web-bad: endpoints\[0\]\.addresses\[0\]: "
                            r"endpoint left out")
        self.expected[WEB] = ["10.244.1.1:8080", "10.244.1.98:8080"]
        self.plane.wait_for(self.expected)
        self.srv.delete("EndpointSlice", "web-bad")
        self.expected[WEB] = ["10.244.1.1:8080"]
        self.plane.wait_for(self.expected)
        m = self.plane.mark()
        # Other services keep working, and keep changing.
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a"), ("10.244.2.3", "node-b")]))
        self.expected[WEB] = ["10.244.1.1:8080", "10.244.2.3:8080"]
        self.plane.wait_for(self.expected)
        self.expect(m, [("update", WEB, {"10.244.2.3:8080": "+"})])

        # An invalid object injected into the stream, then garbage: the first is rejected and
        # skipped, the second restarts the watch; nothing is lost.
        self.srv.inject_malformed_object("endpointslices", name="injected-bad")
        self.plane.wait_log(r"rejected .*EndpointSlice default/injected-bad field ports\[0\]\.port")
        self.srv.inject_garbage("endpointslices")
        self.plane.wait_log(r"malformed watch stream")
        m = self.plane.mark()
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a")]))
        self.expected[WEB] = ["10.244.1.1:8080"]
        self.plane.wait_for(self.expected)
        self.expect(m, [("update", WEB, {"10.244.2.3:8080": "-"})])

    def test_8_stall_and_dropped_watches_lose_nothing(self):
        m = self.plane.mark()
        self.srv.stall(3)
        self.srv.update(web_slice("web-1", [("10.244.1.1", "node-a"), ("10.244.2.4", "node-b")]))
        self.plane.assert_unchanged(2.0)
        self.expected[WEB] = ["10.244.1.1:8080", "10.244.2.4:8080"]
        self.plane.wait_for(self.expected, timeout=10)
        m = self.plane.mark()
        self.srv.drop_watches()
        self.srv.delete("Service", "dns", namespace="kube-system")
        del self.expected[DNS]
        self.plane.wait_for(self.expected, timeout=10)
        self.expect(m, [("delete", DNS, {})])
        self.plane.assert_unchanged(1.0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2, failfast=True)
