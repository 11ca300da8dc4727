"""Times kube-proxy's kernel mechanisms for one workload: run inside a fresh network namespace
(it makes its own). Rule text is generated before each timed step; only the apply is timed
(iptables-restore or nft -f, the process kube-proxy itself runs per sync), so these are lower
bounds for kube-proxy: its Go proxier (computing and writing the rules) is not included.

Prints one JSON object with the same keys as bench_cp_harness's program rows."""

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kube_iptables  # noqa: E402
import kube_nftables  # noqa: E402
from netns import die_with_parent  # noqa: E402

SYSTEMS = {
    # name: (restore command, kernel-object counter flavour)
    "kube-proxy-iptables": (["iptables-nft-restore", "-w", "5", "--noflush", "--counters"], "nft"),
    "kube-proxy-iptables-legacy": (["iptables-legacy-restore", "-w", "5", "--noflush", "--counters"], "legacy"),
    "kube-proxy-nftables": (["nft", "-f", "-"], "nft"),
}


CLONE_NEWNET = 0x40000000


class TimedOut(Exception):
    pass


def apply(cmd, text, timeout):
    """Runs cmd with text on stdin; returns wall ms and the child's CPU seconds."""
    with tempfile.TemporaryFile() as f:
        f.write(text.encode())
        f.seek(0)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, stdin=f, capture_output=True, timeout=timeout,
                               preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            raise TimedOut(f"{cmd[0]} did not finish within {timeout} s")
        ms = (time.perf_counter() - t0) * 1000
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode()[:2000]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return ms, cpu


def enter_private_netns():
    """Moves this process (and so every command it runs) into a new, empty network namespace,
    which disappears with it: nothing here can touch the host's rules or be left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        sys.exit(f"peers.py: cannot create a network namespace (need root): {os.strerror(err)}")


def count_objects(flavour):
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, os.path.join(here, "kernel_objects.py"), flavour],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def load_dump(path):
    services, changes, added = [], [], []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "change" in row:
                changes.append(row)
            elif "add_service" in row:
                added.append(row)
            else:
                services.append(row)
    return services, changes, added


def find_service(services, name):
    for s in services:
        if s["service"] == name:
            return s
    raise KeyError(name)


def median(xs):
    return statistics.median(xs) if xs else None


def run(args):
    services, changes, added = load_dump(args.dump)
    cmd, flavour = SYSTEMS[args.system]
    out = {"system": args.system, "workload": args.workload, "services": len(services),
           "endpoints": sum(len(s["endpoints"]) for s in services), "lower_bound": True}
    k = args.repeat
    iptables = args.system.startswith("kube-proxy-iptables")
    if iptables:
        rs = kube_iptables.IptablesRuleset(services, args.cluster_cidr)
        apply(cmd, kube_iptables.jump_rules(), args.timeout)
        cold_text = rs.restore_text()
    else:
        rs = kube_nftables.NftRuleset(services, args.cluster_cidr, args.service_cidr)
        cold_text = rs.cold_text()
    out["cold_input_mb"] = len(cold_text) / 1e6
    try:
        out["cold_ms"], out["cold_cpu_s"] = apply(cmd, cold_text, args.timeout)
    except TimedOut as e:
        out["cold_ms"] = None
        out["error"] = f"cold program: {e}"
        return out
    del cold_text
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["kernel_objects"] = count_objects(flavour) if args.count else None

    def one_change(c, full):
        svc = find_service(services, c["service"])
        svc["endpoints"][svc["endpoints"].index(c["remove"])] = c["add"]
        if iptables:
            stale = [] if rs.large() else [kube_iptables.sep_chain(svc, c["remove"])]
            text = rs.restore_text(None if full else {kube_iptables.port_name(svc)}, stale)
        else:
            text = rs.endpoint_change_text(svc, [c["add"]], [c["remove"]])
        return apply(cmd, text, args.timeout), len(text)

    try:
        partial, size = [], 0
        for c in changes[:k]:
            (ms, _), size = one_change(c, False)
            partial.append(ms)
        out["one_change_ms"] = median(partial)
        out["one_change_max_ms"] = max(partial) if partial else None
        out["one_change_input_bytes"] = size
        if iptables:
            full = []
            for c in changes[k:2 * k]:
                (ms, _), size = one_change(c, True)
                full.append(ms)
            out["one_change_full_ms"] = median(full)
            out["one_change_full_input_bytes"] = size
        adds = []
        for a in added[:k]:
            svc = dict(a)
            del svc["add_service"]
            services.append(svc)
            if iptables:
                text = rs.restore_text({kube_iptables.port_name(svc)})
            else:
                text = rs.service_added_text(svc)
            adds.append(apply(cmd, text, args.timeout)[0])
        out["one_service_ms"] = median(adds)
    except TimedOut as e:
        out["error"] = str(e)
    out["repeat"] = k
    out["cpu_s"] = (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--system", required=True, choices=sorted(SYSTEMS))
    ap.add_argument("--dump", required=True, help="bench_cp_harness dump output")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--cluster-cidr", default="10.0.0.0/8")
    ap.add_argument("--service-cidr", default="10.96.0.0/12")
    ap.add_argument("--no-count", dest="count", action="store_false")
    args = ap.parse_args()
    enter_private_netns()
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
