"""The eBPF backend's place in a harness run: a cgroup2 and a bpf filesystem mounted under this
run's temporary directory, and a child cgroup per measurement to attach the socket programs
to. Only processes the harness moves into such a child cgroup (the data-plane client) are
rewritten; the machine's own cgroups are never touched. `ip netns exec` remounts /sys, which is
why the mounts live under /tmp (as tests/conformance/sandbox.py does)."""

import ctypes
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

PREFIX = "sliceproxy-bench-ebpf-"


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _umount(path):
    subprocess.run(["umount", "-l", path], check=False, capture_output=True)


def reap_stale():
    """Mounts of runs that died by SIGKILL (their directory names carry the pid)."""
    pat = re.compile(r"^%s/%s(\d+)-[^/]+/(cgroup2|bpffs)$"
                     % (re.escape(tempfile.gettempdir()), re.escape(PREFIX)))
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    for m in mounts:
        g = pat.match(m)
        if not g or _alive(int(g.group(1))):
            continue
        if g.group(2) == "cgroup2":
            for d in sorted(os.listdir(m)):
                p = os.path.join(m, d)
                if d.startswith("case-") and os.path.isdir(p):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
        _umount(m)
    # Their directories, once nothing is mounted there (rmdir never removes a mount point in
    # use nor anything with content).
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        g = re.match(r"^%s(\d+)-" % re.escape(PREFIX), d)
        if not g or _alive(int(g.group(1))):
            continue
        for sub in ("cgroup2", "bpffs", ""):
            try:
                os.rmdir(os.path.join(tmp, d, sub))
            except OSError:
                pass


class EbpfPlace:
    def __init__(self):
        reap_stale()
        self.base = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")
        self.cgroup_mount = os.path.join(self.base, "cgroup2")
        self.bpf_mount = os.path.join(self.base, "bpffs")
        os.makedirs(self.cgroup_mount)
        os.makedirs(self.bpf_mount)
        self.mounted = []
        for fstype, where in (("cgroup2", self.cgroup_mount), ("bpf", self.bpf_mount)):
            subprocess.run(["mount", "-t", fstype, fstype, where], check=True)
            self.mounted.append(where)
        self.cases = []
        self.n = 0

    def case(self, tag):
        """A fresh child cgroup and pin directory: (cgroup path, pin dir)."""
        self.n += 1
        name = f"case-{self.n}-{tag}"
        cg = os.path.join(self.cgroup_mount, name)
        os.mkdir(cg)
        pin = os.path.join(self.bpf_mount, name)
        self.cases.append((cg, pin))
        return cg, pin

    @staticmethod
    def flags(cg, pin):
        return ["--cgroup-root", cg, "--bpf-pin-dir", pin]

    @staticmethod
    def enter(cg):
        """Moves the calling process into cgroup `cg` (a preexec_fn, between fork and exec)."""
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("0")

    def release(self, cg, pin):
        """Detaches what a measurement left attached (unpinning the links ends them once their
        process is gone) and removes its cgroup (empty once its processes ended)."""
        shutil.rmtree(pin, ignore_errors=True)
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
        if (cg, pin) in self.cases:
            self.cases.remove((cg, pin))

    def close(self):
        for cg, pin in list(self.cases):
            self.release(cg, pin)
        for m in reversed(self.mounted):
            _umount(m)
        self.mounted = []
        # rmdir, not rmtree: never recurse into a mount that did not go away.
        for d in (self.cgroup_mount, self.bpf_mount, self.base):
            try:
                os.rmdir(d)
            except OSError:
                pass


_BPF_SYSCALL = 321  # x86_64
_BPF_ENABLE_STATS = 32
_libc = ctypes.CDLL(None, use_errno=True)


def enable_run_time_stats():
    """bpf(BPF_ENABLE_STATS): the kernel times every BPF program run while the returned file
    descriptor is open (close it to stop); no global sysctl is changed."""
    attr = ctypes.create_string_buffer(8)  # type = BPF_STATS_RUN_TIME (0)
    fd = _libc.syscall(_BPF_SYSCALL, _BPF_ENABLE_STATS, attr, 8)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "bpf(BPF_ENABLE_STATS)")
    return fd


def program_stats(pin):
    """{program: (runs, total ns)} of the socket programs linked under pin/links."""
    out = {}
    links = os.path.join(pin, "links")
    for name in sorted(os.listdir(links)):
        link = json.loads(subprocess.run(["bpftool", "-j", "link", "show", "pinned",
                                          os.path.join(links, name)], check=True,
                                         capture_output=True, text=True).stdout)
        prog = json.loads(subprocess.run(["bpftool", "-j", "prog", "show", "id",
                                          str(link["prog_id"])], check=True,
                                         capture_output=True, text=True).stdout)
        out[name] = (prog.get("run_cnt", 0), prog.get("run_time_ns", 0))
    return out
