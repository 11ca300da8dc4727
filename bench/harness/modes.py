"""What each mode measures. Every mode produces the same kinds of rows, at different sizes,
so the smoke test exercises exactly the code paths of a full run."""

MODES = {
    # CTest's smoke test: tiny sizes, all rows, well under 90 s.
    "smoke": {
        "sweep": [1000, 2000],
        "seed": 2000,
        "wide": (100, 10),
        "repeat": 3,
        "peer_repeat": 1,
        "peer_timeout": 60,
        "peer_max_endpoints": {"kube-proxy-iptables": 2000},
        "churn": [{"endpoints": 300, "roll": 60, "rate": 200, "min_sync_ms": 100}],
        "dp_services": [10, 100],
        "dp_seconds": 0.3,
        "dp_rounds": 1,
        "pps_services": [10],
        "pps_frames": 100000,
        "pps_rounds": 1,
        "pps_latency_rate": 10000,
        "pps_latency_s": 0.3,
    },
    # A few minutes: the seed's 100k endpoints against every peer that finishes in time.
    "quick": {
        "sweep": [1000, 10000, 100000],
        "seed": 100000,
        "wide": (1000, 10),
        "repeat": 10,
        "peer_repeat": 1,
        "peer_timeout": 120,
        "peer_max_endpoints": {"kube-proxy-iptables": 10000},
        "churn": [{"endpoints": 1000, "roll": 200, "rate": 200, "min_sync_ms": 1000}],
        "dp_services": [10, 1000],
        "dp_seconds": 1,
        "dp_rounds": 2,
        "pps_services": [10, 1000],
        "pps_frames": 1000000,
        "pps_rounds": 2,
        "pps_latency_rate": 20000,
        "pps_latency_s": 1,
    },
    # The full experiment (see README for its duration).
    "full": {
        "sweep": [1000, 10000, 50000, 100000, 200000],
        "seed": 100000,
        "wide": (10000, 10),
        "repeat": 20,
        "peer_repeat": 2,
        "peer_timeout": 300,
        # iptables-nft-restore grows quadratically with chains (measured 1.2 s at 5k endpoints,
        # 4.7 s at 10k, over 15 minutes at 100k): past 50k it cannot finish in the run.
        "peer_max_endpoints": {"kube-proxy-iptables": 50000},
        "peer_repeat_for": {"kube-proxy-iptables": 1},
        "churn": [{"endpoints": 5000, "roll": 5000, "rate": 200, "min_sync_ms": 1000},
                  {"endpoints": 5000, "roll": 5000, "rate": 200, "min_sync_ms": 100}],
        "dp_services": [10, 1000, 10000],
        "dp_seconds": 2,
        "dp_rounds": 3,
        "pps_services": [10, 10000],
        "pps_frames": 2000000,
        "pps_rounds": 5,
        "pps_latency_rate": 20000,
        "pps_latency_s": 2,
    },
}


def sweep_label(n):
    return f"seed-{n // 1000}k" if n % 1000 == 0 else f"seed-{n}"


def wide_label(wide):
    return f"wide-{wide[0]}x{wide[1]}"
