#!/usr/bin/env python3
"""A test Kubernetes API server that speaks the real wire protocol for the resources a service
proxy reads: Services, EndpointSlices and Nodes.

- list: label and field selectors, limit + continue (consistent snapshots; 410 once compacted),
  resourceVersion; get, create (POST), replace (PUT), delete.
- watch: chunked stream of JSON lines, ADDED / MODIFIED / DELETED / BOOKMARK / ERROR, from a
  resourceVersion (or the current state), timeoutSeconds, allowWatchBookmarks, label and field
  selectors applied to old and new objects the way the watch cache does (an object that stops
  matching is DELETED); a too-old resourceVersion gets an ERROR 410 event (or HTTP 410 with
  watch_410_as_status); a resourceVersion the store has not reached gets 504 "Too large resource
  version" once it has not arrived within too_large_wait seconds (the watch cache's wait), one
  that is not a number 400.
- discovery (/api, /apis, /api/v1, /apis/discovery.k8s.io/v1, /version) for kubectl.
- TLS with a generated CA; bearer tokens (401 otherwise) and client certificates.
- faults for tests: drop every watch, stall, inject a malformed object or garbage into watch
  streams, refuse connections for a while, restart with compacted history (forcing 410), restore
  an older etcd snapshot (store.backup()/restore(): resourceVersions go back, forcing 504).

In-process use (tests): ApiServer(...).start(), then drive it with create/update/delete and the
fault methods. Standalone: python3 server.py --dir DIR (writes certs and a kubeconfig there; the
same faults are reachable as POST /_test/<fault>).
"""

import argparse
import base64
import json
import os
import select
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from k8s_selectors import SelectorError, labels_of, parse_field_selector, parse_label_selector  # noqa: E402
from k8s_store import ApiError, Store, key_of, status_object  # noqa: E402
from netns import run_in as run_in_netns  # noqa: E402


class Resource:
    def __init__(self, name, kind, group, version, namespaced, short=()):
        self.name, self.kind, self.group, self.version = name, kind, group, version
        self.namespaced, self.short = namespaced, list(short)

    @property
    def api_version(self):
        return self.version if not self.group else "%s/%s" % (self.group, self.version)

    @property
    def list_kind(self):
        return self.kind + "List"

    def discovery(self):
        return {"name": self.name, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "shortNames": self.short,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}


RESOURCES = {
    "services": Resource("services", "Service", "", "v1", True, ["svc"]),
    "nodes": Resource("nodes", "Node", "", "v1", False, ["no"]),
    "endpointslices": Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True),
    # Written by sliceproxy (Warning events on Services), read by tests.
    "events": Resource("events", "Event", "events.k8s.io", "v1", True, ["ev"]),
}


class _HTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):
        # TLS handshakes refused by clients and connections dropped by faults are expected.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, OSError, TimeoutError)):
            return
        traceback.print_exc()


class _Watcher:
    def __init__(self):
        self.dropped = False
        self.injected = []


class ApiServer:
    def __init__(self, certs, tokens=("test-token",), port=0, host="127.0.0.1",
                 client_ca=None, bookmark_interval=5.0, watch_410_as_status=False,
                 max_watch_timeout=1800, require_auth=True, verbose=False, tls=True, netns=None,
                 too_large_wait=1.0, tls_versions=None):
        """certs: a certs.Bundle-like object with ca_cert, server_cert, server_key paths.
        netns: listen in this network namespace (`ip netns` name) instead of this process's.
        tls_versions: (lowest, highest) ssl.TLSVersion offered; below 1.2 lowers the security
        level so that OpenSSL offers them at all."""
        self.store = Store(RESOURCES)
        self.tokens = set(tokens)
        self.certs = certs
        self.client_ca = client_ca
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.watch_410_as_status = watch_410_as_status
        self.max_watch_timeout = max_watch_timeout
        self.too_large_wait = too_large_wait
        self.require_auth = require_auth
        self.verbose = verbose
        self.tls = tls  # False: plain HTTP (as behind `kubectl proxy` or an insecure port)
        self.netns = netns
        self.tls_versions = tls_versions
        self.stall_until = 0.0
        self.faults = []  # [kind, remaining, arg, path prefix]: see fail_requests, cut_lists, hang
        self.requests = []  # (method, path) of every request, for tests
        self.request_times = []  # (time, path) of every request, in the same order
        self.on_event_sent = None  # called (resource, type, obj) after a watch event is written
        self._lock = threading.Lock()
        self._watchers = set()
        self._conns = set()
        self._httpd = None
        self._thread = None
        self._ctx = self._tls_context()

    # -- lifecycle --------------------------------------------------------------------------

    def _tls_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certs.server_cert, self.certs.server_key)
        if self.tls_versions:
            ctx.minimum_version, ctx.maximum_version = self.tls_versions
            if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if self.client_ca:
            ctx.load_verify_locations(self.client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.port)

    def start(self):
        handler = type("BoundHandler", (_Handler,), {"api": self})
        self._httpd = run_in_netns(self.netns, lambda: _HTTPServer((self.host, self.port), handler))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening and drops every connection."""
        if self._httpd is None:
            return
        httpd, self._httpd = self._httpd, None
        httpd.shutdown()
        httpd.server_close()
        self._drop_connections()
        self._thread.join(timeout=5)

    def _drop_connections(self):
        with self.store.cond:
            for w in self._watchers:
                w.dropped = True
            self.store.cond.notify_all()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                socket.socket.shutdown(c, socket.SHUT_RDWR)
            except OSError:
                pass

    # -- faults -----------------------------------------------------------------------------

    def drop_watches(self):
        """Every open watch connection is cut mid-stream (no end of the chunked body)."""
        with self.store.cond:
            for w in self._watchers:
                w.dropped = True
            self.store.cond.notify_all()

    def stall(self, seconds):
        """Nothing is sent for `seconds`: new requests wait, watches hold their events."""
        self.stall_until = time.time() + seconds

    def fail_requests(self, count, code=500, retry_after=None, prefix="/api"):
        """The next `count` requests under `prefix` get `code` (a Status), with a Retry-After
        header of `retry_after` seconds when given (as a 429 from API priority and fairness)."""
        with self._lock:
            self.faults.append(["fail", count, (code, retry_after), prefix])

    def cut_lists(self, count, prefix="/api"):
        """The next `count` lists under `prefix` send their headers and half the body, then the
        connection is cut."""
        with self._lock:
            self.faults.append(["cut", count, None, prefix])

    def hang(self, count, prefix="/api"):
        """The next `count` requests under `prefix` are accepted and never answered: the server
        holds the connection open until the client gives up."""
        with self._lock:
            self.faults.append(["hang", count, None, prefix])

    def stopped_or_closed(self, sock):
        """True once the server stops or the client closes `sock` (for a hung request)."""
        if self._httpd is None:
            return True
        try:
            r, _, _ = select.select([sock], [], [], 0)
            if not r:
                return False
            sock.settimeout(0.05)
            return sock.recv(1) == b""  # the client sends nothing more on a pending GET
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (OSError, ValueError):
            return True

    def take_fault(self, path, watch):
        with self._lock:
            for f in self.faults:
                if f[1] > 0 and path.startswith(f[3]) and not (f[0] == "cut" and watch):
                    f[1] -= 1
                    return f[0], f[2]
        return None, None

    def inject(self, resource, line):
        """Sends `line` (bytes, a newline is added) to every open watch of `resource`."""
        with self.store.cond:
            for w in self._watchers:
                if w.resource == resource:
                    w.injected.append(line)
            self.store.cond.notify_all()

    def inject_malformed_object(self, resource="endpointslices", name="injected-bad"):
        """A well-formed MODIFIED event whose object is invalid (a port out of range)."""
        obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": name, "namespace": "default", "resourceVersion": str(self.store.rv),
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.9.9"]}],
               "ports": [{"name": "http", "port": 99999, "protocol": "TCP"}]}
        if resource != "endpointslices":
            obj = {"apiVersion": "v1", "kind": RESOURCES[resource].kind,
                   "metadata": {"name": name, "namespace": "default"}, "spec": {"ports": "bad"}}
        self.inject(resource, json.dumps({"type": "MODIFIED", "object": obj}).encode())

    def inject_garbage(self, resource="endpointslices"):
        self.inject(resource, b"this is not JSON {{{")

    def refuse(self, seconds, compact=False, block=False):
        """Stops listening (connections are refused) for `seconds`, then listens again on the same
        port. compact=True also compacts the history: a restart that forces 410."""
        self.stop()
        if compact:
            self.store.compact()

        def back():
            deadline = time.time() + 10
            while True:
                try:
                    self.start()
                    return
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.1)

        if seconds <= 0:
            back()
        elif block:
            time.sleep(seconds)
            back()
        else:
            t = threading.Timer(seconds, back)
            t.daemon = True
            t.start()
            return t

    def restart(self, compact=True, down=0.0):
        return self.refuse(down, compact=compact, block=True)

    # -- writes for tests ------------------------------------------------------------------

    def create(self, obj):
        return self.store.create(self._resource_of(obj), obj)

    def update(self, obj):
        return self.store.update(self._resource_of(obj), obj)

    def apply(self, obj):
        return self.store.apply(self._resource_of(obj), obj)

    def delete(self, kind, name, namespace="default"):
        for r in RESOURCES.values():
            if r.kind == kind:
                return self.store.delete(r.name, namespace, name)
        raise KeyError(kind)

    @staticmethod
    def _resource_of(obj):
        for r in RESOURCES.values():
            if r.kind == obj.get("kind"):
                return r.name
        raise KeyError("unknown kind %r" % obj.get("kind"))


def _bool(q, name):
    return q.get(name, "").lower() in ("true", "1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api = None  # set by ApiServer.start
    server_version = "sliceproxy-test-apiserver"

    def setup(self):
        self.request.settimeout(60)
        if self.api.tls:
            try:
                self.request = self.api._ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                self.request.close()
                raise
        with self.api._lock:
            self.api._conns.add(self.request)
        super().setup()

    def finish(self):
        with self.api._lock:
            self.api._conns.discard(self.request)
        try:
            super().finish()
        except (OSError, ssl.SSLError):
            pass
        # socketserver closes the plain socket it accepted, which wrap_socket detached.
        try:
            self.request.close()
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (OSError, ssl.SSLError, ValueError):
            self.close_connection = True

    def log_message(self, fmt, *args):
        if self.api.verbose:
            sys.stderr.write("apiserver: " + (fmt % args) + "\n")

    # -- plumbing ---------------------------------------------------------------------------

    def _send_json(self, code, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, e):
        self._send_json(e.code, e.status())

    def _authenticated(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:].strip() in self.api.tokens:
            return True
        try:
            if self.request.getpeercert():  # verified against client_ca by the handshake
                return True
        except (AttributeError, ValueError):
            pass
        return not self.api.require_auth

    def _wait_stall(self):
        while time.time() < self.api.stall_until:
            time.sleep(0.05)

    def _dispatch(self, method):
        self.api.requests.append((method, self.path))
        self.api.request_times.append((time.time(), self.path))
        self._wait_stall()
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = url.path.rstrip("/") or "/"
        try:
            if path.startswith("/_test/") and method == "POST":
                if not self._authenticated():
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                return self._fault(path[len("/_test/"):], q)
            kind, arg = self.api.take_fault(path, _bool(q, "watch"))
            if kind == "fail":
                code, retry_after = arg
                body = json.dumps(status_object(code, "InternalError" if code >= 500 else "TooManyRequests",
                                                "injected fault")).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(body)
                return
            if kind == "hang":
                self.close_connection = True
                while not self.api.stopped_or_closed(self.connection):
                    time.sleep(0.1)
                return
            self.cut = kind == "cut"
            if path in ("/version", "/healthz", "/livez", "/readyz"):
                if path == "/version":
                    return self._send_json(200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0-sliceproxy-test",
                                                 "platform": "linux/amd64"})
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                return self.wfile.write(body)
            if not self._authenticated():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            disc = self._discovery(path)
            if disc is not None:
                if method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "method not allowed")
                return self._send_json(200, disc)
            res, ns, name = self._route(path)
            if method == "GET":
                if name:
                    return self._send_json(200, self.api.store.get(res.name, ns, name))
                if _bool(q, "watch"):
                    return self._watch(res, ns, q)
                return self._list(res, ns, q)
            if method in ("POST", "PUT"):
                obj = self._body()
                if ns and res.namespaced:
                    obj.setdefault("metadata", {})["namespace"] = ns
                if method == "POST":
                    if name:
                        raise ApiError(405, "MethodNotAllowed", "POST to a named object")
                    return self._send_json(201, self.api.store.create(res.name, obj))
                if not name or (obj.get("metadata") or {}).get("name") != name:
                    raise ApiError(400, "BadRequest", "the name in the body does not match the URL")
                return self._send_json(200, self.api.store.update(res.name, obj))
            if method == "DELETE":
                # kubectl sends DeleteOptions: read them, or the next request on this
                # connection would start in the middle of them.
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if not name:
                    raise ApiError(405, "MethodNotAllowed", "collection delete is not supported")
                return self._send_json(200, self.api.store.delete(res.name, ns or "", name))
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        except ApiError as e:
            self._error(e)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON")

    # -- routing ----------------------------------------------------------------------------

    def _discovery(self, path):
        groups = {}
        for r in RESOURCES.values():
            groups.setdefault((r.group, r.version), []).append(r)
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                    "serverAddress": "%s:%d" % (self.api.host, self.api.port)}]}
        if path == "/apis":
            out = []
            for (g, v) in groups:
                if g:
                    gv = {"groupVersion": "%s/%s" % (g, v), "version": v}
                    out.append({"name": g, "versions": [gv], "preferredVersion": gv})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}
        for (g, v), rs in groups.items():
            base = "/api/" + v if not g else "/apis/%s/%s" % (g, v)
            if path == base:
                return {"kind": "APIResourceList", "apiVersion": "v1",
                        "groupVersion": v if not g else "%s/%s" % (g, v),
                        "resources": [r.discovery() for r in rs]}
            if g and path == "/apis/" + g:
                gv = {"groupVersion": "%s/%s" % (g, v), "version": v}
                return {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv],
                        "preferredVersion": gv}
        return None

    def _route(self, path):
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = RESOURCES.get(rest[0])
        if res is None or res.group != group or res.version != version or (ns and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        if name and res.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return res, ns, name

    @staticmethod
    def _matcher(res, ns, q):
        try:
            lsel = parse_label_selector(q.get("labelSelector", ""))
            fsel = parse_field_selector(q.get("fieldSelector", ""))
        except SelectorError as e:
            raise ApiError(400, "BadRequest", str(e))

        def match(obj):
            if ns and key_of(obj, res.namespaced)[0] != ns:
                return False
            return lsel(labels_of(obj)) and fsel(obj)
        return match

    # -- list -------------------------------------------------------------------------------

    def _list(self, res, ns, q):
        match = self._matcher(res, ns, q)
        limit = int(q.get("limit") or 0)
        cont = q.get("continue", "")
        start_after = None
        at_rv = None
        if cont:
            try:
                token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                at_rv, start_after = int(token["rv"]), tuple(token["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "invalid continue token")
            if at_rv < self.api.store.min_rv:
                raise ApiError(410, "Expired",
                               "The provided continue parameter is too old to display a consistent "
                               "list result. You can start a new list without the continue parameter.")
        rv, state = self.api.store.snapshot(res.name, at_rv)
        keys = sorted(k for k, o in state.items() if match(o))
        if start_after is not None:
            keys = [k for k in keys if k > start_after]
        meta = {"resourceVersion": str(rv)}
        if limit and len(keys) > limit:
            keys = keys[:limit]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "start": list(keys[-1])}).encode()).decode()
        items = [state[k] for k in keys]
        body = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}
        if getattr(self, "cut", False):
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_json(200, body)

    # -- watch ------------------------------------------------------------------------------

    def _chunk(self, data):
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _event(self, type_, obj, resource=None):
        self._chunk(json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n")
        if self.api.on_event_sent and resource:
            self.api.on_event_sent(resource, type_, obj)

    def _watch(self, res, ns, q):
        api, store = self.api, self.api.store
        match = self._matcher(res, ns, q)
        bookmarks = _bool(q, "allowWatchBookmarks")
        timeout = min(int(q.get("timeoutSeconds") or api.max_watch_timeout), api.max_watch_timeout)
        rv_text = q.get("resourceVersion", "")
        w = _Watcher()
        w.resource = res.name
        initial = []
        with store.cond:
            if rv_text not in ("", "0"):
                try:
                    pos = int(rv_text)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resourceVersion %r" % rv_text)
                deadline = time.time() + api.too_large_wait
                while pos > store.rv and time.time() < deadline:
                    store.cond.wait(timeout=max(0.01, deadline - time.time()))
                if pos > store.rv:
                    # k8s.io/apiserver storage.NewTooLargeResourceVersionError
                    too_large = status_object(504, "Timeout", "Too large resource version: %d, current: %d"
                                              % (pos, store.rv))
                    too_large["details"] = {"causes": [{"reason": "ResourceVersionTooLarge",
                                                        "message": "Too large resource version"}],
                                            "retryAfterSeconds": 1}
                    return self._send_json(504, too_large)
                if pos < store.min_rv:
                    gone = status_object(410, "Expired", "too old resource version: %d (%d)" % (pos, store.min_rv))
                    if api.watch_410_as_status:
                        return self._send_json(410, gone)
                    initial.append(("ERROR", gone))
            else:
                pos = store.rv
                for k in sorted(store.objects[res.name]):
                    o = store.objects[res.name][k]
                    if match(o):
                        initial.append(("ADDED", o))
            api._watchers.add(w)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for t, o in initial:
                self._event(t, o)
            if initial and initial[0][0] == "ERROR":
                self._chunk(b"")
                return
            deadline = time.time() + timeout
            last_sent = time.time()
            while True:
                with store.cond:
                    while True:
                        now = time.time()
                        if w.dropped:
                            self.close_connection = True
                            return
                        if now < api.stall_until:
                            batch = None
                            break
                        batch = store.events_after(res.name, pos)
                        injected, w.injected = w.injected, []
                        new_pos = store.rv
                        bookmark_due = bookmarks and now - last_sent >= api.bookmark_interval
                        if batch or injected or now >= deadline or bookmark_due:
                            break
                        wait = deadline - now
                        if bookmarks:
                            wait = min(wait, api.bookmark_interval - (now - last_sent))
                        store.cond.wait(timeout=max(0.01, min(wait, 1.0)))
                if batch is None:
                    time.sleep(0.05)
                    continue
                sent = False
                for ev in batch:
                    old_ok = ev.prev is not None and match(ev.prev)
                    new_ok = ev.type != "DELETED" and match(ev.obj)
                    if ev.type == "DELETED":
                        if old_ok:
                            self._event("DELETED", ev.obj, res.name)
                            sent = True
                    elif new_ok and old_ok:
                        self._event("MODIFIED", ev.obj, res.name)
                        sent = True
                    elif new_ok:
                        self._event("ADDED", ev.obj, res.name)
                        sent = True
                    elif old_ok:
                        self._event("DELETED", ev.obj, res.name)
                        sent = True
                for line in injected:
                    self._chunk(line + b"\n")
                    sent = True
                pos = new_pos
                if time.time() >= deadline:
                    self._chunk(b"")
                    return
                if sent:
                    last_sent = time.time()
                elif bookmarks and time.time() - last_sent >= api.bookmark_interval:
                    self._event("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version,
                                             "metadata": {"resourceVersion": str(pos)}})
                    last_sent = time.time()
        finally:
            with store.cond:
                api._watchers.discard(w)

    # -- faults over HTTP -------------------------------------------------------------------

    def _fault(self, name, q):
        api = self.api
        seconds = float(q.get("seconds") or 0)
        resource = q.get("resource", "endpointslices")
        if name == "drop-watches":
            api.drop_watches()
        elif name == "stall":
            api.stall(seconds)
        elif name == "malformed-object":
            api.inject_malformed_object(resource)
        elif name == "garbage":
            api.inject_garbage(resource)
        elif name in ("refuse", "restart"):
            self._send_json(200, {"kind": "Status", "status": "Success"})
            self.close_connection = True
            threading.Thread(target=api.refuse, args=(seconds,),
                             kwargs={"compact": name == "restart" or _bool(q, "compact"), "block": True},
                             daemon=True).start()
            return
        else:
            raise ApiError(404, "NotFound", "no such fault %r" % name)
        self._send_json(200, {"kind": "Status", "status": "Success"})


def main():
    import tls_certs as certs_mod
    import kubeconfig_file as kubeconfig_mod
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="where to write certificates and kubeconfig")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", default="test-token")
    p.add_argument("--bookmark-interval", type=float, default=5.0)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    bundle = certs_mod.generate(args.dir)
    srv = ApiServer(bundle, tokens=[args.token], port=args.port, host=args.host,
                    client_ca=bundle.ca_cert, bookmark_interval=args.bookmark_interval,
                    verbose=args.verbose).start()
    kc = kubeconfig_mod.write(os.path.join(args.dir, "kubeconfig"), srv.url, bundle.ca_cert, token=args.token)
    print(json.dumps({"url": srv.url, "kubeconfig": kc, "ca": bundle.ca_cert}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
