"""The issue-7 benchmark harness: sliceproxy against kube-proxy's kernel mechanisms, control
plane and data plane, in network namespaces this run creates and removes. Run it through
bench/run (which builds the programs and guarantees cleanup); see README "Benchmark harness".

Writes OUT/results.json (every row), OUT/results.md (tables, ratios, targets) and OUT/*.png."""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import controlplane  # noqa: E402
import dataplane  # noqa: E402
import ebpf_cgroup  # noqa: E402
import modes  # noqa: E402
import netns  # noqa: E402
import packet_rate  # noqa: E402
import plots  # noqa: E402
import report  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info():
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    osname = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "os": osname,
            "iptables": first(["iptables-nft-restore", "--version"]),
            "nft": first(["nft", "--version"])}


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Results:
    def __init__(self, args, cfg):
        self.data = {"mode": args.mode, "command": args.command, "config": cfg,
                     "machine": machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                     "load": [], "control_plane": [], "churn": [], "data_plane": [],
                     "packet_rate": [],
                     "expected": {"control_plane": [], "churn": [], "data_plane": [],
                                  "packet_rate": []}}
        self.out = args.out

    def sample_load(self, where):
        self.data["load"].append({"at": where, "loadavg": loadavg()})

    def save(self):
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.data, f, indent=1)


def control_plane(res, cfg, bins, systems, workdir, only_peers, ebpf=None):
    d = res.data
    workloads = [(modes.sweep_label(n), "seed", n, n) for n in cfg["sweep"]]
    workloads.append((modes.wide_label(cfg["wide"]), "wide", cfg["wide"],
                      cfg["wide"][0] * cfg["wide"][1]))
    timed_out = set()
    for label, kind, size, endpoints in workloads:
        for system in systems:
            d["expected"]["control_plane"].append([label, system])
            if only_peers and not system.startswith("kube-proxy"):
                continue
            try:
                if system.startswith("sliceproxy-"):
                    row = controlplane.sliceproxy_row(bins, system.split("-", 1)[1], kind, size,
                                                      cfg["repeat"], label, ebpf)
                else:
                    cap = cfg["peer_max_endpoints"].get(system)
                    if cap is not None and endpoints > cap:
                        row = {"system": system, "workload": label, "endpoints": endpoints,
                               "status": "skipped",
                               "reason": f"above {cap} endpoints for this mode (cost grows "
                                         f"quadratically; see the smaller sizes)"}
                    elif kind == "seed" and system in timed_out:
                        row = {"system": system, "workload": label, "endpoints": endpoints,
                               "status": "skipped",
                               "reason": "a smaller size already exceeded the time limit"}
                    else:
                        repeat = cfg.get("peer_repeat_for", {}).get(system, cfg["peer_repeat"])
                        row = controlplane.peer_row(bins, system, kind, size, repeat, label,
                                                    cfg["peer_timeout"], workdir)
                        if row.get("cold_ms") is None:
                            timed_out.add(system)
                            row["status"] = "timeout"
                            row["reason"] = row.get("error", "")
                row.setdefault("status", "ok" if not row.get("error") else "partial")
            except Exception as e:  # noqa: BLE001 - recorded in the row, then reported
                row = {"system": system, "workload": label, "status": "failed",
                       "reason": str(e)[:1500]}
            d["control_plane"].append(row)
            log(f"  control plane {label:14} {system:28} {report.cp_summary(row)}")
            res.save()


def churn(res, cfg, bins, backends_, workdir, ebpf=None):
    for c in cfg["churn"]:
        for b in backends_:
            key = f"churn-{c['endpoints']}-sync{c['min_sync_ms']}ms"
            res.data["expected"]["churn"].append([key, f"sliceproxy-{b}"])
            samples = os.path.join(res.out, f"{key}-{b}.samples")
            try:
                row = controlplane.churn_row(bins, b, c, samples, ebpf)
                row["status"] = "ok"
            except Exception as e:  # noqa: BLE001
                row = {"system": f"sliceproxy-{b}", "status": "failed", "reason": str(e)[:1500]}
            row["workload"] = key
            res.data["churn"].append(row)
            log(f"  churn {key} sliceproxy-{b}: p50 {row.get('latency_p50_ms')} ms, "
                f"p99 {row.get('latency_p99_ms')} ms, sync p99 {row.get('sync_p99_ms')} ms")
            res.save()


def data_plane(res, cfg, bins, run, workdir, backends_, ebpf=None):
    """Every (system, size) case is set up first and kept alive, then the tests run in rounds
    across all of them, so slow drifts in the machine's load (2 cores, shared) hit every case
    alike instead of whichever was measured last."""
    systems = dataplane.systems(backends_)
    for count in cfg["dp_services"]:
        for system in systems:
            for test, _, _ in dataplane.TESTS:
                res.data["expected"]["data_plane"].append([system, count, test])
    cases, failed = [], []
    try:
        for count in cfg["dp_services"]:
            for system in systems:
                try:
                    case = dataplane.Case(system, count, run, bins, workdir, log, ebpf)
                    cases.append(case)
                    log(f"  data plane {system} with {count} services installed in "
                        f"{case.setup_s:.1f} s")
                except Exception as e:  # noqa: BLE001
                    failed.append((system, count, str(e)[:1500]))
                    log(f"  data plane {system} {count}: FAILED {e}")
        samples = {}
        for rnd in range(cfg["dp_rounds"]):
            # Alternating order (A B C, C B A, ...): a drift in the machine's load within a
            # round hits every case alike over two rounds.
            for case in (cases if rnd % 2 == 0 else cases[::-1]):
                for test, _, _ in dataplane.TESTS:
                    r = case.measure(test, cfg["dp_seconds"])
                    samples.setdefault((case.system, case.count, test), []).append(r)
            log(f"  data plane round {rnd + 1}/{cfg['dp_rounds']} done")
        for case in cases:
            for test, _, _ in dataplane.TESTS:
                row = dataplane.combine(samples[(case.system, case.count, test)])
                row.update({"system": case.system, "services": case.count, "test": test,
                            "setup_s": round(case.setup_s, 3)})
                row["status"] = "ok" if row["errors"] == 0 and row["requests"] > 0 else "failed"
                res.data["data_plane"].append(row)
                log(f"  data plane {case.system:22} {case.count:6} services {test:11} "
                    f"p50 {row['p50_us'] or 0:8.1f} us  p99 {row['p99_us'] or 0:8.1f} us  "
                    f"{row['rate_per_s'] or 0:9.0f}/s  errors {row['errors']}")
        for system, count, why in failed:
            for test, _, _ in dataplane.TESTS:
                res.data["data_plane"].append({"system": system, "services": count, "test": test,
                                               "status": "failed", "reason": why})
    finally:
        for case in cases:
            case.close()
    res.save()


def packet_rates(res, cfg, bins, run, workdir, backends_, ebpf=None):
    """NodePort forwarding per core (packet_rate.py): every case set up first, then measured in
    alternating rounds, as the data plane is. The floors do not depend on the number of
    services: measured once, at the first count."""
    systems = packet_rate.systems(backends_)
    plan = [(s, c) for c in cfg["pps_services"] for s in systems
            if s not in packet_rate.FLOORS or c == cfg["pps_services"][0]]
    res.data["expected"]["packet_rate"] = [list(x) for x in plan]
    cases, failed = [], []
    try:
        for system, count in plan:
            try:
                case = packet_rate.Case(system, count, run, bins, workdir, ebpf)
                cases.append(case)
                log(f"  packet rate {system} with {count} services set up in "
                    f"{case.setup_s:.1f} s")
            except Exception as e:  # noqa: BLE001
                failed.append((system, count, str(e)[:1500]))
                log(f"  packet rate {system} {count}: FAILED {e}")
        samples = {}
        for rnd in range(cfg["pps_rounds"]):
            # A copy: a case that fails is dropped from `cases` inside the loop.
            for case in (list(cases) if rnd % 2 == 0 else cases[::-1]):
                try:
                    samples.setdefault(case, []).append(case.measure(
                        cfg["pps_frames"], 1, cfg["pps_latency_rate"], cfg["pps_latency_s"]))
                except Exception as e:  # noqa: BLE001
                    failed.append((case.system, case.count, str(e)[:1500]))
                    samples.pop(case, None)
                    cases.remove(case)
                    case.close()
            log(f"  packet rate round {rnd + 1}/{cfg['pps_rounds']} done")
        for case in cases:
            row = packet_rate.row(case.system, case.count, samples[case], case.setup_s)
            row["status"] = ("ok" if row["delivered"] > 0 and
                             row["untranslated"] <= 0.01 * row["frames"] else "failed")
            if row["status"] != "ok":
                row["reason"] = (f"{row['untranslated']} of {row['frames']} frames reached the "
                                 f"backend side untranslated, {row['delivered']} translated")
            res.data["packet_rate"].append(row)
            log(f"  packet rate {case.system:22} {case.count:6} services "
                f"{row['pps'] / 1e6:6.2f} Mpps  {row['ns_per_packet']:7.0f} ns/packet  "
                f"latency p50 {row['latency_p50_us']} us p99 {row['latency_p99_us']} us")
        for system, count, why in failed:
            if not any(r["system"] == system and r["services"] == count
                       for r in res.data["packet_rate"]):
                res.data["packet_rate"].append({"system": system, "services": count,
                                                "status": "failed", "reason": why})
    finally:
        for case in cases:
            case.close()
    res.save()


def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=sorted(modes.MODES), default="quick")
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin-dir", required=True, help="build directory holding the programs")
    ap.add_argument("--run-id", default=str(os.getpid()))
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--skip", default="",
                    help="comma list of parts to skip: cp,churn,dp,pps")
    args = ap.parse_args()
    cfg = modes.MODES[args.mode]
    os.makedirs(args.out, exist_ok=True)
    workdir = os.path.join(args.out, "work")
    os.makedirs(workdir, exist_ok=True)
    bins = {"cp": os.path.join(args.bin_dir, "bench", "bench_cp_harness"),
            "loadgen": os.path.join(args.bin_dir, "bench", "bench_loadgen"),
            "echo": os.path.join(args.bin_dir, "bench", "bench_echo_server"),
            "xdp_traffic": os.path.join(args.bin_dir, "bench", "bench_xdp_traffic"),
            "sliceproxy": os.path.join(args.bin_dir, "sliceproxy")}
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"harness: {name} program not found at {path} (build it first)")
    skip = set(filter(None, args.skip.split(",")))

    run = netns.Run(args.run_id)
    # SIGTERM (a CI timeout, a kill of bench/run) cleans up like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupted)
    res = Results(args, cfg)
    t0 = time.monotonic()
    ebpf = None
    try:
        backends_ = controlplane.backends(bins)
        # The ebpf backend's socket programs attach to cgroups of this run, never the host's.
        ebpf = ebpf_cgroup.EbpfPlace() if "ebpf" in backends_ else None
        systems = [f"sliceproxy-{b}" for b in backends_] + controlplane.PEERS
        res.data["backends"] = backends_
        res.sample_load("start")
        log(f"mode {args.mode}: backends {', '.join(backends_)}; load {loadavg()}")
        if "cp" not in skip:
            log("control plane: cold program, one endpoint change, one service added")
            control_plane(res, cfg, bins, systems, workdir, only_peers=False, ebpf=ebpf)
            res.sample_load("after control plane")
        if "churn" not in skip:
            log("churn: a service rolled endpoint by endpoint")
            churn(res, cfg, bins, backends_, workdir, ebpf)
            res.sample_load("after churn")
        if "dp" not in skip:
            log("data plane: TCP and UDP through the node's rules")
            data_plane(res, cfg, bins, run, workdir, backends_, ebpf)
            res.sample_load("after data plane")
        if "pps" not in skip:
            log("packet rate: NodePort forwarding per core, XDP generator to XDP sink")
            packet_rates(res, cfg, bins, run, workdir, backends_, ebpf)
            res.sample_load("after packet rate")
    finally:
        run.cleanup()
        if ebpf is not None:
            ebpf.close()
        res.data["duration_s"] = round(time.monotonic() - t0, 1)
        res.save()
    plots.draw(res.data, args.out)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(report.markdown(res.data))
    log(f"done in {res.data['duration_s']} s: {args.out}/results.md")
    problems = report.check(res.data)
    for p in problems:
        log(f"PROBLEM: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: everything this run created has been removed")
        sys.exit(130)
