#!/usr/bin/env python3
"""A/B data-plane comparison of two sliceproxy binaries (or two flag sets), with the harness'
data-plane topology, load generator and echo server (dataplane.py): both run side by side in
their own namespaces and are measured in alternating rounds, so a disturbance of the machine
hits both; each figure is the median of the rounds. For a per-packet change too small for a
whole `bench/run`.

    sudo python3 bench/harness/ab_dataplane.py --bin-dir build \\
        --a /tmp/before-sliceproxy --b build/sliceproxy [--a-args '...'] [--b-args '...'] \\
        [--services 10] [--seconds 2] [--rounds 5] [--tests tcp_rr,udp_rr,tcp_crr]
"""

import argparse
import json
import os
import shlex
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane  # noqa: E402
from netns import Run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True, help="build directory with bench/bench_loadgen")
    ap.add_argument("--a", required=True, help="sliceproxy binary A")
    ap.add_argument("--b", required=True, help="sliceproxy binary B")
    ap.add_argument("--a-args", default="", help="extra flags for A")
    ap.add_argument("--b-args", default="", help="extra flags for B")
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tests", default="tcp_rr,udp_rr,tcp_crr")
    ap.add_argument("--a-system", default="sliceproxy-nftables", choices=dataplane.SYSTEMS,
                    help="what A is: a sliceproxy backend (then --a is its binary), kube-proxy's "
                         "rules or direct (then --a is not run)")
    ap.add_argument("--b-system", default="sliceproxy-nftables", choices=dataplane.SYSTEMS)
    args = ap.parse_args()
    if not 1 <= args.rounds <= 50 or not 0 < args.seconds <= 30:
        ap.error("--rounds 1..50, --seconds up to 30")
    tests = args.tests.split(",")

    run = Run(f"ab{os.getpid()}")
    work = tempfile.mkdtemp(prefix="sliceproxy-ab-")
    cases = {}
    try:
        for label, binary, extra, system in (("A", args.a, args.a_args, args.a_system),
                                             ("B", args.b, args.b_args, args.b_system)):
            bins = {"sliceproxy": os.path.abspath(binary),
                    "loadgen": os.path.abspath(os.path.join(args.bin_dir, "bench", "bench_loadgen")),
                    "echo": os.path.abspath(os.path.join(args.bin_dir, "bench",
                                                         "bench_echo_server"))}
            if extra:
                # install() starts the daemon with the harness' flags; extra flags ride along.
                wrapper = os.path.join(work, f"sliceproxy-{label}")
                with open(wrapper, "w") as f:
                    f.write('#!/bin/sh\nexec %s "$@" %s\n' % (shlex.quote(bins["sliceproxy"]),
                                                             extra))
                os.chmod(wrapper, 0o755)
                bins["sliceproxy"] = wrapper
            dataplane.SHORT[system] = label  # distinct namespace names
            os.makedirs(os.path.join(work, label), exist_ok=True)
            cases[label] = dataplane.Case(system, args.services, run, bins,
                                          os.path.join(work, label), print)
        samples = {(label, t): [] for label in cases for t in tests}
        for r in range(args.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for t in tests:
                for label in order:
                    samples[(label, t)].append(cases[label].measure(t, args.seconds))
        out = {}
        for (label, t), s in samples.items():
            out.setdefault(t, {})[label] = dataplane.combine(s)
        print(json.dumps(out, indent=1))
        print("\n| test | A p50 us | B p50 us | B/A p50 | A rate/s | B rate/s | B/A rate |")
        print("|---|---|---|---|---|---|---|")
        for t, row in out.items():
            a, b = row["A"], row["B"]
            print(f"| {t} | {a['p50_us']:.1f} | {b['p50_us']:.1f} | "
                  f"{b['p50_us'] / a['p50_us']:.3f} | {a['rate_per_s']:.0f} | "
                  f"{b['rate_per_s']:.0f} | {b['rate_per_s'] / a['rate_per_s']:.3f} |")
    finally:
        for c in cases.values():
            c.close()
        run.cleanup()


if __name__ == "__main__":
    main()
