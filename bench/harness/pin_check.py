#!/usr/bin/env python3
"""How much the data plane's figures depend on where the scheduler puts the client and the
server: N identical "direct" topologies (dataplane.Topology, bench_echo_server, bench_loadgen;
no rules), measured in rounds, unpinned and then pinned to one CPU as dataplane.py runs them.
Prints each topology's per-round p50s. Needs root; leaves nothing behind.

    sudo python3 bench/harness/pin_check.py --bin-dir build [--topologies 4] [--rounds 3]
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataplane  # noqa: E402
import netns  # noqa: E402

MODES = ("tcp_rr", "tcp_crr", "udp_rr")


def measure(bins, topologies, rounds, seconds, pin):
    run = netns.Run(f"pin{os.getpid()}{int(pin)}")
    try:
        topos = []
        for i in range(topologies):
            t = dataplane.Topology(run, f"d{i}")
            dataplane.start_echo(run, t, bins, pin=pin)
            topos.append(t)
        res = {}
        target = f"{dataplane.ENDPOINTS[0]}:{dataplane.TARGET_PORT}"
        for _ in range(rounds):
            for i, t in enumerate(topos):
                for mode in MODES:
                    r = dataplane.loadgen(t, bins, mode, target, seconds, 1, pin=pin)
                    res.setdefault((i, mode), []).append(r.get("p50_us"))
        return res
    finally:
        run.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default="build")
    ap.add_argument("--topologies", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1)
    args = ap.parse_args()
    bins = {"loadgen": os.path.join(args.bin_dir, "bench", "bench_loadgen"),
            "echo": os.path.join(args.bin_dir, "bench", "bench_echo_server")}
    for pin in (False, True):
        res = measure(bins, args.topologies, args.rounds, args.seconds, pin)
        print("pinned to CPU " + dataplane.DP_CPU if pin else "unpinned")
        for mode in MODES:
            per = [[x for x in res[(i, mode)] if x is not None] for i in range(args.topologies)]
            print(f"  {mode:8} medians {[round(statistics.median(r), 1) for r in per if r]}  "
                  f"rounds {[[round(x, 1) for x in r] for r in per]}")


if __name__ == "__main__":
    main()
