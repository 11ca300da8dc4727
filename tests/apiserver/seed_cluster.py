#!/usr/bin/env python3
"""sliceproxy against the test API server at 100,000 endpoints: the seed workload of
bench/workloads.cpp (one NodePort service, 100,000 endpoints in 1006 slices) served over TLS,
sliceproxy started with --kubeconfig and the dry-run backend (or, with --backend nftables, the
real kernel: the whole run then moves into a private network namespace of its own). Measures

  - the time from start to the first full sync (list over TLS + decode + track + sync),
  - the daemon's RSS (VmRSS) and peak RSS (VmHWM) once synced,
  - with --rate R --duration D: R endpoint changes per second (one endpoint of a slice
    replaced) for D seconds, and the time from each change leaving the API server to sliceproxy
    programming it (kube-proxy's network_programming_duration), two ways:
      daemon_*: the daemon's own measurement. Each update carries the annotation
        endpoints.kubernetes.io/last-change-trigger-time (the time it was made), and sliceproxy
        observes, after the sync that programmed it (the backend call returned: for nftables,
        the kernel acknowledged the transaction), now - trigger time into
        kubeproxy_network_programming_duration_seconds and the quantiles of
        sliceproxy_network_programming_duration_seconds, read from /metrics at the end;
      latency_*: from the update to this script reading the dry-run line that programs it
        (dry-run only; it includes the pipe and this script's own delays).

The server, the load generator and the reader are one Python process. Its cyclic garbage
collector is frozen and disabled for the run (--python-gc keeps it): with the store and event
history holding millions of objects, each full collection paused the whole process for up to
0.8 s, delaying watch events and dry-run reads alike, and showed up as a missed p99.

Usage: python3 tests/apiserver/seed_cluster.py --bin build/sliceproxy [--rate 200 --duration 30]
           [--min-sync-period 1s] [--backend nftables]
"""

import argparse
import datetime
import gc
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402

NS, SERVICE = "bench", "seed"
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"
NETNS_MARK = "SLICEPROXY_SEED_NETNS"


def rfc3339nano(t):
    return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def address(n):
    v = (10 << 24) | (1 << 23) | (n & 0x7FFFFF)
    return "%d.%d.%d.%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)


def endpoint(n):
    return {"addresses": [address(n)], "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "node-%d" % (n % 5000), "zone": "zone-%d" % (n % 3),
            "targetRef": {"kind": "Pod", "namespace": NS, "name": "seed-7d9f8c6b5-%05x" % n,
                          "uid": "0b7c5e2a-%04x-4c1e-8f3a-9d2b1c0e4f5a" % (n & 0xFFFF)}}


def seed_objects(endpoints=100000, slices=1006):
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": SERVICE, "namespace": NS, "labels": {"app": "seed"}},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080,
                               "nodePort": 30080}],
                    "selector": {"app": "seed"}, "externalTrafficPolicy": "Cluster"}}
    out, base, extra, nxt = [], endpoints // slices, endpoints % slices, 0
    seeded = rfc3339nano(time.time())  # before sliceproxy starts: not observed
    for i in range(slices):
        count = base + (1 if i < extra else 0)
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "seed-%05d" % i, "namespace": NS,
                                 "annotations": {TRIGGER: seeded},
                                 "labels": {"kubernetes.io/service-name": SERVICE,
                                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                    "addressType": "IPv4", "endpoints": [endpoint(nxt + j) for j in range(count)],
                    "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]})
        nxt += count
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-0", "labels": {"topology.kubernetes.io/zone": "zone-0"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}]}}
    return svc, out, node


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return -1.0


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.environ.get("SLICEPROXY_BIN", "build/sliceproxy"))
    p.add_argument("--rate", type=float, default=0, help="endpoint changes per second after the sync")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--min-sync-period", default="1s")
    p.add_argument("--backend", default="dry-run", choices=("dry-run", "nftables"))
    p.add_argument("--python-gc", action="store_true",
                   help="keep this process's cyclic garbage collector on (the old harness)")
    args = p.parse_args()

    if args.backend == "nftables" and not os.environ.get(NETNS_MARK):
        # The kernel programmed is that of a network namespace of our own (gone when we exit);
        # the API server listens on its loopback.
        if os.geteuid() != 0:
            raise SystemExit("--backend nftables needs root (a private network namespace)")
        os.environ[NETNS_MARK] = "1"
        os.execvp("unshare", ["unshare", "--net", "--", sys.executable, os.path.abspath(__file__),
                              *sys.argv[1:]])
    if os.environ.get(NETNS_MARK):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    tmp = tempfile.mkdtemp(prefix="sliceproxy-seed-")
    certs = tls_certs.generate(tmp)
    srv = ApiServer(certs, bookmark_interval=60).start()
    # Watches are always current here; a bounded history keeps the heap from growing all run.
    srv.store.max_history = 5000
    svc, slices, node = seed_objects()
    srv.create(svc)
    for s in slices:
        srv.store.create("endpointslices", s)
    srv.create(node)
    kc = kubeconfig_file.write(os.path.join(tmp, "kubeconfig"), srv.url, certs.ca_cert, token="test-token")
    gc_pauses = []
    if args.python_gc:
        began = {}

        def timed(phase, info):
            if phase == "start":
                began["t"] = time.perf_counter()
            elif info["generation"] == 2:
                gc_pauses.append(time.perf_counter() - began["t"])
        gc.callbacks.append(timed)
    else:
        gc.collect()
        gc.freeze()
        gc.disable()

    metrics_port = free_port()
    t0 = time.time()
    proc = subprocess.Popen([args.bin, "--healthz-bind-address", "", "--debug-port", "0",
                             "--metrics-bind-address", "127.0.0.1:%d" % metrics_port,
                             "--backend", args.backend, "--kubeconfig", kc, "--hostname-override",
                             "node-0", "--min-sync-period", args.min_sync_period],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1 << 20)
    lines, logs = queue.Queue(), queue.Queue()

    def pump(stream, q, echo):
        for line in stream:
            q.put((time.time(), line))
            if echo:
                sys.stderr.write(line)
    threading.Thread(target=pump, args=(proc.stdout, lines, False), daemon=True).start()
    threading.Thread(target=pump, args=(proc.stderr, logs, bool(os.environ.get("SEED_STDERR"))),
                     daemon=True).start()

    try:
        while True:
            t, line = logs.get(timeout=120)
            m = re.search(r"full sync: (\d+) service ports, (\d+) kernel operations", line)
            if m:
                break
            if "[error]" in line or "[critical]" in line:
                raise SystemExit("sliceproxy: " + line)
        result = {"backend": args.backend, "min_sync_period": args.min_sync_period,
                  "service_ports": int(m.group(1)), "kernel_operations": int(m.group(2)),
                  "start_to_full_sync_s": round(t - t0, 3)}
        if args.backend == "dry-run":
            while True:
                _, line = lines.get(timeout=60)
                if line.startswith('{"op":"program"'):
                    result["endpoints_programmed"] = len(json.loads(line).get("internalEndpoints", []))
                    break
        time.sleep(1.0)
        result["rss_MB"] = round(proc_status(proc.pid, "VmRSS:"), 1)
        result["peak_rss_MB"] = round(proc_status(proc.pid, "VmHWM:"), 1)
        if os.environ.get("SEED_SMAPS"):
            os.system("grep -E '^(Rss|Anonymous)' /proc/%d/smaps_rollup" % proc.pid)

        if args.rate > 0:
            before = scrape(metrics_port)
            sent = {}       # new endpoint address -> time the update was made
            written = {}    # resourceVersion -> time its watch event was written out
            rv_of = {}      # new endpoint address -> resourceVersion of its update
            results, results_wire = [], []

            def on_sent(resource, type_, obj):
                written.setdefault(obj["metadata"]["resourceVersion"], time.time())
            srv.on_event_sent = on_sent
            stop = threading.Event()

            def reader():
                while not stop.is_set():
                    try:
                        t, line = lines.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    rec = json.loads(line)
                    for ch in rec.get("endpointChanges", []):
                        if ch["to"] and not ch["from"]:
                            ip = ch["endpoint"].rsplit(":", 1)[0]
                            if ip in sent:
                                results.append(t - sent.pop(ip))
                                w = written.get(rv_of.get(ip))
                                if w is not None:
                                    results_wire.append(t - w)
            threading.Thread(target=reader, daemon=True).start()
            gen, start = 0, time.time()
            while time.time() - start < args.duration:
                i = gen % len(slices)
                s = slices[i]
                gen += 1
                new = endpoint((1 << 22) + gen)
                s["endpoints"][gen % len(s["endpoints"])] = new
                now = time.time()
                s["metadata"]["annotations"][TRIGGER] = rfc3339nano(now)
                sent[new["addresses"][0]] = now
                rv_of[new["addresses"][0]] = srv.store.update("endpointslices", s)["metadata"]["resourceVersion"]
                delay = start + gen / args.rate - time.time()
                if delay > 0:
                    time.sleep(delay)
            time.sleep(3)
            stop.set()
            after = scrape(metrics_port)
            count = "kubeproxy_network_programming_duration_seconds_count"
            quantile = 'sliceproxy_network_programming_duration_seconds{quantile="%s"}'
            result.update({"events": gen, "events_per_s": round(gen / args.duration, 1),
                           # the daemon's own measurement, from each update's trigger time
                           "daemon_observed": int(after[count] - before.get(count, 0)),
                           "daemon_p50_ms": round(1000 * after[quantile % "0.5"], 1),
                           "daemon_p90_ms": round(1000 * after[quantile % "0.9"], 1),
                           "daemon_p99_ms": round(1000 * after[quantile % "0.99"], 1)})
            if results:
                result.update({
                    "programmed": len(results),
                    "latency_p50_ms": round(1000 * percentile(results, 50), 1),
                    "latency_p99_ms": round(1000 * percentile(results, 99), 1),
                    "latency_max_ms": round(1000 * max(results), 1),
                    # from the watch event written on the socket, not from the update
                    "wire_latency_p50_ms": round(1000 * percentile(results_wire, 50), 1),
                    "wire_latency_p99_ms": round(1000 * percentile(results_wire, 99), 1)})
            if gc_pauses:
                result.update({"python_full_gcs": len(gc_pauses),
                               "python_full_gc_max_pause_ms": round(1000 * max(gc_pauses), 1)})
            result.update({"rss_after_MB": round(proc_status(proc.pid, "VmRSS:"), 1),
                           "peak_rss_after_MB": round(proc_status(proc.pid, "VmHWM:"), 1)})
        print(json.dumps(result))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
