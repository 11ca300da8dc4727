"""packaging/systemd/sliceproxy.service: systemd-analyze accepts it without a single complaint,
its sandbox scores as exposed as intended or less, and it carries the settings the bare-metal
install relies on. Likewise with the eBPF drop-in (packaging/systemd/ebpf.conf). The unit carries
exactly the nftables backend's Linux capabilities and the drop-in the eBPF backend's, as the
build's registry lists them (`sliceproxy backends`)."""

import json
import os
import shutil
import tempfile

from packaging_common import (WORK_DIR, SLICEPROXY_BIN, UNIT, fail, require_env, require_tools,
                              run, step, unit_settings, unit_value)

# systemd-analyze security's exposure, 0.0 (locked down) to 10.0; the unit scores 2.2 ("OK"),
# limited by what a data plane needs (CAP_NET_ADMIN, AF_NETLINK, root); with the eBPF drop-in
# 2.8 (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_SYS_PTRACE).
MAX_EXPOSURE = 2.5
MAX_EXPOSURE_EBPF = 3.0
DROP_IN = os.path.join(os.path.dirname(UNIT), "ebpf.conf")


def verify(path):
    """systemd-analyze verify returns 0 even after ignoring an unparsable line, so any output is
    a failure too."""
    res = run(["systemd-analyze", "verify", "--man=no", path], check=False, cwd="/")
    return res.returncode, (res.stdout + res.stderr).strip()


def main():
    require_env()
    require_tools("systemd-analyze")
    with tempfile.TemporaryDirectory(prefix="sp-unit-", dir=WORK_DIR) as tmp:
        # verify checks that ExecStart's binary exists; point it at the built one, nothing else
        # changes. The installed unit is verified as shipped (man page too) by the .deb test.
        text = open(UNIT).read()
        if text.count("/usr/bin/sliceproxy ") != 1:
            fail("ExecStart should run /usr/bin/sliceproxy exactly once")
        unit = os.path.join(tmp, "sliceproxy.service")
        with open(unit, "w") as f:
            f.write(text.replace("/usr/bin/sliceproxy ", SLICEPROXY_BIN + " "))

        step("systemd-analyze verify")
        rc, out = verify(unit)
        if rc != 0 or out:
            fail(f"systemd-analyze verify rejected the unit (rc {rc}):\n{out}")

        step("the check itself catches a bad setting")
        broken = os.path.join(tmp, "broken", "sliceproxy.service")
        os.makedirs(os.path.dirname(broken))
        with open(broken, "w") as f:
            f.write(open(unit).read().replace("Restart=on-failure", "Restart=on-failur"))
        rc, out = verify(broken)
        if "restart" not in out.lower():
            fail(f"a misspelt Restart= went unnoticed (rc {rc}, output {out!r})")

        step("systemd-analyze security --offline")
        security(unit, MAX_EXPOSURE)

        step("with the eBPF drop-in: verify and security")
        ebpf_dir = os.path.join(tmp, "ebpf")
        os.makedirs(os.path.join(ebpf_dir, "sliceproxy.service.d"))
        shutil.copy(unit, ebpf_dir)
        shutil.copy(DROP_IN, os.path.join(ebpf_dir, "sliceproxy.service.d", "ebpf.conf"))
        rc, out = verify(os.path.join(ebpf_dir, "sliceproxy.service"))
        if rc != 0 or out:
            fail(f"systemd-analyze verify rejected the unit with the drop-in (rc {rc}):\n{out}")
        report = security(os.path.join(ebpf_dir, "sliceproxy.service"), MAX_EXPOSURE_EBPF)
        # The drop-in is read: its capabilities are the ones analysed (the unit grants neither
        # CAP_SYS_ADMIN nor CAP_SYS_PTRACE; CAP_NET_ADMIN is in both).
        marks = {l.split()[1]: l.split()[0] for l in report.splitlines()
                 if l.split()[1:2] and l.split()[1].startswith("CapabilityBoundingSet=~")}
        if (marks.get("CapabilityBoundingSet=~CAP_SYS_ADMIN"), marks.get(
                "CapabilityBoundingSet=~CAP_SYS_PTRACE")) != ("✗", "✗"):
            fail(f"systemd-analyze did not apply the drop-in:\n{report}")

    step("settings the install relies on")
    expected = {
        ("Unit", "ConditionPathExists"): "/etc/sliceproxy/kubeconfig",
        ("Service", "Restart"): "on-failure",
        ("Service", "ProtectSystem"): "strict",
        ("Service", "ProtectHome"): "yes",
        ("Service", "NoNewPrivileges"): "yes",
        ("Service", "PrivateTmp"): "yes",
        ("Service", "StateDirectory"): "sliceproxy",
        ("Service", "ConfigurationDirectory"): "sliceproxy",
        ("Service", "EnvironmentFile"): "-/etc/default/sliceproxy",
        ("Install", "WantedBy"): "multi-user.target",
    }
    for (section, key), want in expected.items():
        got = unit_value(key, section=section)
        if got != want:
            fail(f"[{section}] {key}={got}, want {want}")
    backends = {b["name"]: sorted(c["name"] for c in b["linuxCapabilities"])
                for b in json.loads(run([SLICEPROXY_BIN, "backends"]).stdout)}
    for path, backend in [(UNIT, "nftables"), (DROP_IN, "ebpf")]:
        caps = sorted(unit_value("CapabilityBoundingSet", path=path).split())
        if caps != backends[backend]:
            fail(f"{path}: CapabilityBoundingSet is {caps}, the {backend} backend needs exactly "
                 f"{backends[backend]}")
    # The unit without the drop-in also runs `mode: ipvs`: its set must be the IPVS backend's too.
    if backends["ipvs"] != backends["nftables"]:
        fail(f"the IPVS backend needs {backends['ipvs']}, the unit grants {backends['nftables']}: "
             "IPVS needs a drop-in of its own")
    # A writable /sys/fs/bpf only where the eBPF backend needs it.
    for path, want in [(UNIT, False), (DROP_IN, True)]:
        paths = " ".join(v for _, k, v in unit_settings(path) if k == "ReadWritePaths")
        if ("/sys/fs/bpf" in paths) != want:
            fail(f"{path}: ReadWritePaths={paths!r}: /sys/fs/bpf should{'' if want else ' not'} "
                 "be writable")
    # The drop-in replaces the unit's set: an empty assignment first, then its own.
    if [v for s, k, v in unit_settings(DROP_IN) if k == "CapabilityBoundingSet"][0] != "":
        fail(f"{DROP_IN} adds to the unit's CapabilityBoundingSet instead of replacing it")
    if any(k == "AmbientCapabilities" for _, k, _ in unit_settings()):
        fail("AmbientCapabilities= is set, but the unit runs as root with a bounded set")
    print("unit ok")


def security(unit, maximum):
    res = run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
               f"--threshold={int(maximum * 10)}", unit], check=False, cwd="/")
    summary = [l for l in res.stdout.splitlines() if "Overall exposure level" in l]
    print("\n".join(summary))
    if res.returncode != 0 or not summary:
        fail(f"exposure above {maximum} (rc {res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


if __name__ == "__main__":
    main()
