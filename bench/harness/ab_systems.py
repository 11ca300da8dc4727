#!/usr/bin/env python3
"""Side-by-side data-plane comparison of harness systems (dataplane.py: direct, sliceproxy's
backends, kube-proxy's rules) at several service counts, in alternating rounds: every case is
set up first and kept alive, each round measures every (system, test) once, the order reversed
every other round, so a disturbance of this shared machine hits every system alike. Each
figure is the median over rounds; the ratio to direct is the median of the per-round ratios
(direct measured in the same round, next to the system), which cancels slow load drift.
For differences too small for `bench/run`'s two or three rounds (issue 15: socket LB within 3%
of dialling the pod).

    sudo python3 bench/harness/ab_systems.py --bin-dir build \\
        [--systems direct,sliceproxy-ebpf,sliceproxy-nftables] [--services 10,10000] \\
        [--tests tcp_crr,udp_rr] [--seconds 2] [--rounds 10] [--json OUT]
"""

import argparse
import fcntl
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane  # noqa: E402
import ebpf_cgroup  # noqa: E402
from netns import Run  # noqa: E402


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def profile_ebpf(cases, tests, seconds):
    """The socket programs' own cost, from the kernel's run-time statistics (enabled only for
    this extra pass, so the rounds ran without them): {services: {test: {program: ns/run}}}."""
    out = {}
    fd = ebpf_cgroup.enable_run_time_stats()
    try:
        for (s, c), case in cases.items():
            if not s.startswith("sliceproxy-ebpf"):
                continue
            for t in tests:
                before = ebpf_cgroup.program_stats(case.pin)
                case.measure(t, seconds)
                after = ebpf_cgroup.program_stats(case.pin)
                out.setdefault(c, {})[t] = {
                    name: {"runs": after[name][0] - before[name][0],
                           "ns_per_run": round((after[name][1] - before[name][1]) /
                                               (after[name][0] - before[name][0]), 1)}
                    for name in after if after[name][0] > before[name][0]}
    finally:
        os.close(fd)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, help="build directory (sliceproxy, bench/*)")
    ap.add_argument("--systems", default="direct,sliceproxy-ebpf,sliceproxy-nftables")
    ap.add_argument("--services", default="10,10000")
    ap.add_argument("--tests", default="tcp_crr,udp_rr")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", help="also write every sample here")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 60 or not 0 < args.seconds <= 30:
        ap.error("--rounds 1..60, --seconds up to 30")
    systems = args.systems.split(",")
    counts = [int(c) for c in args.services.split(",")]
    tests = args.tests.split(",")
    for s in systems:
        if s not in dataplane.SYSTEMS and s not in dataplane.VARIANTS:
            known = dataplane.SYSTEMS + list(dataplane.VARIANTS)
            ap.error(f"unknown system {s} (one of {', '.join(known)})")
    b = os.path.abspath(args.bin_dir)
    bins = {"sliceproxy": os.path.join(b, "sliceproxy"),
            "loadgen": os.path.join(b, "bench", "bench_loadgen"),
            "echo": os.path.join(b, "bench", "bench_echo_server")}

    # Never two measurements at once on this machine (bench/run takes the same lock).
    lock = open("/tmp/sliceproxy-bench.lock", "w")
    print("ab_systems: waiting for /tmp/sliceproxy-bench.lock", file=sys.stderr, flush=True)
    fcntl.flock(lock, fcntl.LOCK_EX)

    run = Run(f"abs{os.getpid()}")
    work = tempfile.mkdtemp(prefix="sliceproxy-ab-systems-")
    ebpf = ebpf_cgroup.EbpfPlace() if any(s.startswith("sliceproxy-ebpf") for s in systems) else None
    cases = {}
    profile = {}
    load = [("start", loadavg())]
    try:
        for c in counts:
            for s in systems:
                d = os.path.join(work, f"{s}-{c}")
                os.makedirs(d, exist_ok=True)
                cases[(s, c)] = dataplane.Case(s, c, run, bins, d, print, ebpf)
                print(f"{s} with {c} services set up in {cases[(s, c)].setup_s:.1f} s",
                      flush=True)
        load.append(("set up", loadavg()))
        samples = {k + (t,): [] for k in cases for t in tests}
        order = list(cases)
        t0 = time.monotonic()
        for r in range(args.rounds):
            for t in tests:
                for key in (order if r % 2 == 0 else order[::-1]):
                    samples[key + (t,)].append(cases[key].measure(t, args.seconds))
            print(f"round {r + 1}/{args.rounds} ({time.monotonic() - t0:.0f} s, load "
                  f"{loadavg()})", flush=True)
        load.append(("end", loadavg()))
        if ebpf is not None:
            profile = profile_ebpf(cases, tests, args.seconds)
    finally:
        for case in cases.values():
            case.close()
        run.cleanup()
        if ebpf is not None:
            ebpf.close()

    rows = []
    for (s, c, t), ss in samples.items():
        row = dataplane.combine(ss)
        row.update({"system": s, "services": c, "test": t})
        if s != "direct" and ("direct", c, t) in samples:
            ratios = [a["p50_us"] / d["p50_us"] for a, d in zip(ss, samples[("direct", c, t)])
                      if a.get("p50_us") and d.get("p50_us")]
            if ratios:
                q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else ratios * 3
                row.update({"ratio_p50": statistics.median(ratios), "ratio_q1": q[0],
                            "ratio_q3": q[-1]})
        rows.append(row)
    out = {"args": vars(args), "load": load, "rows": rows, "ebpf_programs": profile,
           "samples": {f"{s}|{c}|{t}": v for (s, c, t), v in samples.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(f"\nload average (1/5/15 min): " + "; ".join(
        f"{w}: {' '.join(str(x) for x in la)}" for w, la in load))
    print("\n| services | test | system | p50 us | p99 us | rate/s | errors | p50 / direct "
          "(median of rounds, IQR) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: (r["services"], r["test"], systems.index(r["system"]))):
        ratio = (f"{row['ratio_p50']:.3f} ({row['ratio_q1']:.3f}-{row['ratio_q3']:.3f})"
                 if "ratio_p50" in row else "")
        print(f"| {row['services']:,} | {row['test']} | {row['system']} | "
              f"{row['p50_us'] or 0:.1f} | {row['p99_us'] or 0:.0f} | {row['rate_per_s'] or 0:.0f} "
              f"| {row['errors']} | {ratio} |")

    for c, per_test in profile.items():
        for t, progs in per_test.items():
            print(f"ebpf programs, {c:,} services, {t}: " + ", ".join(
                f"{n} {p['ns_per_run']:.0f} ns x {p['runs']}" for n, p in progs.items()))


if __name__ == "__main__":
    main()
