"""The eBPF backend's part of results.md: what its control-plane rows carry beyond the common
columns (program load, map-update time alone, map memory), and its issue-15 targets."""

EBPF = "sliceproxy-ebpf"


def _mb(b):
    return "—" if b is None else f"{b / 1048576:.1f} MB"


def objects(k):
    """The kernel-objects cell of an ebpf row: maps and their memory."""
    return f"{k['maps']} maps, {_mb(k.get('memlock_bytes'))} (bpftool memlock)"


def _us(v):
    return "—" if v is None else f"{v:.1f} us"


def _ms(v):
    return "—" if v is None else f"{v:.0f} ms"


def table(data):
    rows = [r for r in data["control_plane"] if r.get("system") == EBPF and r.get("cold_ms")]
    if not rows:
        return ""
    lines = ["| workload | cold: maps filled (backend) | programs loaded + attached (before) | "
             "one endpoint change: map updates p50 / p90 | stale-socket walk p50 | "
             "map memory after cold | largest maps |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        k = r.get("kernel_objects") if isinstance(r.get("kernel_objects"), dict) else {}
        per = sorted((k.get("per_map") or {}).items(), key=lambda kv: -kv[1]["bytes"])[:3]
        biggest = ", ".join(f"{n} {_mb(m['bytes'])}" for n, m in per) or "—"
        lines.append(
            f"| {r['workload']} | {_ms(r['cold_ms'])} ({_ms(r.get('cold_backend_ms'))}) | "
            f"{_ms(r.get('ebpf_load_ms'))} | {_us(r.get('one_change_map_us'))} / "
            f"{_us(r.get('one_change_map_p90_us'))} | {_us(r.get('one_change_socket_walk_us'))} | "
            f"{_mb(k.get('memlock_bytes'))} | {biggest} |")
    return "\n".join(lines)


def targets(data, dp):
    """(target, measured, met); dp(data, system, count, test) finds a data-plane row."""
    out = []
    seed = next((r for r in data["control_plane"] if r.get("system") == EBPF
                 and r.get("endpoints") == 100000 and r.get("workload", "").startswith("seed")
                 and r.get("cold_ms") is not None), None)
    if seed:
        out.append(("ebpf seed cold load <= 150 ms", f"{seed['cold_ms']:.0f} ms (programs loaded "
                    f"beforehand in {seed.get('ebpf_load_ms', 0):.0f} ms)", seed["cold_ms"] <= 150))
        m = seed.get("one_change_map_us")
        out.append(("ebpf one endpoint change <= 20 us of map updates (100k endpoints)",
                    f"p50 {_us(m)}, p90 {_us(seed.get('one_change_map_p90_us'))}",
                    m is not None and m <= 20))
    counts = sorted({r["services"] for r in data["data_plane"] if r["system"] == EBPF})
    for c in counts:
        for test in ("tcp_crr", "udp_rr"):
            e, d = dp(data, EBPF, c, test), dp(data, "direct", c, test)
            if not (e and d and e.get("p50_us") and d.get("p50_us")):
                continue
            ratio = e["p50_us"] / d["p50_us"]
            out.append((f"ebpf {test} p50 at {c:,} services within 3% of direct",
                        f"{d['p50_us']:.1f} us direct, {e['p50_us']:.1f} us ebpf "
                        f"({100 * (ratio - 1):+.1f}%)", ratio <= 1.03))
    return out
