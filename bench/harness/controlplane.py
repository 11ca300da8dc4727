"""Control-plane rows: sliceproxy through bench_cp_harness, the kube-proxy peers through
peers.py. Every measurement runs in a fresh network namespace its process creates and takes
with it when it exits."""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from netns import die_with_parent  # noqa: E402

PEERS = ["kube-proxy-iptables", "kube-proxy-iptables-legacy", "kube-proxy-nftables"]


def _run_json(cmd, timeout):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=die_with_parent)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({p.returncode}): {p.stderr.strip()[-1500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def workload_args(kind, size):
    if kind == "wide":
        services, per = size
        return ["--workload", "wide", "--services", str(services), "--per-service", str(per)]
    return ["--workload", "seed", "--endpoints", str(size)]


def _ebpf_case(backend, ebpf, tag):
    """For the ebpf backend: a cgroup and pin directory of this run (ebpf_cgroup.EbpfPlace),
    its flags, and what releases it."""
    if backend != "ebpf":
        return [], None, lambda: None
    if ebpf is None:
        raise RuntimeError("the ebpf backend needs the harness' own cgroup and bpf filesystem")
    cg, pin = ebpf.case(tag)
    return ebpf.flags(cg, pin), pin, lambda: ebpf.release(cg, pin)


def sliceproxy_row(bins, backend, kind, size, repeat, label, ebpf=None):
    flags, pin, release = _ebpf_case(backend, ebpf, f"cp-{label}")
    counter = f"{sys.executable} {os.path.join(HERE, 'kernel_objects.py')} " + (
        f"ebpf {pin}" if pin else "nft")
    try:
        row = _run_json([bins["cp"], "program", *workload_args(kind, size), "--backend", backend,
                         "--repeat", str(repeat), "--count-cmd", counter, *flags], timeout=1800)
    finally:
        release()
    row["workload"] = label
    return row


def peer_row(bins, system, kind, size, repeat, label, timeout, workdir):
    dump = os.path.join(workdir, f"dump-{label}-{repeat}.jsonl")
    if not os.path.exists(dump):
        with open(dump, "w") as f:
            subprocess.run([bins["cp"], "dump", *workload_args(kind, size), "--changes",
                            str(2 * repeat)], stdout=f, check=True, preexec_fn=die_with_parent)
    row = _run_json([sys.executable, os.path.join(HERE, "peers.py"), "--system", system,
                     "--dump", dump, "--workload", label, "--repeat", str(repeat),
                     "--timeout", str(timeout)], timeout=timeout * (4 * repeat + 3) + 600)
    return row


def churn_row(bins, backend, c, samples, ebpf=None):
    flags, _, release = _ebpf_case(backend, ebpf, "churn")
    try:
        row = _run_json([bins["cp"], "churn", "--backend", backend, "--endpoints",
                         str(c["endpoints"]), "--roll", str(c["roll"]), "--rate", str(c["rate"]),
                         "--min-sync-ms", str(c["min_sync_ms"]), "--samples", samples, *flags],
                        timeout=int(c["roll"] * 3 / c["rate"]) + 300)
    finally:
        release()
    row["samples_file"] = os.path.basename(samples)
    return row


def backends(bins):
    out = subprocess.run([bins["cp"], "backends"], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    if not names:
        raise RuntimeError("bench_cp_harness found no kernel backend")
    return names
