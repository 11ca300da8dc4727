"""The packet-rate part of results.md (issue 16): NodePort forwarding per core at tc and XDP
beside the nftables backend, and the issue's two ratios."""

FLOOR = "generator"
SKB_FLOOR = "kernel-forwarding"


def _row(data, system, count):
    return next((r for r in data.get("packet_rate", []) if r.get("system") == system
                 and r.get("services") == count), None)


def _floor(data, count):
    """The generator floor: measured once per run (it does not depend on the services)."""
    return _row(data, FLOOR, count) or next(
        (r for r in data.get("packet_rate", []) if r.get("system") == FLOOR
         and r.get("status") == "ok"), None)


def _node_ns(r, floor):
    """The node's own cost per packet: the chain's minus the generator's and the sink's."""
    if not (r and floor and r.get("pps") and floor.get("pps")):
        return None
    return 1e9 / r["pps"] - 1e9 / floor["pps"]


def _f(v, fmt="{:.0f}"):
    return "—" if v is None else fmt.format(v)


def table(data):
    rows = [r for r in data.get("packet_rate", []) if r.get("status") == "ok"]
    if not rows:
        return ""
    lines = ["| services | system | Mpps (one core) | ns/packet | node's ns/packet (minus "
             "generator) | untranslated | latency p50 / p90 / p99 at rate |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda x: (x["services"], x["system"])):
        floor = _floor(data, r["services"])
        node = _node_ns(r, floor) if r["system"] != FLOOR else None
        lines.append(
            f"| {r['services']:,} | {r['system']} | {r['pps'] / 1e6:.2f} | "
            f"{_f(r['ns_per_packet'])} | {_f(node)} | {r['untranslated']} of "
            f"{r['frames']:,} | {_f(r['latency_p50_us'], '{:.1f}')} / "
            f"{_f(r['latency_p90_us'], '{:.1f}')} / {_f(r['latency_p99_us'], '{:.1f}')} us at "
            f"{_f(r['latency_rate'])}/s |")
    return "\n".join(lines)


def targets(data):
    """(target, measured, met): XDP >= 4x and tc >= 1.5x the nftables backend's packets per
    second per core, on the node's share of the core (the generator's cost taken out) and, for
    reference, on the whole chain."""
    out = []
    counts = sorted({r["services"] for r in data.get("packet_rate", [])})
    for c in counts:
        nft = _row(data, "sliceproxy-nftables", c)
        floor = _floor(data, c)
        for system, goal in (("sliceproxy-ebpf-xdp", 4.0), ("sliceproxy-ebpf-tc", 1.5)):
            e = _row(data, system, c)
            if not (e and nft and e.get("pps") and nft.get("pps")):
                continue
            n_nft, n_e = _node_ns(nft, floor), _node_ns(e, floor)
            chain = e["pps"] / nft["pps"]
            if n_nft and n_e and n_e > 0:
                ratio = n_nft / n_e
                out.append((f"{system} >= {goal}x nftables in packets/s per core at {c:,} "
                            f"services", f"node's cost {n_e:.0f} vs {n_nft:.0f} ns/packet: "
                            f"{ratio:.2f}x (whole chain {e['pps'] / 1e6:.2f} vs "
                            f"{nft['pps'] / 1e6:.2f} Mpps: {chain:.2f}x)", ratio >= goal))
    return out


def check(data):
    problems = []
    for system, count in data["expected"].get("packet_rate", []):
        r = _row(data, system, count)
        if r is None:
            problems.append(f"packet rate row missing: {system} {count}")
        elif r.get("status") != "ok":
            problems.append(f"packet rate {system} {count}: {r.get('reason')}")
    return problems
