"""Runs `bench/run smoke` and checks what it wrote: results.json parses and holds every
expected row with numbers, results.md has every section, both plots are PNGs, and the list of
network namespaces is the same before and after (the harness cleaned up)."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    if os.geteuid() != 0:
        sys.exit("FAIL: the benchmark harness needs root (network namespaces)")
    shutil.rmtree(args.out, ignore_errors=True)
    before = namespaces()
    t0 = time.monotonic()
    proc = subprocess.Popen(["bash", args.run, "smoke", "--no-build", "--build-dir", args.build_dir,
                             "--out", args.out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=170)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    # bench/run names everything it creates sp7-<its pid>-*: only this run's names count, not
    # those of another run on the same machine.
    mine = f"sp7-{proc.pid}-"
    took = time.monotonic() - t0
    print(p.stdout[-6000:])
    print(p.stderr[-3000:], file=sys.stderr)
    expect(p.returncode == 0, f"bench/run smoke exited {p.returncode}")
    expect(took < 90, f"smoke mode took {took:.0f} s (budget 90 s)")
    leaked = {ns for ns in namespaces() - before if ns.startswith(mine)}
    expect(not leaked, f"namespaces left behind: {sorted(leaked)}")

    with open(os.path.join(args.out, "results.json")) as f:
        data = json.load(f)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(args.run)), "harness"))
    import report  # the harness's own completeness check, then independent spot checks

    for problem in report.check(data):
        failures.append(problem)
    systems = {r["system"] for r in data["control_plane"]}
    ours = [f"sliceproxy-{b}" for b in data.get("backends", [])]
    expect("sliceproxy-ebpf" in ours, "the ebpf backend was not measured")
    for s in (*ours, "kube-proxy-iptables", "kube-proxy-iptables-legacy",
              "kube-proxy-nftables"):
        expect(s in systems, f"control plane has no {s} rows")
    expect(len(data["control_plane"]) == len(data["expected"]["control_plane"]) >= 12,
           "control plane row count")
    for r in data["control_plane"]:
        if r.get("status") == "ok":
            expect(r["cold_ms"] > 0 and r["one_change_ms"] > 0 and r["one_service_ms"] > 0,
                   f"non-positive time in {r['workload']} {r['system']}")
            objects = r.get("kernel_objects") or {}
            if r["system"] == "sliceproxy-ebpf":
                # Maps, not rules: their memory, and the map-update time of one change.
                expect(objects.get("maps") == 7 and objects.get("memlock_bytes", 0) > 0,
                       f"{r['workload']} ebpf: maps not reported: {objects}")
                expect(r.get("one_change_map_us", 0) > 0 and r.get("ebpf_load_ms", 0) > 0,
                       f"{r['workload']} ebpf: no map-update or load time")
                continue
            expect(objects.get("total", 0) >= r["endpoints"],
                   f"{r['workload']} {r['system']}: fewer kernel objects than endpoints")
    expect(len(data["churn"]) == len(data["expected"]["churn"]) >= 1, "churn row count")
    for r in data["churn"]:
        expect(r.get("events", 0) > 0 and 0 < r["latency_p50_ms"] <= r["latency_p99_ms"],
               f"churn latencies of {r.get('workload')}")
    dp = data["data_plane"]
    expect(len(dp) == len(data["expected"]["data_plane"]) == 2 * (3 + len(ours)) * 4,
           "data plane row count")
    for r in dp:
        expect(r.get("requests", 0) > 0 and r.get("errors") == 0 and r.get("p50_us", 0) > 0,
               f"data plane {r['system']} {r['services']} {r['test']}: no clean traffic")
    with open(os.path.join(args.out, "results.md")) as f:
        md = f.read()
    for section in ("### Control plane", "### Churn", "### Data plane", "### Targets",
                    "lower bounds", "### The eBPF backend's control plane"):
        expect(section in md, f"results.md lacks '{section}'")
    for png in ("sweep.png", "churn_latency.png"):
        path = os.path.join(args.out, png)
        with open(path, "rb") as f:
            expect(f.read(8) == b"\x89PNG\r\n\x1a\n", f"{png} is not a PNG")

    if failures:
        print("\n".join(f"FAIL: {x}" for x in failures))
        print(f"0 passed, {len(failures)} failed")
        sys.exit(1)
    print(f"bench/run smoke: {len(data['control_plane'])} control-plane, {len(data['churn'])} "
          f"churn, {len(dp)} data-plane rows in {took:.0f} s; no namespace left")


if __name__ == "__main__":
    main()
