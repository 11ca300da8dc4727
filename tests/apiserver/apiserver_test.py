#!/usr/bin/env python3
"""The test API server against the protocol rules sliceproxy relies on: paging with consistent
continue tokens, selectors, watch replay from a resourceVersion, 410 after compaction, bookmarks,
authentication, and the faults."""

import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import k8s_objects as k  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402

SELECTOR = "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name"


class Client:
    def __init__(self, srv, ca, token="test-token", cert=None):
        self.srv, self.token = srv, token
        self.ctx = ssl.create_default_context(cafile=ca)
        if cert:
            self.ctx.load_cert_chain(*cert)

    def conn(self, timeout=10):
        return http.client.HTTPSConnection(self.srv.host, self.srv.port, context=self.ctx, timeout=timeout)

    def get(self, path, **query):
        c = self.conn()
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {"Authorization": "Bearer " + self.token} if self.token else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, json.loads(body) if body[:1] == b"{" else body

    def watch(self, path, timeout=10, **query):
        c = self.conn(timeout)
        query["watch"] = "true"
        c.request("GET", path + "?" + urllib.parse.urlencode(query),
                  headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        return c, r

    @staticmethod
    def events(resp, n):
        out = []
        while len(out) < n:
            line = resp.readline()
            if not line:
                break
            out.append(json.loads(line))
        return out


class ApiServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-apiserver-")
        cls.certs = tls_certs.generate(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.srv = ApiServer(self.certs, client_ca=self.certs.ca_cert, bookmark_interval=0.3).start()
        self.c = Client(self.srv, self.certs.ca_cert)

    def tearDown(self):
        self.srv.stop()

    def seed(self, n=5):
        for i in range(n):
            self.srv.create(k.service("svc-%d" % i, "10.96.0.%d" % (i + 1)))

    def test_paging_is_consistent_and_expires_after_compaction(self):
        self.seed(5)
        st, page1 = self.c.get("/api/v1/services", limit=2)
        self.assertEqual(st, 200)
        self.assertEqual([i["metadata"]["name"] for i in page1["items"]], ["svc-0", "svc-1"])
        token = page1["metadata"]["continue"]
        # A change after the first page does not show in the next pages.
        self.srv.delete("Service", "svc-3")
        self.srv.create(k.service("svc-9", "10.96.0.99"))
        st, page2 = self.c.get("/api/v1/services", limit=2, **{"continue": token})
        st, page3 = self.c.get("/api/v1/services", limit=2, **{"continue": page2["metadata"]["continue"]})
        names = [i["metadata"]["name"] for i in page2["items"] + page3["items"]]
        self.assertEqual(names, ["svc-2", "svc-3", "svc-4"])
        self.assertNotIn("continue", page3["metadata"])
        self.assertEqual(page3["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"])
        self.srv.store.compact()
        st, body = self.c.get("/api/v1/services", limit=2, **{"continue": token})
        self.assertEqual((st, body["reason"], body["code"]), (410, "Expired", 410))

    def test_selectors_and_namespaced_paths(self):
        self.srv.create(k.service("plain", "10.96.1.1"))
        self.srv.create(k.service("headless", "10.96.1.2", labels={k.HEADLESS_LABEL: ""}))
        self.srv.create(k.service("other", "10.96.1.3", labels={k.PROXY_NAME_LABEL: "other"}))
        self.srv.create(k.service("elsewhere", "10.96.1.4", namespace="kube-system"))
        st, body = self.c.get("/api/v1/services", labelSelector=SELECTOR)
        self.assertEqual(sorted(i["metadata"]["name"] for i in body["items"]), ["elsewhere", "plain"])
        st, body = self.c.get("/api/v1/services",
                              labelSelector="!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=other")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["other"])
        st, body = self.c.get("/api/v1/namespaces/kube-system/services")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["elsewhere"])
        self.srv.create(k.node("node-a"))
        self.srv.create(k.node("node-b"))
        st, body = self.c.get("/api/v1/nodes", fieldSelector="metadata.name=node-b")
        self.assertEqual([i["metadata"]["name"] for i in body["items"]], ["node-b"])
        st, body = self.c.get("/api/v1/nodes/node-a")
        self.assertEqual((st, body["kind"]), (200, "Node"))
        st, body = self.c.get("/api/v1/services", labelSelector="a in (b")
        self.assertEqual(st, 400)

    def test_watch_replays_from_resource_version_and_follows_selector_transitions(self):
        self.seed(2)
        st, body = self.c.get("/api/v1/services", labelSelector=SELECTOR)
        rv = body["metadata"]["resourceVersion"]
        self.srv.create(k.service("late", "10.96.2.1"))
        self.srv.update(k.service("late", "10.96.2.1", labels={k.PROXY_NAME_LABEL: "other"}))
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=rv, labelSelector=SELECTOR)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        evs = self.c.events(resp, 2)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in evs],
                         [("ADDED", "late"), ("DELETED", "late")])
        self.srv.delete("Service", "svc-0")
        ev = self.c.events(resp, 1)[0]
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("DELETED", "svc-0"))
        self.assertEqual(int(ev["object"]["metadata"]["resourceVersion"]), self.srv.store.rv)
        conn.close()

    def test_watch_without_resource_version_starts_with_the_current_state(self):
        self.seed(2)
        conn, resp = self.c.watch("/api/v1/services")
        evs = self.c.events(resp, 2)
        self.assertEqual([e["type"] for e in evs], ["ADDED", "ADDED"])
        conn.close()

    def test_bookmarks_and_timeout(self):
        self.seed(1)
        rv = str(self.srv.store.rv)
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=rv, allowWatchBookmarks="true",
                                  timeoutSeconds="1")
        evs = self.c.events(resp, 10)  # ends when the server closes the stream after 1 s
        self.assertTrue(evs and all(e["type"] == "BOOKMARK" for e in evs), evs)
        self.assertEqual(evs[0]["object"]["metadata"]["resourceVersion"], rv)
        conn.close()

    def test_too_old_resource_version(self):
        self.seed(1)
        old = str(self.srv.store.rv)
        self.srv.store.compact()
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=old)
        self.assertEqual(resp.status, 200)
        ev = self.c.events(resp, 1)[0]
        self.assertEqual((ev["type"], ev["object"]["code"], ev["object"]["reason"]), ("ERROR", 410, "Expired"))
        conn.close()
        self.srv.watch_410_as_status = True
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=old)
        self.assertEqual(resp.status, 410)
        conn.close()
        # The current resourceVersion is watchable.
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=str(self.srv.store.rv))
        self.assertEqual(resp.status, 200)
        conn.close()

    def test_restored_etcd_answers_too_large_and_bad_resource_versions_400(self):
        self.seed(1)
        snap = self.srv.store.backup()
        for i in range(3):
            self.srv.create(k.service("later-%d" % i, "10.96.1.%d" % (i + 1)))
        ahead = str(self.srv.store.rv)
        self.srv.store.restore(snap)
        self.srv.too_large_wait = 0.2
        st, lst = self.c.get("/api/v1/services")
        self.assertEqual((st, len(lst["items"])), (200, 1), "the restore took the later objects away")
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=ahead)
        body = json.loads(resp.read())
        conn.close()
        self.assertEqual((resp.status, body["reason"], body["details"]["causes"][0]["reason"]),
                         (504, "Timeout", "ResourceVersionTooLarge"))
        self.assertIn("Too large resource version", body["message"])
        conn, resp = self.c.watch("/api/v1/services", resourceVersion="not-a-number")
        self.assertEqual(resp.status, 400)
        conn.close()

    def test_authentication(self):
        self.assertEqual(Client(self.srv, self.certs.ca_cert, token="wrong").get("/api/v1/services")[0], 401)
        self.assertEqual(Client(self.srv, self.certs.ca_cert, token=None).get("/api/v1/services")[0], 401)
        cert = Client(self.srv, self.certs.ca_cert, token=None,
                      cert=(self.certs.client_cert, self.certs.client_key))
        self.assertEqual(cert.get("/api/v1/services")[0], 200)
        self.assertEqual(self.c.get("/version")[0], 200)

    def test_faults(self):
        self.seed(1)
        conn, resp = self.c.watch("/api/v1/services", resourceVersion=str(self.srv.store.rv))
        self.srv.inject("services", b'{"type":"MODIFIED","object":{"kind":"Service"}}')
        self.assertEqual(self.c.events(resp, 1)[0]["type"], "MODIFIED")
        self.srv.inject_garbage("services")
        self.assertEqual(resp.readline(), b"this is not JSON {{{\n")
        self.srv.drop_watches()
        with self.assertRaises((http.client.IncompleteRead, ConnectionError, ssl.SSLError, ValueError)):
            while resp.readline():
                pass
            raise ConnectionError("the stream ended")  # a clean end would not be a drop either
        conn.close()
        self.srv.refuse(0.5)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((self.srv.host, self.srv.port), timeout=2).close()
        time.sleep(1.0)
        self.assertEqual(self.c.get("/api/v1/services")[0], 200)
        self.srv.stall(0.5)
        t = time.time()
        self.assertEqual(self.c.get("/api/v1/services")[0], 200)
        self.assertGreaterEqual(time.time() - t, 0.4)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
