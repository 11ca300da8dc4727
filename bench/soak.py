#!/usr/bin/env python3
"""The soak of issue 18: the real sliceproxy daemon (nftables backend) fed through the test API
server's watch, under endpoint and service churn, with continuous client traffic through the
real data plane to services that never change.

  bench/soak.py [--minutes 30] [--out DIR] [--bin build/sliceproxy] [--ci]

Network namespaces (all named sk18-<pid>-*, removed on exit, also on failure or Ctrl-C):
  node  sliceproxy, nftables, and the API server's listening socket (on its loopback);
        forwards between the two others
  cli   the client: TCP new connections to steady (ClusterIP 10.96.0.2:80) and UDP
        request/response to dns (10.96.0.10:53), both at --traffic-rate per second
  pod   the only real backend of steady and dns: bench_echo_server on 10.244.1.2:8080 (TCP and UDP)

The cluster: the seed workload (one NodePort service, --endpoints endpoints in 1006
EndpointSlices, addresses in 10.128/9 that nothing answers), plus steady and dns. Churn, paced
and bounded by the run's end: --churn-rate endpoint changes per second (one endpoint of a seed
slice replaced, carrying endpoints.kubernetes.io/last-change-trigger-time so the daemon measures
events-to-kernel), and every --service-period seconds a service added or removed in turn
(a ClusterIP service with one slice of two endpoints; about 10 alive at any time).

Every --sample-seconds: the daemon's RSS (VmRSS), open file descriptors (/proc/PID/fd), the
machine's load average and a /metrics scrape. The report (printed and written to
DIR/soak.json, plot DIR/soak.png):
  failed requests to the unchanged services by class (goal 0),
  RSS and fds first/last/max and least-squares slope per minute (goal flat),
  sync duration p99 (kubeproxy_sync_proxy_rules_duration_seconds, from its histogram buckets,
  interpolated within the bucket as histogram_quantile() does, and the bucket's bound)
  overall and per interval,
  events-to-kernel p99 (kubeproxy_network_programming_duration_seconds: trigger time to the
  kernel acknowledging the nftables transaction) overall and per interval; its buckets are
  1 s wide above 1 s, so the daemon's own summary sliceproxy_network_programming_duration_seconds
  (last 5-10 minutes) is reported beside it, and the API server's share (trigger time to the
  watch event written on the daemon's socket) is measured here.
--check-rss-growth MB: exit 1 if any request failed, the daemon died or logged an error, or RSS
grew by more than MB between the first sample after warm-up and the last (the CTest variant).
"""

import argparse
import gc
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "apiserver"))

import kubeconfig_file  # noqa: E402
import netns as netnsmod  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402
from seed_cluster import TRIGGER, endpoint, rfc3339nano, seed_objects  # noqa: E402

NS = "bench"
STEADY_IP, DNS_IP, POD_IP, PORT = "10.96.0.2", "10.96.0.10", "10.244.1.2", 8080
METRICS_PORT = 10249
SYNC = "kubeproxy_sync_proxy_rules_duration_seconds"
NETPROG = "kubeproxy_network_programming_duration_seconds"


def log(msg):
    print("soak: " + msg, file=sys.stderr, flush=True)


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# -- the sandbox --------------------------------------------------------------------------------

class Sandbox:
    def __init__(self, tag):
        self.tag = tag
        self.node, self.cli, self.pod = (tag + "-node", tag + "-cli", tag + "-pod")
        self.made = []

    def up(self):
        for ns in (self.node, self.cli, self.pod):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        # cli 192.168.18.1 <-> node 192.168.18.2 ; node 10.244.1.1 <-> pod 10.244.1.2
        for ns, peer, mine, theirs in ((self.cli, "c", "192.168.18.1/30", "192.168.18.2/30"),
                                       (self.pod, "p", POD_IP + "/24", "10.244.1.1/24")):
            sh("ip", "link", "add", "sk-" + peer, "netns", ns, "type", "veth", "peer", "name",
               "sk-" + peer + "n", "netns", self.node)
            sh("ip", "-n", ns, "addr", "add", mine, "dev", "sk-" + peer)
            sh("ip", "-n", ns, "link", "set", "sk-" + peer, "up")
            sh("ip", "-n", self.node, "addr", "add", theirs, "dev", "sk-" + peer + "n")
            sh("ip", "-n", self.node, "link", "set", "sk-" + peer + "n", "up")
        sh("ip", "-n", self.cli, "route", "add", "default", "via", "192.168.18.2")
        sh("ip", "-n", self.pod, "route", "add", "default", "via", "10.244.1.1")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def down(self):
        for ns in self.made:
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                      text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.made = []


def reap_stale():
    """Namespaces (and what runs in them) of an earlier run that was killed hard."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for name in sorted({line.split()[0] for line in listed.splitlines() if line.strip()}):
        m = re.match(r"^sk18-(\d+)-(node|cli|pod)$", name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            log("removing %s, left by a run that was killed" % name)
            stale = Sandbox("")
            stale.made = [name]
            stale.down()


# -- the cluster and its churn ------------------------------------------------------------------

def svc_objects(name, ip, proto, port, addrs, trigger):
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                    "ports": [{"name": "p", "protocol": proto, "port": port, "targetPort": PORT}],
                    "selector": {"app": name}}}
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": name + "-1", "namespace": NS, "annotations": {TRIGGER: trigger},
                       "labels": {"kubernetes.io/service-name": name,
                                  "endpointslice.kubernetes.io/managed-by": "soak"}},
          "addressType": "IPv4",
          "endpoints": [{"addresses": [a], "conditions": {"ready": True, "serving": True,
                                                          "terminating": False},
                         "nodeName": "node-0"} for a in addrs],
          "ports": [{"name": "p", "protocol": proto, "port": PORT}]}
    return svc, sl


class Churn:
    """Endpoint changes at `rate`/s and a service added or removed every `period` s, until
    `end` (monotonic) or stop. Counts what it did."""

    def __init__(self, srv, slices, rate, period, end):
        self.srv, self.slices, self.rate, self.period, self.end = srv, slices, rate, period, end
        self.stop = threading.Event()
        self.changes = self.added = self.removed = 0
        self.behind_max_s = 0.0
        self.alive = []
        self.next_svc = 0
        # The API server's share of events-to-kernel: from a change's trigger time to its watch
        # event written on the daemon's socket (this harness is Python on a busy machine).
        self.made_at = {}    # resourceVersion -> trigger time of an endpoint change
        self.wire = []       # delays (s) since the last take_wire()
        self.wire_all = []
        self.lock = threading.Lock()
        srv.on_event_sent = self.on_sent

    def on_sent(self, resource, type_, obj):
        if resource != "endpointslices" or type_ != "MODIFIED":
            return
        t = self.made_at.pop(obj["metadata"].get("resourceVersion"), None)
        if t is not None:
            d = time.time() - t
            with self.lock:
                self.wire.append(d)

    def take_wire(self):
        with self.lock:
            out, self.wire = self.wire, []
        self.wire_all.extend(out)
        return out

    def add_service(self):
        k = self.next_svc
        self.next_svc += 1
        name = "churn-%d" % k
        ip = "10.96.%d.%d" % (100 + (k // 250) % 100, 1 + k % 250)
        addrs = [endpoint((1 << 21) + 2 * k)["addresses"][0],
                 endpoint((1 << 21) + 2 * k + 1)["addresses"][0]]
        for obj in svc_objects(name, ip, "TCP", 80, addrs, rfc3339nano(time.time())):
            self.srv.create(obj)
        self.alive.append(name)
        self.added += 1

    def service_step(self):
        # Alternate: add one, remove the oldest; about 10 churn services alive.
        if (self.added + self.removed) % 2 == 0 or len(self.alive) <= 5:
            self.add_service()
        else:
            name = self.alive.pop(0)
            self.srv.delete("EndpointSlice", name + "-1", NS)
            self.srv.delete("Service", name, NS)
            self.removed += 1

    def run(self):
        start = time.monotonic()
        gen = 0
        next_svc_at = start
        while not self.stop.is_set() and time.monotonic() < self.end:
            now = time.monotonic()
            if now >= next_svc_at:
                self.service_step()
                next_svc_at += self.period
            i = gen % len(self.slices)
            gen += 1
            # A new object sharing the unchanged endpoints with the old one (which the store
            # and its history still hold, unmodified): no deep copy per change.
            old = self.slices[i]
            eps = list(old["endpoints"])
            eps[gen % len(eps)] = endpoint((1 << 22) + gen)
            meta = dict(old["metadata"])
            s = dict(old, metadata=meta, endpoints=eps)
            s.setdefault("kind", "EndpointSlice")
            s.setdefault("apiVersion", "discovery.k8s.io/v1")
            meta.setdefault("namespace", NS)
            made = time.time()
            meta["annotations"] = {TRIGGER: rfc3339nano(made)}
            # The resourceVersion it will get (this thread is the only writer), set before the
            # watch can send it.
            rv = str(self.srv.store.rv + 1)
            self.made_at[rv] = made
            self.srv.store.update_owned("endpointslices", s)
            if meta["resourceVersion"] != rv:
                self.made_at.pop(rv, None)
            self.slices[i] = s
            self.changes += 1
            delay = start + gen / self.rate - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                self.behind_max_s = max(self.behind_max_s, -delay)


# -- measurements -------------------------------------------------------------------------------

def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def histogram(metrics, name):
    """{le: cumulative count} and the count of histogram `name` (no other labels)."""
    buckets = {}
    for k, v in metrics.items():
        m = re.match(r'^%s_bucket\{le="([^"]+)"\}$' % name, k)
        if m:
            buckets[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = v
    return buckets, metrics.get(name + "_count", 0.0)


def hist_quantile(after, before, q, interpolate=True):
    """Quantile q (s) of the observations between two scrapes, None without observations:
    linear within its bucket as Prometheus' histogram_quantile() does, or (interpolate=False)
    the upper bound of that bucket."""
    b_after, n_after = after
    b_before, n_before = before
    n = n_after - n_before
    if n <= 0:
        return None
    lower, below = 0.0, 0.0
    for le in sorted(b_after):
        cum = b_after[le] - b_before.get(le, 0.0)
        if cum >= q * n:
            if not interpolate or not math.isfinite(le) or cum == below:
                return le if math.isfinite(le) else lower
            return lower + (le - lower) * (q * n - below) / (cum - below)
        lower, below = le, cum
    return float("inf")


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def proc_rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def slope_per_min(points):
    """Least-squares slope of (t seconds, value) in value per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 60.0 * sum((t - mt) * (v - mv) for t, v in points) / den


def ms(x):
    return None if x is None else (round(1000 * x, 1) if math.isfinite(x) else "inf")


# -- the run ------------------------------------------------------------------------------------

def plot(samples, out_dir, title):
    dat = os.path.join(out_dir, "soak.dat")
    with open(dat, "w") as f:
        for s in samples:
            f.write("%.1f %.1f %d %s\n" % (s["t_s"] / 60.0, s["rss_MB"], s["fds"],
                                           s["sync_p99_ms"] if s["sync_p99_ms"] is not None
                                           else "NaN"))
    script = """
set terminal pngcairo size 1400,520 font 'DejaVu Sans,11'
set output 'soak.png'
set multiplot layout 1,3 title "%s"
set grid
set xlabel 'minutes'
set key off
set yrange [0:*]
set title 'daemon RSS (MB)'
plot 'soak.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#1b7837'
set title 'daemon open file descriptors'
plot 'soak.dat' using 1:3 with linespoints lw 2 pt 7 lc rgb '#2166ac'
set title 'sync duration p99 in each interval (ms)'
plot 'soak.dat' using 1:4 with linespoints lw 2 pt 7 lc rgb '#b2182b'
unset multiplot
""" % title
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, cwd=out_dir)
    if p.returncode != 0:
        raise RuntimeError("gnuplot failed: " + p.stderr.strip()[:1000])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--bin", default=os.environ.get("SLICEPROXY_BIN",
                                                   os.path.join(REPO, "build", "sliceproxy")))
    p.add_argument("--echo-server", default=None,
                   help="bench_echo_server (default: next to --bin under bench/)")
    p.add_argument("--out", default=None)
    p.add_argument("--endpoints", type=int, default=100000)
    p.add_argument("--churn-rate", type=float, default=500)
    p.add_argument("--service-period", type=float, default=1.0)
    p.add_argument("--traffic-rate", type=float, default=20)
    p.add_argument("--sample-seconds", type=float, default=60)
    p.add_argument("--warmup-seconds", type=float, default=0,
                   help="samples before this are not used for the RSS growth check")
    p.add_argument("--min-sync-period", default="1s")
    p.add_argument("--check-rss-growth", type=float, default=None, metavar="MB")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("soak: needs root (network namespaces, nftables)")
    if not 0 < args.minutes <= 120 or not 0 < args.churn_rate <= 2000:
        raise SystemExit("soak: --minutes must be in (0, 120], --churn-rate in (0, 2000]")
    echo = args.echo_server or os.path.join(os.path.dirname(os.path.abspath(args.bin)), "bench",
                                            "bench_echo_server")
    for f in (args.bin, echo):
        if not os.access(f, os.X_OK):
            raise SystemExit("soak: %s is not an executable (build it first)" % f)
    out = args.out or os.path.join(REPO, "build", "soak-%s" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    duration = args.minutes * 60.0

    tag = "sk18-%d" % os.getpid()
    sb = Sandbox(tag)
    tmp = tempfile.mkdtemp(prefix=tag + "-")
    procs, srv, churn = [], None, None
    daemon_log = open(os.path.join(out, "sliceproxy.log"), "w")

    def on_signal(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    rc = 1
    try:
        reap_stale()
        sb.up()
        certs = tls_certs.generate(tmp)
        # Bookmarks keep a quiet watch's resourceVersion fresh; a minute of history lets a
        # watch that reconnects while this Python server is seconds behind (a busy machine)
        # resume instead of relisting (410). A real API server keeps ~5 minutes.
        srv = ApiServer(certs, bookmark_interval=10, netns=sb.node).start()
        srv.store.max_history = int(60 * args.churn_rate + 600)
        seed_svc, slices, node = seed_objects(endpoints=args.endpoints)
        srv.create(seed_svc)
        for s in slices:
            srv.store.create("endpointslices", s)
        srv.create(node)
        seeded = rfc3339nano(time.time())
        for obj in svc_objects("steady", STEADY_IP, "TCP", 80, [POD_IP], seeded) + \
                svc_objects("dns", DNS_IP, "UDP", 53, [POD_IP], seeded):
            srv.create(obj)
        kc = kubeconfig_file.write(os.path.join(tmp, "kubeconfig"), srv.url, certs.ca_cert,
                                   token="test-token")
        # The store and history hold ~a million objects: a full collection would pause the
        # server (and the churn) for most of a second.
        gc.collect()
        gc.freeze()
        gc.disable()

        bound = str(int(duration + 300))
        procs.append(subprocess.Popen(["ip", "netns", "exec", sb.pod, echo, "--port", str(PORT),
                                       "--max-seconds", bound], stdout=subprocess.DEVNULL))
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", sb.node, args.bin, "--backend", "nftables", "--kubeconfig", kc,
             "--hostname-override", "node-0", "--min-sync-period", args.min_sync_period,
             "--healthz-bind-address", "", "--debug-port", "0",
             "--metrics-bind-address", "127.0.0.1:%d" % METRICS_PORT],
            stdout=subprocess.DEVNULL, stderr=daemon_log)
        procs.append(daemon)
        t_start = time.monotonic()

        def scrape():
            _, body = netnsmod.http_get(sb.node, "127.0.0.1", METRICS_PORT, "/metrics")
            return parse_metrics(body)

        # Ready: the first full sync is done (the seed is programmed) and steady answers.
        deadline = time.monotonic() + 180
        while True:
            if daemon.poll() is not None:
                raise SystemExit("soak: sliceproxy exited with %s (log: %s)"
                                 % (daemon.returncode, daemon_log.name))
            if time.monotonic() > deadline:
                raise SystemExit("soak: sliceproxy not synced within 180 s (log: %s)"
                                 % daemon_log.name)
            try:
                if histogram(scrape(), SYNC)[1] >= 1:
                    probe = subprocess.run(
                        ["ip", "netns", "exec", sb.cli, sys.executable,
                         os.path.join(HERE, "soak_traffic.py"), "--tcp", "%s:80" % STEADY_IP,
                         "--udp", "%s:53" % DNS_IP, "--rate", "5", "--seconds", "1",
                         "--timeout", "1"], capture_output=True, text=True, timeout=30)
                    res = json.loads(probe.stdout)
                    if res["tcp"]["failed"] == 0 and res["udp"]["failed"] == 0:
                        break
            except (OSError, ValueError):
                pass
            time.sleep(1)
        first_sync_s = time.monotonic() - t_start
        log("synced and serving after %.1fs; soak of %.1f min starts" % (first_sync_s,
                                                                         args.minutes))
        # The daemon pid: `ip netns exec` execs the binary, so it is the Popen pid.
        pid = daemon.pid

        t0 = time.monotonic()
        end = t0 + duration
        traffic = subprocess.Popen(
            ["ip", "netns", "exec", sb.cli, sys.executable, os.path.join(HERE, "soak_traffic.py"),
             "--tcp", "%s:80" % STEADY_IP, "--udp", "%s:53" % DNS_IP,
             "--rate", str(args.traffic_rate), "--seconds", str(duration)],
            stdout=subprocess.PIPE, text=True)
        procs.append(traffic)
        churn = Churn(srv, slices, args.churn_rate, args.service_period, end)
        for _ in range(10):
            churn.add_service()
        churn.added = 0
        churn_thread = threading.Thread(target=churn.run, daemon=True)
        churn_thread.start()

        first_metrics = prev = scrape()
        samples = []
        next_at = t0
        while True:
            now = time.monotonic()
            if daemon.poll() is not None:
                raise SystemExit("soak: sliceproxy exited with %s during the soak (log: %s)"
                                 % (daemon.returncode, daemon_log.name))
            if now >= next_at or now >= end:
                m = scrape()
                sample = {"t_s": round(now - t0, 1), "rss_MB": round(proc_rss_mb(pid), 1),
                          "fds": len(os.listdir("/proc/%d/fd" % pid)),
                          "loadavg_1m": os.getloadavg()[0],
                          "endpoint_changes": churn.changes,
                          "services_added": churn.added, "services_removed": churn.removed,
                          "syncs": int(histogram(m, SYNC)[1]),
                          "sync_p99_ms": ms(hist_quantile(histogram(m, SYNC),
                                                          histogram(prev, SYNC), 0.99)),
                          "events_to_kernel_p99_ms": ms(hist_quantile(
                              histogram(m, NETPROG), histogram(prev, NETPROG), 0.99)),
                          "apiserver_to_wire_p99_ms": ms(pct(churn.take_wire(), 0.99)),
                          # the daemon's summary (exact within 0.1%), over its last 5-10 min
                          "events_to_kernel_p99_summary_ms": ms(m.get(
                              'sliceproxy_network_programming_duration_seconds'
                              '{quantile="0.99"}'))}
                samples.append(sample)
                log(json.dumps(sample))
                prev = m
                if now >= end:
                    break
                next_at += args.sample_seconds
            time.sleep(max(0.0, min(next_at, end) - time.monotonic()))

        churn.stop.set()
        churn_thread.join(timeout=30)
        tout, _ = traffic.communicate(timeout=60)
        tres = json.loads(tout)
        last = scrape()
        errors = []
        daemon_log.flush()
        with open(daemon_log.name) as f:
            errors = [line.rstrip() for line in f if "[error]" in line or "[critical]" in line]

        def series(key):
            return [(s["t_s"], s[key]) for s in samples]

        def summary(key):
            vals = [v for _, v in series(key)]
            return {"first": vals[0], "last": vals[-1], "max": max(vals), "min": min(vals),
                    "slope_per_min": round(slope_per_min(series(key)), 3)}
        warm = [s for s in samples if s["t_s"] >= args.warmup_seconds] or samples
        rss_growth = round(warm[-1]["rss_MB"] - warm[0]["rss_MB"], 1)
        failed = tres["tcp"]["failed"] + tres["udp"]["failed"]
        sq = 'sliceproxy_network_programming_duration_seconds{quantile="%s"}'
        report = {
            "mode": "soak", "minutes": args.minutes, "backend": "nftables",
            "seed_endpoints": args.endpoints, "churn_rate_per_s": args.churn_rate,
            "service_period_s": args.service_period, "traffic_rate_per_s": args.traffic_rate,
            "min_sync_period": args.min_sync_period, "first_sync_s": round(first_sync_s, 1),
            "endpoint_changes": churn.changes, "endpoint_changes_per_s":
                round(churn.changes / duration, 1),
            "churn_behind_max_s": round(churn.behind_max_s, 2),
            "services_added": churn.added, "services_removed": churn.removed,
            "traffic": tres, "failed_requests_unchanged_services": failed,
            "rss_MB": summary("rss_MB"), "fds": summary("fds"),
            "rss_growth_after_warmup_MB": rss_growth,
            "syncs": int(histogram(last, SYNC)[1] - histogram(first_metrics, SYNC)[1]),
            "sync_p99_ms": ms(hist_quantile(histogram(last, SYNC),
                                            histogram(first_metrics, SYNC), 0.99)),
            "sync_p50_ms": ms(hist_quantile(histogram(last, SYNC),
                                            histogram(first_metrics, SYNC), 0.5)),
            "events_to_kernel_observed": int(histogram(last, NETPROG)[1]
                                             - histogram(first_metrics, NETPROG)[1]),
            "events_to_kernel_p99_ms": ms(hist_quantile(histogram(last, NETPROG),
                                                        histogram(first_metrics, NETPROG), 0.99)),
            "events_to_kernel_p50_ms": ms(hist_quantile(histogram(last, NETPROG),
                                                        histogram(first_metrics, NETPROG), 0.5)),
            "events_to_kernel_p99_last5min_ms": ms(last.get(sq % "0.99")),
            "apiserver_to_wire_p50_ms": ms(pct(churn.wire_all + churn.take_wire(), 0.5)),
            "apiserver_to_wire_p99_ms": ms(pct(churn.wire_all, 0.99)),
            "sync_p99_bucket_le_ms": ms(hist_quantile(histogram(last, SYNC),
                                                      histogram(first_metrics, SYNC), 0.99,
                                                      False)),
            "events_to_kernel_p99_bucket_le_ms": ms(hist_quantile(
                histogram(last, NETPROG), histogram(first_metrics, NETPROG), 0.99, False)),
            "loadavg_1m": summary("loadavg_1m"), "nproc": os.cpu_count(),
            "daemon_errors": errors[:50], "daemon_error_count": len(errors),
            "samples": samples}
        with open(os.path.join(out, "soak.json"), "w") as f:
            json.dump(report, f, indent=1)
        plot(samples, out, "Soak: sliceproxy (nftables), %d endpoints, %d endpoint changes/s, a "
             "service added or removed every %g s, TCP+UDP traffic to unchanged services"
             % (args.endpoints, round(churn.changes / duration), args.service_period))
        brief = {k: v for k, v in report.items() if k not in ("samples", "traffic")}
        for proto in ("tcp", "udp"):
            brief[proto] = {k: v for k, v in tres[proto].items() if k != "first_failures"}
        print(json.dumps(brief, indent=1))
        log("report: %s/soak.json, plot: %s/soak.png" % (out, out))
        problems = []
        if failed:
            problems.append("%d requests to unchanged services failed: tcp %s, udp %s"
                            % (failed, tres["tcp"]["failures_by_class"],
                               tres["udp"]["failures_by_class"]))
        if errors:
            problems.append("sliceproxy logged %d errors, first: %s" % (len(errors), errors[0]))
        if args.check_rss_growth is not None and rss_growth > args.check_rss_growth:
            problems.append("RSS grew %.1f MB after warm-up (bound %.1f MB)"
                            % (rss_growth, args.check_rss_growth))
        if problems:
            log("FAILED:\n  " + "\n  ".join(problems))
            rc = 1
        else:
            rc = 0
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        rc = 130
    finally:
        if churn is not None:
            churn.stop.set()
        for pr in reversed(procs):
            if pr.poll() is None:
                pr.terminate()
                try:
                    pr.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    pr.kill()
                    pr.wait()
        if srv is not None:
            srv.stop()
        sb.down()
        daemon_log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
