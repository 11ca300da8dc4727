"""PNG plots of a run, drawn with gnuplot (Debian's gnuplot-nox):
  sweep.png          cold program time and one endpoint change vs endpoints, log-log
  churn_latency.png  the distribution (CDF) of events-to-kernel latency under churn
  packet_rate.png    NodePort forwarding per core (Mpps) and latency p50/p99, per system"""

import os
import subprocess

COLORS = {"sliceproxy-nftables": "#1b7837", "kube-proxy-iptables": "#b2182b",
          "kube-proxy-iptables-legacy": "#ef8a62", "kube-proxy-nftables": "#2166ac"}


def _gnuplot(script, out_dir):
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True, cwd=out_dir)
    if p.returncode != 0:
        raise RuntimeError(f"gnuplot failed: {p.stderr.strip()[:1000]}")


def sweep(data, out_dir):
    rows = [r for r in data["control_plane"]
            if r.get("workload", "").startswith("seed") and r.get("cold_ms") is not None]
    systems = []
    for r in rows:
        if r["system"] not in systems:
            systems.append(r["system"])
    plots_cold, plots_change = [], []
    for s in systems:
        pts = sorted((r["endpoints"], r["cold_ms"], r.get("one_change_ms")) for r in rows
                     if r["system"] == s)
        fname = f"sweep-{s}.dat"
        with open(os.path.join(out_dir, fname), "w") as f:
            for n, cold, change in pts:
                f.write(f"{n} {cold} {change if change is not None else 'NaN'}\n")
        color = COLORS.get(s, "#444444")
        plots_cold.append(f"'{fname}' using 1:2 with linespoints lw 2 pt 7 lc rgb '{color}' title '{s}'")
        plots_change.append(f"'{fname}' using 1:3 with linespoints lw 2 pt 7 lc rgb '{color}' title '{s}'")
    if not systems:
        return
    _gnuplot(f"""
set terminal pngcairo size 1400,560 font 'DejaVu Sans,11'
set output 'sweep.png'
set multiplot layout 1,2 title "One service, N endpoints (seed shape): programming the kernel\\n(kube-proxy peers: kernel apply only, a lower bound)"
set logscale xy
set grid
set key top left
set xlabel 'endpoints'
set ylabel 'milliseconds'
set format x '%.0s%c'
set title 'cold program'
plot {', '.join(plots_cold)}
set title 'one endpoint change'
plot {', '.join(plots_change)}
unset multiplot
""", out_dir)


def churn(data, out_dir):
    plots = []
    for i, r in enumerate(x for x in data["churn"] if x.get("status") == "ok"):
        src = os.path.join(out_dir, r["samples_file"])
        if not os.path.exists(src):
            continue
        with open(src) as f:
            vals = sorted(float(v) for v in f if v.strip())
        if not vals:
            continue
        fname = f"churn-cdf-{i}.dat"
        with open(os.path.join(out_dir, fname), "w") as f:
            step = max(1, len(vals) // 2000)
            for k in range(0, len(vals), step):
                f.write(f"{vals[k]} {(k + 1) / len(vals)}\n")
            f.write(f"{vals[-1]} 1\n")
        title = (f"{r['system']}, min-sync-period {r['min_sync_ms']:.0f} ms "
                 f"(p50 {r['latency_p50_ms']:.0f} ms, p99 {r['latency_p99_ms']:.0f} ms)")
        plots.append(f"'{fname}' using 1:2 with lines lw 2 title '{title}'")
    if not plots:
        return
    c = next(x for x in data["churn"] if x.get("status") == "ok")
    _gnuplot(f"""
set terminal pngcairo size 1000,560 font 'DejaVu Sans,11'
set output 'churn_latency.png'
set title "Churn: a {int(c["endpoints"])}-endpoint service rolled at {c["rate_per_s"]:.0f} events/s\\nevents-to-kernel latency (event handed to the proxier -> its sync finished programming)"
set logscale x
set grid
set key top left
set xlabel 'milliseconds'
set ylabel 'fraction of events'
set yrange [0:1]
plot {', '.join(plots)}
""", out_dir)


def packet_rate(data, out_dir):
    rows = [r for r in data.get("packet_rate", []) if r.get("status") == "ok"]
    if not rows:
        return
    systems = []
    for r in rows:
        if r["system"] not in systems:
            systems.append(r["system"])
    counts = sorted({r["services"] for r in rows})
    with open(os.path.join(out_dir, "packet_rate.dat"), "w") as f:
        f.write("# system, then per service count: Mpps, latency p50 us, latency p99 us\n")
        for s in systems:
            cells = []
            for c in counts:
                r = next((x for x in rows if x["system"] == s and x["services"] == c), None)
                cells += ([f"{r['pps'] / 1e6:.3f}", str(r.get("latency_p50_us") or "NaN"),
                           str(r.get("latency_p99_us") or "NaN")] if r else ["NaN"] * 3)
            f.write(f'"{s}" ' + " ".join(cells) + "\n")
    rate = ", ".join(f"'packet_rate.dat' using {2 + 3 * i}:xtic(1) title '{c:,} services'"
                     for i, c in enumerate(counts))
    lat = ", ".join(f"'packet_rate.dat' using {3 + 3 * i + k}:xtic(1) "
                    f"title '{('p50', 'p99')[k]}, {c:,} services'"
                    for i, c in enumerate(counts) for k in (0, 1))
    _gnuplot(f"""
set terminal pngcairo size 1400,560 font 'DejaVu Sans,11'
set output 'packet_rate.png'
set multiplot layout 1,2 title "NodePort forwarding, one core: XDP live-frames generator -> node -> XDP sink\\n(floors: the generator alone; plain IP forwarding without rules)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set key top right
set xtics rotate by -25
set yrange [0:*]
set ylabel 'million packets per second'
set title 'rate (frames/s delivered, median of rounds)'
plot {rate}
set logscale y
set yrange [0.1:*]
set ylabel 'microseconds, send to sink (log)'
set title 'latency at a fixed rate'
plot {lat}
unset multiplot
""", out_dir)


def draw(data, out_dir):
    sweep(data, out_dir)
    churn(data, out_dir)
    packet_rate(data, out_dir)


if __name__ == "__main__":
    # Redraw from a finished run: plots.py OUT_DIR (the directory holding results.json).
    import json
    import sys
    with open(os.path.join(sys.argv[1], "results.json")) as f:
        draw(json.load(f), sys.argv[1])
