"""Turns results.json into the Markdown tables of bench/RESULTS.md, checks the targets, and
checks that a run produced every row it was meant to (the smoke test's assertion)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report_ebpf  # noqa: E402
import report_pps  # noqa: E402

PEER_NOTE = ("kube-proxy peers are lower bounds: only their kernel apply is timed "
             "(iptables-restore / nft -f, which kube-proxy runs per sync), not the Go proxier "
             "that computes and writes the rules.")


def _ms(v):
    if v is None:
        return "—"
    if v >= 10000:
        return f"{v / 1000:.1f} s"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 10:
        return f"{v:.0f} ms"
    if v >= 1:
        return f"{v:.1f} ms"
    return f"{v:.3f} ms"


def _num(v, fmt="{:.0f}"):
    return "—" if v is None else fmt.format(v)


CHANGE_STEPS = ("one_change_ms", "one_change_full_ms", "one_service_ms")


def _timeout_s(r):
    """The time limit a peer's step hit, or None."""
    err = (r or {}).get("error", "")
    if "did not finish within" not in err:
        return None
    try:
        return float(err.split("within", 1)[1].split()[0])
    except (IndexError, ValueError):
        return None


def _step(r, key):
    """A peer step's time; after a time limit, the step that hit it reads "> N s" and later
    steps (not run) "—"."""
    v = r.get(key)
    if v is not None:
        return _ms(v)
    limit = _timeout_s(r)
    if limit is None or key not in CHANGE_STEPS:
        return "—"
    expected = [k for k in CHANGE_STEPS if k in r or k == key or
                (k == "one_change_full_ms" and r.get("system", "").startswith("kube-proxy-iptables"))]
    first_missing = next((k for k in expected if r.get(k) is None), None)
    return f"> {limit:.0f} s (time limit)" if key == first_missing else "not run"


def cp_summary(row):
    if row.get("status") in ("failed", "skipped", "timeout") and row.get("cold_ms") is None:
        return f"{row.get('status')}: {row.get('reason', '')[:160]}"
    return (f"cold {_ms(row.get('cold_ms'))}, one change {_ms(row.get('one_change_ms'))}, "
            f"one service {_ms(row.get('one_service_ms'))}")


def _cp(data, workload, system):
    for r in data["control_plane"]:
        if r.get("workload") == workload and r.get("system") == system:
            return r
    return None


def _objects(r):
    k = r.get("kernel_objects") if r else None
    if not isinstance(k, dict):
        return "—"
    if "memlock_bytes" in k:
        return report_ebpf.objects(k)
    return f"{k['total']:,} ({k['chains']:,} chains, {k['rules']:,} rules, {k['elements']:,} elements)"


def _ratio(peer, ours):
    if peer is None or not ours:
        return "—"
    return f"{peer / ours:,.0f}x" if peer / ours >= 10 else f"{peer / ours:.1f}x"


def control_plane_table(data):
    d = data
    systems = []
    for r in d["control_plane"]:
        if r.get("system") not in systems:
            systems.append(r.get("system"))
    ours = [s for s in systems if s.startswith("sliceproxy")]
    ref = ours[0] if ours else None
    labels = []
    for r in d["control_plane"]:
        if r.get("workload") not in labels:
            labels.append(r.get("workload"))
    lines = ["| workload | system | cold program | one endpoint change | one change, full restore "
             "| one service added | CPU s (cold) | peak RSS | kernel objects after cold | cold: peer / sliceproxy | one change: peer / sliceproxy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label in labels:
        mine = _cp(d, label, ref)
        for s in systems:
            r = _cp(d, label, s)
            if r is None:
                continue
            if r.get("cold_ms") is None:
                lines.append(f"| {label} | {s} | {r.get('status')}: {r.get('reason', '')[:120]} "
                             f"| | | | | | | | |")
                continue
            ratio_cold = ratio_change = ""
            if s != ref and mine and mine.get("cold_ms"):
                ratio_cold = _ratio(r.get("cold_ms"), mine.get("cold_ms"))
                ratio_change = _ratio(r.get("one_change_ms"), mine.get("one_change_ms"))
            lines.append(
                f"| {label} | {s} | {_ms(r.get('cold_ms'))} | {_step(r, 'one_change_ms')} | "
                f"{_step(r, 'one_change_full_ms')} | {_step(r, 'one_service_ms')} | "
                f"{_num(r.get('cold_cpu_s'), '{:.2f}')} | {_num(r.get('peak_rss_mb'), '{:.0f} MB')} | "
                f"{_objects(r)} | {ratio_cold} | {ratio_change} |")
    return "\n".join(lines)


def churn_table(data):
    lines = ["| stream | system | events | min-sync-period | events-to-kernel p50 | p90 | p99 | max "
             "| syncs | sync p50 | sync p99 | CPU (share of a core) | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["churn"]:
        if r.get("status") != "ok":
            lines.append(f"| {r.get('workload')} | {r.get('system')} | failed: {r.get('reason', '')[:120]} | | | | | | | | | | |")
            continue
        lines.append(
            f"| {int(r['endpoints'])}-endpoint service rolled, {int(r['rolled'])} endpoints, "
            f"{r['rate_per_s']:.0f} events/s | {r['system']} | {int(r['events'])} | "
            f"{r['min_sync_ms']:.0f} ms | {_ms(r['latency_p50_ms'])} | {_ms(r['latency_p90_ms'])} | "
            f"{_ms(r['latency_p99_ms'])} | {_ms(r['latency_max_ms'])} | {int(r['syncs'])} | "
            f"{_ms(r['sync_p50_ms'])} | {_ms(r['sync_p99_ms'])} | {100 * r['cpu_per_s']:.1f}% | "
            f"{r['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


def _dp(data, system, count, test):
    for r in data["data_plane"]:
        if r["system"] == system and r["services"] == count and r["test"] == test:
            return r
    return None


def data_plane_table(data):
    counts = sorted({r["services"] for r in data["data_plane"]})
    systems = []
    for r in data["data_plane"]:
        if r["system"] not in systems:
            systems.append(r["system"])
    lines = ["| services | system | TCP req/resp p50 / p99 (persistent) | TCP new connection + req/resp p50 / p99 "
             "| connections/s (1 / 4 clients) | UDP req/resp p50 / p99 (new flow each) | ratio to direct (new-connection p50, conn/s with 4, UDP p50) |",
             "|---|---|---|---|---|---|---|"]

    def us(r, k):
        return "—" if r is None or r.get(k) is None or r.get("status") != "ok" else f"{r[k]:.0f} us"

    for c in counts:
        for s in systems:
            rr, crr = _dp(data, s, c, "tcp_rr"), _dp(data, s, c, "tcp_crr")
            c4, udp = _dp(data, s, c, "tcp_crr_c4"), _dp(data, s, c, "udp_rr")
            if crr is not None and crr.get("status") != "ok":
                lines.append(f"| {c} | {s} | failed: {(crr.get('reason') or crr.get('first_error') or '')[:120]} | | | | |")
                continue
            ratio = ""
            if s != "direct":
                d_crr, d_c4, d_udp = (_dp(data, "direct", c, t) for t in ("tcp_crr", "tcp_crr_c4", "udp_rr"))
                try:
                    ratio = (f"{crr['p50_us'] / d_crr['p50_us']:.2f} / "
                             f"{c4['rate_per_s'] / d_c4['rate_per_s']:.2f} / "
                             f"{udp['p50_us'] / d_udp['p50_us']:.2f}")
                except (TypeError, KeyError, ZeroDivisionError):
                    ratio = "—"
            lines.append(
                f"| {c} | {s} | {us(rr, 'p50_us')} / {us(rr, 'p99_us')} | "
                f"{us(crr, 'p50_us')} / {us(crr, 'p99_us')} | "
                f"{_num(crr.get('rate_per_s') if crr else None)} / {_num(c4.get('rate_per_s') if c4 else None)} | "
                f"{us(udp, 'p50_us')} / {us(udp, 'p99_us')} | {ratio} |")
    return "\n".join(lines)


def targets(data):
    """(target, measured, met) for the issue's three targets, where this run has the data."""
    out = []
    ours = next((s for s in (r.get("system") for r in data["control_plane"])
                 if s and s.startswith("sliceproxy")), None)
    seed_label = None
    for r in data["control_plane"]:
        if r.get("system") == ours and r.get("endpoints") == 100000 and r.get("workload", "").startswith("seed"):
            seed_label = r["workload"]
    if seed_label:
        me = _cp(data, seed_label, ours)
        cold = me.get("cold_ms")
        out.append(("seed cold program <= 1 s", f"{_ms(cold)} ({_ms(me.get('cold_backend_ms'))} of it in the backend)",
                    cold is not None and cold <= 1000))
        for peer in ("kube-proxy-iptables", "kube-proxy-iptables-legacy"):
            p = _cp(data, seed_label, peer)
            if p is None:
                continue
            if p.get("cold_ms") is None:
                smaller = [r for r in data["control_plane"] if r.get("system") == peer
                           and r.get("cold_ms") is not None and r.get("workload", "").startswith("seed")]
                best = max(smaller, key=lambda r: r.get("endpoints", 0)) if smaller else None
                why = (f"not measurable at 100k ({p.get('reason', p.get('status'))}); at "
                       f"{best['endpoints']:,} endpoints it already took {_ms(best['cold_ms'])}"
                       if best else p.get("reason", ""))
                out.append((f"seed cold >= 20x faster than {peer} (iptables-restore)", why, True if best and best["cold_ms"] > 20 * cold else None))
            else:
                ratio = p["cold_ms"] / cold if cold else None
                out.append((f"seed cold >= 20x faster than {peer} (iptables-restore)",
                            f"{_ms(p['cold_ms'])} vs {_ms(cold)}: {ratio:.1f}x",
                            ratio is not None and ratio >= 20))
    sweep = [r for r in data["control_plane"] if r.get("system") == ours
             and r.get("workload", "").startswith("seed") and r.get("one_change_ms")]
    if len(sweep) >= 2:
        sweep.sort(key=lambda r: r["endpoints"])
        vals = [r["one_change_ms"] for r in sweep]
        spread = max(vals) / min(vals)
        desc = ", ".join(f"{int(r['endpoints']):,}: {_ms(r['one_change_ms'])}" for r in sweep)
        out.append((f"one endpoint change flat within 2x from {int(sweep[0]['endpoints']):,} to "
                     f"{int(sweep[-1]['endpoints']):,} endpoints", f"{desc} (max/min {spread:.2f})",
                     spread <= 2))
    counts = sorted({r["services"] for r in data["data_plane"]})
    if len(counts) >= 2:
        lo, hi = counts[0], counts[-1]
        for test in ("tcp_crr", "tcp_rr", "udp_rr"):
            a, b = _dp(data, "sliceproxy-nftables", lo, test), _dp(data, "sliceproxy-nftables", hi, test)
            bad = next((r for r in (a, b) if r is None or r.get("status") != "ok"), None)
            if bad is not None or not (a or {}).get("p50_us") or not (b or {}).get("p50_us"):
                why = (bad or {}).get("reason") or (bad or {}).get("first_error") or "no data"
                out.append((f"sliceproxy nftables {test} p50 at {hi:,} services within 10% of {lo}",
                            f"not measured: {why[:200]}", False))
                continue
            if a and b:
                ratio = b["p50_us"] / a["p50_us"]
                out.append((f"sliceproxy nftables {test} p50 at {hi:,} services within 10% of {lo}",
                            f"{a['p50_us']:.0f} us -> {b['p50_us']:.0f} us ({100 * (ratio - 1):+.1f}%)",
                            ratio <= 1.10))
    out += report_ebpf.targets(data, _dp)
    out += report_pps.targets(data)
    return out


def markdown(data):
    m = data["machine"]
    load = "; ".join(f"{x['at']}: {' '.join(str(v) for v in x['loadavg'])}" for x in data["load"])
    parts = [
        f"Mode `{data['mode']}`, {data['started']}, {data.get('duration_s', 0) / 60:.1f} minutes. "
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"{m['os']}; {m['iptables']}; {m['nft']}. Load average (1/5/15 min): {load}.",
        "", f"Command: `{data['command']}`", "", PEER_NOTE, "",
        "### Control plane", "", control_plane_table(data), "",
        *(["### The eBPF backend's control plane", "", report_ebpf.table(data), ""]
          if report_ebpf.table(data) else []),
        "### Churn: events to kernel", "", churn_table(data), "",
        "### Data plane", "", data_plane_table(data), "",
        *(["### NodePort forwarding per core (packet rate)", "", report_pps.table(data), ""]
          if report_pps.table(data) else []),
        "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t, measured, met in targets(data):
        parts.append(f"| {t} | {measured} | {'yes' if met else ('no' if met is False else 'n/a')} |")
    return "\n".join(parts) + "\n"


def check(data):
    """Problems that make a run incomplete: a missing row, a failed row, a number missing."""
    problems = []
    for label, system in data["expected"]["control_plane"]:
        r = _cp(data, label, system)
        if r is None:
            problems.append(f"control plane row missing: {label} {system}")
        elif r.get("status") == "failed":
            problems.append(f"control plane {label} {system} failed: {r.get('reason')}")
        elif r.get("status") in ("ok", "partial"):
            # A peer step that hit the time limit is a result (reported as "> N s"), not a
            # harness failure; anything else missing is.
            timed_out = system.startswith("kube-proxy") and _timeout_s(r) is not None
            for k in ("cold_ms", "one_change_ms", "one_service_ms", "peak_rss_mb"):
                if not isinstance(r.get(k), (int, float)) and not (timed_out and k in CHANGE_STEPS):
                    problems.append(f"control plane {label} {system}: {k} missing")
            if system.startswith("sliceproxy") and not isinstance(r.get("kernel_objects"), dict):
                problems.append(f"control plane {label} {system}: kernel objects not counted")
    for key, system in data["expected"]["churn"]:
        r = next((x for x in data["churn"] if x.get("workload") == key and x.get("system") == system), None)
        if r is None or r.get("status") != "ok":
            problems.append(f"churn {key} {system}: {'missing' if r is None else r.get('reason')}")
        elif not r.get("events") or r.get("latency_p99_ms") is None:
            problems.append(f"churn {key} {system}: no latencies")
    for system, count, test in data["expected"]["data_plane"]:
        r = _dp(data, system, count, test)
        if r is None:
            problems.append(f"data plane row missing: {system} {count} {test}")
        elif r.get("status") != "ok":
            problems.append(f"data plane {system} {count} {test}: "
                            f"{r.get('reason') or r.get('first_error') or 'errors'}")
    problems += report_pps.check(data)
    return problems


if __name__ == "__main__":
    # Re-render a finished run's tables: report.py OUT_DIR/results.json
    import json
    import sys
    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)), end="")
