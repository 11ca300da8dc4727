"""Starting, watching and stopping sliceproxy inside the sandbox's node-a."""

import json
import os
import signal
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def binary():
    return os.environ.get("SLICEPROXY_BIN") or os.path.join(REPO, "build", "sliceproxy")


def backend():
    return os.environ.get("SLICEPROXY_BACKEND", "nftables")


def base_flags(sandbox=None):
    return ["--hostname-override", "node-a", "--min-sync-period", "100ms"] + \
        (sandbox.backend_flags() if sandbox else [])


def capabilities(sandbox, backend_name=None):
    p = sandbox.node_exec([binary(), "capabilities", "--backend", backend_name or backend()],
                          check=False)
    if p.returncode != 0:
        raise AssertionError("`sliceproxy capabilities --backend %s` failed (%d): %s"
                             % (backend_name or backend(), p.returncode, p.stderr.strip()))
    return json.loads(p.stdout)


def cleanup(sandbox, backend_name=None):
    return sandbox.node_exec([binary(), "cleanup", "--backend", backend_name or backend()] +
                             sandbox.backend_flags(), check=False)


def _proc_state(pid):
    """The kernel's view of a process that does not exit: state, wait channel, kernel stack."""
    out = []
    for name in ("status", "wchan", "stack"):
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                text = f.read()
        except OSError as e:
            text = str(e)
        if name == "status":
            text = " ".join(l for l in text.splitlines() if l.startswith(("State", "Threads")))
        out.append("%s: %s" % (name, text.strip().replace("\n", " | ")))
    return "; ".join(out)


class SliceProxy:
    """One sliceproxy process in node-a. Its stderr is collected; sync lines are counted so a
    test can wait for the sync that follows a change of the manifest directory."""

    def __init__(self, sandbox, manifest_dir, flags=(), backend_name=None):
        self.sandbox = sandbox
        self.dir = manifest_dir
        self.flags = list(flags)
        self.backend = backend_name or backend()
        self.proc = None
        self.lines = []
        self.stdout_lines = []
        self.cond = threading.Condition()

    def command(self):
        return [binary(), "--backend", self.backend, "--source-dir", self.dir] + \
            base_flags(self.sandbox) + self.flags

    def start(self, wait=True, timeout=20.0):
        self.lines, self.stdout_lines = [], []
        self.proc = self.sandbox.popen_in("node-a", self.command(), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.lines),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines),
                         daemon=True).start()
        if wait:
            self.wait_full_sync(timeout)
        return self

    def _pump(self, stream, sink):
        for line in stream:
            with self.cond:
                sink.append(line.rstrip("\n"))
                self.cond.notify_all()

    # -- observing ------------------------------------------------------------------------------

    def syncs(self):
        with self.cond:
            return sum(1 for l in self.lines if "sync:" in l or "sync with backend" in l)

    def errors(self):
        with self.cond:
            return [l for l in self.lines if "[error]" in l or "[critical]" in l]

    def log(self, tail=40):
        with self.cond:
            return "\n".join(self.lines[-tail:])

    def wait_full_sync(self, timeout=20.0):
        """Waits for the first full sync; raises with the log if it fails or never comes."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for l in self.lines:
                    if "full sync:" in l:
                        return
                    if "sync with backend" in l and "failed" in l:
                        raise AssertionError("sliceproxy's first sync failed:\n" + self.log())
                if self.proc.poll() is not None:
                    self.cond.wait(0.2)  # let the pump threads drain
                    raise AssertionError("sliceproxy exited with %s before its first sync:\n%s"
                                         % (self.proc.returncode, self.log()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no full sync within %.0fs:\n%s" % (timeout, self.log()))
                self.cond.wait(min(left, 0.2))

    def wait_sync_after(self, mark, timeout=5.0):
        """Waits until more than `mark` sync lines were logged; returns the new lines."""
        deadline = time.monotonic() + timeout
        while self.syncs() <= mark:
            if self.proc.poll() is not None:
                raise AssertionError("sliceproxy exited with %s:\n%s" % (self.proc.returncode,
                                                                         self.log()))
            if time.monotonic() > deadline:
                raise AssertionError("no sync within %.1fs of the change:\n%s" % (timeout,
                                                                                  self.log()))
            with self.cond:
                self.cond.wait(0.05)
        with self.cond:
            return [l for l in self.lines if "sync" in l][mark:]

    def full_sync_now(self, timeout=10.0):
        """SIGHUP, then waits for the full sync it asks for."""
        mark = self.syncs()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while True:
            new = self.wait_sync_after(mark, max(0.1, deadline - time.monotonic()))
            if any("full sync:" in l for l in new):
                return
            mark += len(new)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                state = _proc_state(self.proc.pid)
                self.proc.kill()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
                raise AssertionError("sliceproxy (pid %d) did not exit within %.0fs of signal %d"
                                     " (%s):\n%s" % (self.proc.pid, timeout, sig, state,
                                                     self.log()))
        return self.proc.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)
