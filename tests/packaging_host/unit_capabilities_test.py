"""The unit's capability bounding set is enough, and needed: sliceproxy started as systemd would
start it (root, the unit's CapabilityBoundingSet, no inheritable or ambient capabilities,
NoNewPrivileges) in a network namespace of ours programs the bundled examples into nftables
and cleans them up; without CAP_NET_ADMIN it programs nothing."""

import os
import signal
import subprocess
import time

from packaging_common import (DEFAULT_CONFIG, SLICEPROXY_BIN, SOURCE_DIR, WORK_DIR, fail,
                              require_env, require_tools, run, step, unit_value)

NETNS = f"sp-pkgcaps-{os.getpid()}"
# Bit numbers from linux/capability.h.
CAP_BITS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
            "CAP_PERFMON": 38, "CAP_BPF": 39}


def bounded(caps, argv):
    setpriv = ["setpriv", "--bounding-set", "-all" + "".join(",+" + c[4:].lower() for c in caps),
               "--inh-caps", "-all"]
    if unit_value("NoNewPrivileges") == "yes":
        setpriv.append("--no-new-privs")
    return ["ip", "netns", "exec", NETNS] + setpriv + ["--"] + argv


def daemon_argv():
    # The unit's configuration file, with the manifest directory instead of an API server and
    # the listeners off (they would bind the host's ports in other tests' way).
    return [SLICEPROXY_BIN, "--config", DEFAULT_CONFIG, "--source-dir",
            os.path.join(SOURCE_DIR, "examples"), "--hostname-override", "node-a",
            "--healthz-bind-address", "", "--metrics-bind-address", "", "--debug-port", "0"]


def tables():
    res = run(["ip", "netns", "exec", NETNS, "nft", "list", "tables"])
    return [l for l in res.stdout.splitlines() if "sliceproxy" in l]


def run_daemon(caps, log_path, until, timeout=20):
    """Starts the daemon under caps, waits until until(log) is true, returns (proc, log)."""
    log = open(log_path, "w+")
    proc = subprocess.Popen(bounded(caps, daemon_argv()), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read()
        if until(text) or proc.poll() is not None:
            break
        time.sleep(0.2)
    return proc, text


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        fail("sliceproxy did not stop on SIGTERM within 10s")


def capability_mask(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(l.split(":", 1) for l in f if l.startswith("Cap"))
    return {k: int(v.strip(), 16) for k, v in fields.items()}


def main():
    require_env()
    require_tools("ip", "nft", "setpriv")
    caps = unit_value("CapabilityBoundingSet").split()
    unknown = [c for c in caps if c not in CAP_BITS]
    if unknown:
        fail(f"test does not know the bit of {unknown}")
    want_mask = sum(1 << CAP_BITS[c] for c in caps)
    run(["ip", "netns", "add", NETNS])
    try:
        run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"])

        step(f"daemon with {' '.join(caps)}")
        proc, log = run_daemon(caps, os.path.join(WORK_DIR, "caps-daemon.log"),
                               lambda t: "full sync:" in t)
        if proc.poll() is not None or "full sync:" not in log:
            fail(f"no full sync with the unit's capabilities:\n{log}")
        # setpriv execs sliceproxy in place, so the child is the daemon itself.
        got = capability_mask(proc.pid)
        print({k: hex(v) for k, v in got.items()})
        if got["CapEff"] != want_mask or got["CapBnd"] != want_mask or got["CapAmb"] != 0:
            fail(f"daemon runs with {got}, want effective and bounding {hex(want_mask)}")
        programmed = tables()
        if "table ip sliceproxy" not in programmed or "table ip6 sliceproxy" not in programmed:
            fail(f"tables after the sync: {programmed}")
        rules = run(["ip", "netns", "exec", NETNS, "nft", "list", "table", "ip", "sliceproxy"]).stdout
        # examples/web.yaml's ClusterIP must be dispatched.
        if "10.96.0.20" not in rules:
            fail(f"no service address of the examples in table ip sliceproxy:\n{rules}")
        if stop(proc) != 0:
            fail("sliceproxy exited non-zero on SIGTERM")

        step("cleanup with the same capabilities")
        res = run(bounded(caps, [SLICEPROXY_BIN, "cleanup"]))
        if tables():
            fail(f"cleanup left {tables()}:\n{res.stderr}")

        step("without CAP_NET_ADMIN nothing is programmed")
        fewer = [c for c in caps if c != "CAP_NET_ADMIN"]
        proc, log = run_daemon(fewer, os.path.join(WORK_DIR, "caps-denied.log"),
                               lambda t: "[error]" in t or "full sync:" in t)
        stop(proc)
        if "full sync:" in log or tables():
            fail(f"programmed without CAP_NET_ADMIN, so the check proves nothing:\n{log}")
        if not any("[error]" in l and "CAP_NET_ADMIN" in l for l in log.splitlines()):
            fail(f"no error naming CAP_NET_ADMIN logged without it:\n{log}")
        print(f"denied as expected: {[l for l in log.splitlines() if '[error]' in l][0]}")
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)
    print("capabilities ok")


if __name__ == "__main__":
    main()
