"""Runs sliceproxy against the test API server and observes what it programs.

A *plane* is how a test sees the data plane. The tests talk only to this interface, so the same
scenario can run with the dry-run backend (DryRunPlane, here) or, later, with a kernel backend
in a network-namespace sandbox (a plane that sends real traffic):

  plane.start(kubeconfig)            start sliceproxy against the API server
  plane.wait_for(expected, timeout)  the programmed state becomes exactly `expected`:
                                     {servicePort: [endpoint "ip:port", ...]} (cluster endpoints)
  plane.mark() / plane.changes_since(mark)
                                     the diffs programmed since the mark, as
                                     [(op, servicePort, {endpoint: "+" | "-"})], or None when
                                     the plane cannot tell (the caller then checks state only)
  plane.assert_unchanged(seconds)    nothing is reprogrammed (for a kernel plane: no connection
                                     to any service fails) for `seconds`
  plane.wait_log(pattern, timeout)   sliceproxy's stderr shows `pattern` (a regex)
  plane.stop() -> exit code

The kernel variant of tests/e2e/api_source_test.py is tests/e2e/api_nftables_test.py: the same
acceptance steps with the nftables backend in the conformance sandbox, where traffic needs the
sandbox's pods and so its own objects.
"""

import json
import os
import queue
import re
import subprocess
import threading
import time

BINARY = os.environ.get("SLICEPROXY_BIN", "build/sliceproxy")


_QUIET_FLAGS = {}


def quiet_flags(binary):
    """Flags that turn off the listeners sliceproxy opens by default (health, metrics, debug), so
    several instances can run at once; only those this binary knows."""
    if binary not in _QUIET_FLAGS:
        help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30).stdout
        flags = []
        for flag, off in (("--healthz-bind-address", ""), ("--metrics-bind-address", ""), ("--debug-port", "0")):
            if flag in help_text:
                flags += [flag, off]
        _QUIET_FLAGS[binary] = flags
    return _QUIET_FLAGS[binary]


class SliceproxyProcess:
    """sliceproxy with its stdout lines in a queue and its stderr collected."""

    def __init__(self, args, binary=BINARY):
        quiet = quiet_flags(binary)
        # A listener the test asks for (e.g. --healthz-bind-address) is not turned off.
        quiet = [x for i in range(0, len(quiet), 2) if quiet[i] not in args for x in quiet[i:i + 2]]
        self.proc = subprocess.Popen([binary, *quiet, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = queue.Queue()
        self.stderr_lines = []
        self._stderr_cond = threading.Condition()
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def _pump_err(self):
        for line in self.proc.stderr:
            with self._stderr_cond:
                self.stderr_lines.append(line)
                self._stderr_cond.notify_all()
            if os.environ.get("SLICEPROXY_E2E_VERBOSE"):
                print("sliceproxy:", line.rstrip(), flush=True)

    def stderr(self):
        with self._stderr_cond:
            return "".join(self.stderr_lines)

    def wait_log(self, pattern, timeout=10.0, count=1):
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        with self._stderr_cond:
            while True:
                n = sum(1 for l in self.stderr_lines if rx.search(l))
                if n >= count:
                    return
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("sliceproxy never logged %r (x%d); stderr:\n%s"
                                         % (pattern, count, "".join(self.stderr_lines)))
                self._stderr_cond.wait(timeout=min(left, 0.2))

    def wait_exit(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("sliceproxy did not stop on SIGTERM")
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass
        return code


class DryRunPlane:
    """sliceproxy --backend dry-run; the programmed state is rebuilt from its JSON lines."""

    def __init__(self, node="node-a", min_sync="100ms", extra_args=()):
        self.node, self.min_sync, self.extra_args = node, min_sync, list(extra_args)
        self.proc = None
        self.state = {}     # servicePort -> set of cluster endpoints
        self.diffs = []     # (op, servicePort, {endpoint: "+"/"-"}) after the first full sync
        self.full_syncs = 0
        self._pending_program = 0

    def start(self, kubeconfig=None, extra_args=()):
        """With a kubeconfig, or with extra_args alone (--master URL)."""
        source = ["--kubeconfig", kubeconfig] if kubeconfig else []
        self.proc = SliceproxyProcess(["--backend", "dry-run", *source,
                                       "--hostname-override", self.node, "--min-sync-period", self.min_sync,
                                       *self.extra_args, *extra_args])
        return self

    # -- reading the dry-run lines ----------------------------------------------------------

    def _apply(self, rec):
        op = rec.get("op")
        if op == "full-sync":
            self.full_syncs += 1
            self.state = {}
        elif op == "program":
            self.state[rec["servicePort"]] = set(rec.get("internalEndpoints", []))
        elif op in ("create", "update"):
            sp = rec["servicePort"]
            eps = self.state.setdefault(sp, set())
            delta = {}
            for ch in rec.get("endpointChanges", []):
                ep = ch["endpoint"]
                was, now = "cluster" in ch["from"], "cluster" in ch["to"]
                if now and not was:
                    eps.add(ep)
                    delta[ep] = "+"
                elif was and not now:
                    eps.discard(ep)
                    delta[ep] = "-"
            if op == "create" and "state" in rec:
                self.state[sp] = set(rec["state"].get("internalEndpoints", [])) | eps
            self.diffs.append((op, sp, delta))
        elif op == "delete":
            self.state.pop(rec["servicePort"], None)
            self.diffs.append(("delete", rec["servicePort"], {}))

    def _pump(self, timeout):
        """Applies every line available within `timeout`; True if any came."""
        got = False
        deadline = time.time() + timeout
        while True:
            try:
                line = self.proc.lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                return got
            self._apply(json.loads(line))
            got = True

    # -- the plane interface ----------------------------------------------------------------

    def snapshot(self):
        return {sp: sorted(eps) for sp, eps in self.state.items()}

    def wait_for(self, expected, timeout=20.0):
        expected = {sp: sorted(eps) for sp, eps in expected.items()}
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._pump(0.1)
            if self.full_syncs and self.snapshot() == expected:
                return
        raise AssertionError("programmed state never became\n%s\nit is\n%s\nstderr:\n%s"
                             % (json.dumps(expected, indent=1), json.dumps(self.snapshot(), indent=1),
                                self.proc.stderr()[-5000:]))

    def mark(self):
        self._pump(0)
        return len(self.diffs)

    def changes_since(self, mark):
        self._pump(0)
        return self.diffs[mark:]

    def assert_unchanged(self, seconds):
        before = len(self.diffs)
        before_full = self.full_syncs
        self._pump(seconds)
        new = self.diffs[before:]
        assert not new and self.full_syncs == before_full, "reprogrammed while it should not: %r" % new

    def wait_log(self, pattern, timeout=10.0, count=1):
        self.proc.wait_log(pattern, timeout, count)

    def stderr(self):
        return self.proc.stderr()

    def stop(self):
        return self.proc.stop() if self.proc else 0


def make_plane(**kw):
    """The plane named by $SLICEPROXY_E2E_PLANE (default dry-run)."""
    name = os.environ.get("SLICEPROXY_E2E_PLANE", "dry-run")
    if name == "dry-run":
        return DryRunPlane(**kw)
    raise SystemExit("unknown SLICEPROXY_E2E_PLANE %r" % name)
