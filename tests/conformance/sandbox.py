"""A small cluster made of network namespaces, for the conformance suite, the acceptance tests and
the demo.

Topology (addresses match examples/):

    client  10.0.0.100 fd00:10::100 (+192.168.0.100 on lo)   client2 10.0.0.101 fd00:10::101
        \\                                                       /
         +---------- lan: bridge br0, router 10.0.0.1 fd00:10::1 ----------+
         |  (the router blackholes the service and external-IP ranges,  |
         |   like a gateway that knows nothing about Kubernetes)         |
    node-a 10.0.0.10 fd00:10::10                           node-b 10.0.0.11 fd00:10::11
    sliceproxy runs here                                   hosts "remote" pods
      pvN <-> pod aN: 10.244.1.N/32 fd00:244:1::N/128        pvN <-> pod bN: 10.244.2.N fd00:244:2::N

Each pod is its own namespace with a veth to its node (point-to-point: the pod's default route
points at 169.254.1.1 / fe80::1 on the node side, whose MAC is the fixed ee:ee:ee:ee:ee:ee; the
node has a /32 (/128) route per pod). Node-side pod interfaces are named pv<N>, so
--detect-local-mode=InterfaceNamePrefix works with prefix "pv". Nodes route each other's pod CIDRs
over the lan and default to the router; the outside clients route the service ranges, the
load-balancer / external-IP range 203.0.113.0/24 and fd00:203::/64 through node-a.

Namespace names carry the prefix and the pid of the process that made them, so two runs can
coexist; teardown (context manager, atexit, SIGTERM/SIGHUP/SIGINT) removes namespaces, processes
and files. Namespaces left by a run that died with SIGKILL are removed by the next run.
Creating a namespace that fails raises: the suite never skips for lack of privileges.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "agent.py")

ROUTER = {4: "10.0.0.1", 6: "fd00:10::1"}
NODES = {
    "node-a": {"ip": {4: "10.0.0.10", 6: "fd00:10::10"}, "pod_net": 1, "zone": "zone-a"},
    "node-b": {"ip": {4: "10.0.0.11", 6: "fd00:10::11"}, "pod_net": 2, "zone": "zone-b"},
}
CLIENTS = {
    "client": {4: "10.0.0.100", 6: "fd00:10::100"},
    "client2": {4: "10.0.0.101", 6: "fd00:10::101"},
}
# A second source address of the outside client, inside the example gateway's
# loadBalancerSourceRanges (192.168.0.0/16); node-a routes it back to the client.
CLIENT_EXTRA_V4 = "192.168.0.100"
SERVICE_RANGES = {4: "10.96.0.0/16", 6: "fd00:96::/112"}
EXTERNAL_RANGES = {4: "203.0.113.0/24", 6: "fd00:203::/64"}
CLUSTER_CIDRS = {4: "10.244.0.0/16", 6: "fd00:244::/32"}
GATEWAY = {4: "169.254.1.1", 6: "fe80::1"}
GATEWAY_MAC = "ee:ee:ee:ee:ee:ee"
POD_IF_PREFIX = "pv"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # Runs in the child between fork and exec: if the test process dies (even by SIGKILL), the
    # kernel kills this child, so no helper outlives its run. Its own process group keeps a
    # terminal's Ctrl-C away from it: the parent stops it during teardown.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgrp()


class SandboxError(RuntimeError):
    pass


def run(cmd, input=None, check=True, timeout=30):
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise SandboxError("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd),
                                                              p.stdout, p.stderr))
    return p


def family(addr):
    return 6 if ":" in addr else 4


def pod_node(pod):
    """Pod names are <node letter><index>: a12 lives on node-a with 10.244.1.12."""
    m = re.fullmatch(r"([ab])(\d+)", pod)
    if not m or not 2 <= int(m.group(2)) <= 254:
        raise ValueError("pod names are a<N> or b<N> with 2 <= N <= 254, not %r" % pod)
    return "node-" + m.group(1)


def pod_ip(pod, fam=4):
    node, idx = pod_node(pod), int(pod[1:])
    net = NODES[node]["pod_net"]
    return "10.244.%d.%d" % (net, idx) if fam == 4 else "fd00:244:%d::%d" % (net, idx)


def pod_for_ip(addr):
    """The sandbox pod that owns this address, or None."""
    m = re.fullmatch(r"10\.244\.([12])\.(\d+)", addr) or \
        re.fullmatch(r"fd00:244:([12])::([0-9]+)", addr)
    if not m or not 2 <= int(m.group(2)) <= 254:
        return None
    return ("a" if m.group(1) == "1" else "b") + m.group(2)


def cgroup2_root():
    """The first cgroup2 mount point, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            if tail.split()[:1] == ["cgroup2"]:
                return head.split()[4]
    return None


class NodeCgroup:
    """For the eBPF backend, whose socket programs act on the processes of one cgroup v2
    directory: node-a's processes (its agent and its pods' agents) start in a cgroup of this
    run. `ip netns exec` remounts /sys, so the cgroup2 and bpf filesystems sliceproxy needs are
    mounted under this run's temporary directory, where it sees them. Nothing outside this
    cgroup is ever rewritten."""

    def __init__(self, base):
        self.base = base
        self.cgroup_mount = os.path.join(base, "cgroup2")
        self.bpf_mount = os.path.join(base, "bpffs")
        os.makedirs(self.cgroup_mount)
        os.makedirs(self.bpf_mount)
        run(["mount", "-t", "cgroup2", "none", self.cgroup_mount])
        run(["mount", "-t", "bpf", "bpf", self.bpf_mount])
        self.path = os.path.join(self.cgroup_mount, os.path.basename(base))
        os.mkdir(self.path)

    def flags(self):
        return ["--cgroup-root", self.path,
                "--bpf-pin-dir", os.path.join(self.bpf_mount, "sliceproxy")]

    def enter(self):
        """Moves the calling process into the cgroup (between fork and exec)."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0")

    def teardown(self):
        # The processes are gone (teardown killed them), so the cgroup is empty.
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                import time
                time.sleep(0.1)
        for m in (self.bpf_mount, self.cgroup_mount):
            run(["umount", "-l", m], check=False)

    @staticmethod
    def reap_stale(prefix):
        """Mounts and cgroups of runs that died with SIGKILL (their temp dirs carry the pid)."""
        pat = re.compile(r"^%s/(%s(\d+))-ebpf-[^/]+/(cgroup2|bpffs)$"
                         % (re.escape(tempfile.gettempdir()), re.escape(prefix)))
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split()[4] for l in f]
        for m in mounts:
            g = pat.match(m)
            if not g or _alive(int(g.group(2))):
                continue
            if g.group(3) == "cgroup2":
                d = os.path.join(m, os.path.basename(os.path.dirname(m)))
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            run(["umount", "-l", m], check=False)


class Agent:
    """tests/conformance/agent.py running in one namespace, driven over its stdin/stdout."""

    def __init__(self, sandbox, ns, name, cgroup=None):
        self.name, self.ns = name, ns
        self.lock = threading.Lock()
        # stderr to a file, not a pipe nobody reads (a burst of tracebacks would block it)
        self.errfile = tempfile.TemporaryFile(mode="w+")

        def prepare():
            _die_with_parent()
            if cgroup:
                cgroup.enter()

        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-u", AGENT, name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errfile, text=True,
            preexec_fn=prepare)
        self.ports = set()
        self.call({"op": "ping"})

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read()[-2000:]

    def call(self, req):
        with self.lock:
            if self.proc.poll() is not None:
                raise SandboxError("agent %s exited: %s" % (self.name, self.stderr()))
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise SandboxError("agent %s died: %s" % (self.name, self.stderr()))
        resp = json.loads(line)
        if not resp.get("ok"):
            raise SandboxError("agent %s: %s -> %s" % (self.name, req, resp.get("error")))
        return resp

    def listen(self, proto, port):
        key = (proto.lower(), int(port))
        if key not in self.ports:
            self.call({"op": "listen", "proto": key[0], "port": key[1]})
            self.ports.add(key)

    def probe(self, proto, addr, port, n=1, timeout=1.5, src=None, sport=None, sequential=False,
              interval=0.0):
        req = {"op": "probe", "proto": proto.lower(), "addr": addr, "port": int(port), "n": n,
               "timeout": timeout, "src": src, "sport": sport, "sequential": sequential,
               "interval": interval}
        return self.call(req)["results"]

    def stream_start(self, sid, proto, addr, port, rate=20, timeout=3.0, src=None):
        self.call({"op": "stream_start", "id": sid, "proto": proto.lower(), "addr": addr,
                   "port": int(port), "rate": rate, "timeout": timeout, "src": src})

    def stream_stop(self, sid):
        return self.call({"op": "stream_stop", "id": sid})["results"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errfile.close()


class Sandbox:
    """with Sandbox() as sb: sb.pod("a12"); sb.agent("client").probe(...)"""

    PREFIX = "spc"

    def __init__(self, prefix=None, node_cgroup=None):
        self.prefix = prefix or self.PREFIX
        # node-a's processes in a cgroup of their own: by default for the eBPF backend.
        if node_cgroup is None:
            node_cgroup = os.environ.get("SLICEPROXY_BACKEND") == "ebpf"
        self.want_cgroup = node_cgroup
        self.cgroup = None
        self.tag = "%s%d" % (self.prefix, os.getpid())
        self.namespaces = []
        self.agents = {}
        self.pods = set()
        self.processes = []
        self.tmpdirs = []
        self.extra_addrs = []
        self._torn_down = False
        self._built = False

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def ns(self, role):
        return "%s-%s" % (self.tag, role)

    def build(self):
        if os.geteuid() != 0:
            raise SandboxError("the sandbox needs root (network namespaces, veth, nftables)")
        atexit.register(self.teardown)
        self._install_signal_handlers()
        for prefix in sorted({self.PREFIX, "spdemo", self.prefix}):
            self.reap_stale(prefix)
            NodeCgroup.reap_stale(prefix)
        if self.want_cgroup:
            self.cgroup = NodeCgroup(self.tmpdir("ebpf"))
        lan = self._add_ns("lan", forwarding=True)
        run(["ip", "-n", lan, "-batch", "-"], input="\n".join([
            "link add br0 type bridge mcast_snooping 0",
            "link set br0 up",
            "addr add %s/24 dev br0" % ROUTER[4],
            "addr add %s/64 dev br0 nodad" % ROUTER[6],
            "route add blackhole %s" % SERVICE_RANGES[4],
            "route add blackhole %s" % SERVICE_RANGES[6],
            "route add blackhole %s" % EXTERNAL_RANGES[4],
            "route add blackhole %s" % EXTERNAL_RANGES[6],
        ]) + "\n")
        for node, spec in NODES.items():
            ns = self._add_ns(node, forwarding=True)
            self._lan_port(ns, node, spec["ip"])
            other = "node-b" if node == "node-a" else "node-a"
            o = NODES[other]
            cmds = [
                "route add default via %s" % ROUTER[4],
                "route add ::/0 via %s" % ROUTER[6],
                "route add 10.244.%d.0/24 via %s" % (o["pod_net"], o["ip"][4]),
                "route add fd00:244:%d::/64 via %s" % (o["pod_net"], o["ip"][6]),
            ]
            if node == "node-a":
                cmds.append("route add 192.168.0.0/16 via %s" % CLIENTS["client"][4])
            run(["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")
        for client, ips in CLIENTS.items():
            ns = self._add_ns(client, forwarding=False)
            self._lan_port(ns, client, ips)
            a = NODES["node-a"]["ip"]
            cmds = ["route add %s via %s" % (SERVICE_RANGES[f], a[f]) for f in (4, 6)]
            cmds += ["route add %s via %s" % (EXTERNAL_RANGES[f], a[f]) for f in (4, 6)]
            if client == "client":
                cmds.append("addr add %s/32 dev lo" % CLIENT_EXTRA_V4)
            run(["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n")
        for who in ("node-a", "node-b", "client", "client2"):
            self.agents[who] = Agent(self, self.ns(who), who,
                                     self.cgroup if who == "node-a" else None)
        self._built = True

    def teardown(self):
        if self._torn_down:
            return
        self._torn_down = True
        if threading.current_thread() is threading.main_thread():
            # A second Ctrl-C must not leave half a sandbox behind.
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for a in self.agents.values():
            try:
                a.close()
            except Exception:
                pass
        for ns in reversed(self.namespaces):
            # Every process still in our namespaces was started by this run.
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)
        if self.cgroup:
            self.cgroup.teardown()
        for d in self.tmpdirs:
            shutil.rmtree(d, ignore_errors=True)

    @staticmethod
    def reap_stale(prefix):
        """Remove namespaces and files of earlier runs whose process is gone (killed -9)."""
        out = run(["ip", "netns", "list"], check=False).stdout
        pat = re.compile(r"^(%s(\d+))-\S+" % re.escape(prefix))
        for line in out.splitlines():
            m = pat.match(line.strip())
            if not m or _alive(int(m.group(2))):
                continue
            run(["ip", "netns", "del", line.split()[0]], check=False)
        tmp = tempfile.gettempdir()
        for name in os.listdir(tmp):
            m = re.match(r"^%s(\d+)-" % re.escape(prefix), name)
            if m and not _alive(int(m.group(1))):
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(sig, frame):
            # KeyboardInterrupt unwinds through unittest and context managers (SystemExit would be
            # recorded as a test error and the run would go on).
            raise KeyboardInterrupt("signal %d" % sig)

        # SIGINT too: a process started in the background by a non-interactive shell inherits
        # SIGINT ignored, and Python then never raises KeyboardInterrupt for it.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, on_signal)

    # -- building blocks -----------------------------------------------------------------------

    def _add_ns(self, role, forwarding):
        ns = self.ns(role)
        p = run(["ip", "netns", "add", ns], check=False)
        if p.returncode != 0:
            raise SandboxError("cannot create network namespace %s: %s" % (ns, p.stderr.strip()))
        self.namespaces.append(ns)
        sysctls = [
            "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
            # REJECT answers with ICMP; rate limiting would turn "refused" into "timeout".
            "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
            "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
        ]
        if forwarding:
            sysctls += ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        run(["ip", "netns", "exec", ns, "sysctl", "-qw"] + sysctls)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        if role == "lan":
            # Bridged frames must not go through this namespace's netfilter.
            run(["ip", "netns", "exec", ns, "sh", "-c",
                 "for f in /proc/sys/net/bridge/bridge-nf-call-*; do "
                 "[ -w $f ] && echo 0 > $f; done; true"])
        return ns

    def _lan_port(self, ns, name, ips):
        lan = self.ns("lan")
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", name,
             "netns", lan])
        run(["ip", "-n", lan, "-batch", "-"],
            input="link set %s master br0\nlink set %s up\n" % (name, name))
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join([
            "link set eth0 up",
            "addr add %s/24 dev eth0" % ips[4],
            "addr add %s/64 dev eth0 nodad" % ips[6],
        ]) + "\n")

    def pod(self, name):
        """Creates pod `name` (a<N> on node-a, b<N> on node-b) if needed; returns its agent."""
        if name in self.pods:
            return self.agents[name]
        node = pod_node(name)
        idx = int(name[1:])
        node_ns = self.ns(node)
        ns = self._add_ns("pod-" + name, forwarding=False)
        host_if = "%s%d" % (POD_IF_PREFIX, idx)
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", host_if,
             "address", GATEWAY_MAC, "netns", node_ns])
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join([
            "link set eth0 up",
            "addr add %s/32 dev eth0" % pod_ip(name, 4),
            "addr add %s/128 dev eth0 nodad" % pod_ip(name, 6),
            "route add %s dev eth0 scope link" % GATEWAY[4],
            "route add default via %s dev eth0" % GATEWAY[4],
            "neigh replace %s lladdr %s dev eth0 nud permanent" % (GATEWAY[4], GATEWAY_MAC),
            "route add ::/0 via %s dev eth0" % GATEWAY[6],
        ]) + "\n")
        node_ip = NODES[node]["ip"]
        run(["ip", "-n", node_ns, "-batch", "-"], input="\n".join([
            "link set %s up" % host_if,
            "addr add %s/64 dev %s nodad" % (GATEWAY[6], host_if),
            "route add %s/32 dev %s src %s" % (pod_ip(name, 4), host_if, node_ip[4]),
            "route add %s/128 dev %s src %s" % (pod_ip(name, 6), host_if, node_ip[6]),
        ]) + "\n")
        self.agents[name] = Agent(self, ns, name, self.cgroup if node == "node-a" else None)
        self.pods.add(name)
        return self.agents[name]

    # -- helpers for tests ---------------------------------------------------------------------

    def agent(self, where):
        if where in self.agents:
            return self.agents[where]
        return self.pod(where)

    def address(self, where, fam=4):
        """The primary address of a namespace: a pod, a node or a client."""
        if where in NODES:
            return NODES[where]["ip"][fam]
        if where in CLIENTS:
            return CLIENTS[where][fam]
        return pod_ip(where, fam)

    def backend_flags(self):
        """Flags sliceproxy needs in this sandbox beside the backend's name."""
        return self.cgroup.flags() if self.cgroup else []

    def node_exec(self, cmd, node="node-a", check=True, timeout=60):
        return run(["ip", "netns", "exec", self.ns(node)] + list(cmd), check=check,
                   timeout=timeout)

    def popen_in(self, node, cmd, **kw):
        """Starts a long-running process in a namespace; teardown kills it if still running."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(node)] + list(cmd),
                             preexec_fn=_die_with_parent, **kw)
        self.processes.append(p)
        return p

    def tmpdir(self, what="tmp"):
        d = tempfile.mkdtemp(prefix="%s-%s-" % (self.tag, what))
        self.tmpdirs.append(d)
        return d

    def add_node_address(self, addr, node="node-a"):
        """An extra address on a node's lan interface (IPv6 ones deprecated, so that they are
        never picked as a source address)."""
        if family(addr) == 4:
            cmd = ["ip", "-n", self.ns(node), "addr", "add", addr + "/32", "dev", "eth0"]
        else:
            cmd = ["ip", "-n", self.ns(node), "addr", "add", addr + "/128", "dev", "eth0",
                   "nodad", "preferred_lft", "0"]
        run(cmd)
        self.extra_addrs.append((node, addr))

    def del_node_address(self, addr, node="node-a"):
        plen = "/32" if family(addr) == 4 else "/128"
        run(["ip", "-n", self.ns(node), "addr", "del", addr + plen, "dev", "eth0"], check=False)
        if (node, addr) in self.extra_addrs:
            self.extra_addrs.remove((node, addr))

    def flush_conntrack(self, node="node-a"):
        self.node_exec(["conntrack", "-F"], node=node, check=False)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
