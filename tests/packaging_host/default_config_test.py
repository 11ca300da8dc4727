"""The default /etc/sliceproxy/config.yaml is accepted by the built binary with no warning, on
the command line the unit runs, and names the kubeconfig the unit waits for."""

import os
import tempfile

from packaging_common import (DEFAULT_CONFIG, SLICEPROXY_BIN, exec_start_argv, fail,
                              require_env, run, step, unit_value, WORK_DIR)


def effective(argv, out):
    """Runs argv with --write-config-to OUT and returns the effective configuration text."""
    res = run(argv + ["--write-config-to", out], check=False)
    if res.returncode != 0:
        fail(f"sliceproxy rejected the configuration (exit {res.returncode}):\n{res.stderr}")
    if "[warning]" in res.stderr or "[error]" in res.stderr:
        fail(f"the default configuration draws warnings:\n{res.stderr}")
    return open(out).read()


def main():
    require_env()
    with tempfile.TemporaryDirectory(prefix="sp-config-", dir=WORK_DIR) as tmp:
        step("the unit's ExecStart with the shipped config and environment file")
        argv = exec_start_argv(SLICEPROXY_BIN)
        if argv[1:3] != ["--config", "/etc/sliceproxy/config.yaml"]:
            fail(f"ExecStart does not read /etc/sliceproxy/config.yaml: {argv}")
        argv[2] = DEFAULT_CONFIG
        text = effective(argv, os.path.join(tmp, "effective.yaml"))
        print(text)

        # The binary's rendering: one "key: value" per line, kubeconfig under clientConnection.
        kubeconfig = [l.split(":", 1)[1].strip() for l in text.splitlines()
                      if l.strip().startswith("kubeconfig:")]
        want = unit_value("ConditionPathExists", section="Unit")
        if kubeconfig != [want]:
            fail(f"effective kubeconfig {kubeconfig}, but the unit waits for {want}")
        for line in ["mode: nftables", "healthzBindAddress: 0.0.0.0:10256",
                     "metricsBindAddress: 127.0.0.1:10249", "backend: nftables"]:
            if line not in [l.strip() for l in text.splitlines()]:
                fail(f"effective configuration lacks {line!r}")

        step("the effective configuration reads back to itself")
        again = effective([SLICEPROXY_BIN, "--config", os.path.join(tmp, "effective.yaml")],
                          os.path.join(tmp, "again.yaml"))
        if again != text:
            fail(f"re-reading the effective configuration changed it:\n{again}")

        step("a bad value in the file is refused with exit code 2 (RestartPreventExitStatus)")
        bad = os.path.join(tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write(open(DEFAULT_CONFIG).read().replace("minSyncPeriod: 1s", "minSyncPeriod: soon"))
        res = run([SLICEPROXY_BIN, "--config", bad, "--write-config-to", os.devnull], check=False)
        if res.returncode != 2 or "minSyncPeriod" not in res.stderr:
            fail(f"bad minSyncPeriod: exit {res.returncode}, stderr {res.stderr!r}")
        if unit_value("RestartPreventExitStatus") != "2":
            fail("the unit should not restart on exit code 2")
    print("default config ok")


if __name__ == "__main__":
    main()
