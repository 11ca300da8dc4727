"""Named network namespaces and processes of one harness run, always cleaned up.

Every namespace is called `sp7-<run id>-<role>`, so a run deletes exactly what it created (and
bench/run's trap can sweep the same prefix after a crash or Ctrl-C). Processes are tracked by
their process id and ended individually."""

import ctypes
import os
import signal
import subprocess
import time

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: the child is killed if the harness dies, even by SIGKILL, so no measuring
    process outlives a run (the setting survives exec, e.g. through `ip netns exec`)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PREFIX = "sp7-"


def sh(*cmd, check=True, capture=False, timeout=120, input=None, cgroup=None):
    """`cgroup`: a cgroup v2 directory the command starts in (moved there before exec)."""
    def pre():
        die_with_parent()
        if cgroup:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
    return subprocess.run(list(cmd), check=check, capture_output=capture, text=True,
                          timeout=timeout, input=input, preexec_fn=pre)


def list_namespaces():
    out = sh("ip", "netns", "list", capture=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


class Run:
    def __init__(self, run_id):
        self.prefix = f"{PREFIX}{run_id}-"
        self.namespaces = []
        self.procs = []

    def netns(self, role):
        name = self.prefix + role
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def spawn(self, ns, cmd, stdout=subprocess.PIPE, stderr=None):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=stdout, stderr=stderr,
                             text=True, preexec_fn=die_with_parent)
        self.procs.append(p)
        return p

    def stop(self, p, grace=5):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def delete(self, ns):
        # Anything still running inside (started through another path) is ended by its pid.
        pids = sh("ip", "netns", "pids", ns, check=False, capture=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", ns, check=False)
        if ns in self.namespaces:
            self.namespaces.remove(ns)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p, grace=2)
        for ns in list(self.namespaces):
            self.delete(ns)
        # Namespaces of this run that were created but not recorded (interrupted mid-create).
        for ns in list_namespaces():
            if ns.startswith(self.prefix):
                self.delete(ns)
        time.sleep(0.1)
