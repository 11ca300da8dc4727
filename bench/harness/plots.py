"""PNG plots of a run, drawn with gnuplot (Debian's gnuplot-nox):
  sweep.png          cold program time and one endpoint change vs endpoints, log-log
  churn_latency.png  the distribution (CDF) of events-to-kernel latency under churn"""

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


def draw(data, out_dir):
    sweep(data, out_dir)
    churn(data, out_dir)


if __name__ == "__main__":
    # Redraw from a finished run: plots.py OUT_DIR (the directory holding results.json).
    import json
    import sys
    with open(os.path.join(sys.argv[1], "results.json")) as f:
        draw(json.load(f), sys.argv[1])
