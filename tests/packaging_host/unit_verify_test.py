"""packaging/systemd/sliceproxy.service: systemd-analyze accepts it without a single complaint,
its sandbox scores as exposed as intended or less, and it carries the settings the bare-metal
install relies on."""

import os
import tempfile

from packaging_common import (WORK_DIR, SLICEPROXY_BIN, UNIT, fail, require_env, require_tools,
                              run, step, unit_settings, unit_value)

# systemd-analyze security's exposure, 0.0 (locked down) to 10.0; the unit scores 2.7 ("OK"),
# limited by what a data plane needs (CAP_SYS_ADMIN, CAP_NET_ADMIN, AF_NETLINK, root).
MAX_EXPOSURE = 3.0


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
        res = run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                   f"--threshold={int(MAX_EXPOSURE * 10)}", unit], check=False, cwd="/")
        summary = [l for l in res.stdout.splitlines() if "Overall exposure level" in l]
        print("\n".join(summary))
        if res.returncode != 0 or not summary:
            fail(f"exposure above {MAX_EXPOSURE} (rc {res.returncode}):\n{res.stdout}{res.stderr}")

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
    caps = set(unit_value("CapabilityBoundingSet").split())
    want_caps = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON"}
    if caps != want_caps:
        fail(f"CapabilityBoundingSet is {sorted(caps)}, want {sorted(want_caps)}")
    if any(k == "AmbientCapabilities" for _, k, _ in unit_settings()):
        fail("AmbientCapabilities= is set, but the unit runs as root with a bounded set")
    print("unit ok")


if __name__ == "__main__":
    main()
