"""The hardened unit under a real systemd: the Debian image's root (the package installed by apt),
plus systemd, booted with systemd-nspawn in a private network namespace. Checks that the unit
stays inactive without a kubeconfig (also when the package is upgraded), runs sandboxed as
written once one exists (programs the examples into nftables, answers `explain`), is restarted
by an upgrade with its data plane kept, is restarted after a crash, is not restarted after a
configuration error (exit code 2), that stopping it leaves the data plane in place, and that
the README's drop-in for a kubeconfig elsewhere works."""

import json
import os
import shutil
import signal
import subprocess
import time

from packaging_common import (DEB_DIR, SOURCE_DIR, WORK_DIR, fail, require_env, require_tools,
                              run, step, unit_value)

MACHINE = f"sp-pkgsd-{os.getpid()}"
CAP_BITS = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21,
            "CAP_PERFMON": 38, "CAP_BPF": 39}


class Container:
    def __init__(self, rootfs, log_path):
        self.log = open(log_path, "w")
        # --keep-unit/--register=no: no systemd or machined on the host to register with.
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "--directory", rootfs, "--boot", "--private-network",
             "--register=no", "--keep-unit", "--machine", MACHINE, "--console=pipe"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.leader = self._find_leader()

    def _find_leader(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"systemd-nspawn exited with {self.proc.returncode}: {open(self.log.name).read()}")
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    return int(pid)
            time.sleep(0.2)
        fail("the container's init did not appear")

    def sh(self, *argv, check=True):
        return run(["nsenter", "--target", str(self.leader), "--all", *argv], check=check)

    def show(self, prop):
        return self.sh("systemctl", "show", "sliceproxy", "--property", prop, "--value").stdout.strip()

    def wait_for(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.5)
        journal = self.sh("journalctl", "--no-pager", "-u", "sliceproxy", check=False).stdout
        fail(f"timed out waiting for {what}; journal:\n{journal}")

    def tables(self):
        res = self.sh("nft", "list", "tables")
        return [l for l in res.stdout.splitlines() if "sliceproxy" in l]

    def stop(self):
        if self.proc.poll() is None:
            self.sh("systemctl", "poweroff", check=False)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def proc_status(c, pid):
    text = c.sh("cat", f"/proc/{pid}/status").stdout
    return dict((k, v.strip()) for k, v in (l.split(":", 1) for l in text.splitlines()))


def mounts(c, pid):
    """mount point -> options, the innermost mount of each point winning."""
    out = {}
    for line in c.sh("cat", f"/proc/{pid}/mountinfo").stdout.splitlines():
        fields = line.split()
        out[fields[4]] = fields[5].split(",")
    return out


def main():
    require_env()
    require_tools("systemd-nspawn", "umoci", "nsenter", "chroot")
    layout = os.path.join(WORK_DIR, "oci-debian", "oci")
    index_path = os.path.join(layout, "index.json")
    if not os.path.exists(index_path):
        fail(f"{layout} is missing: packaging_oci_debian did not run or failed")
    tags = [m["annotations"]["org.opencontainers.image.ref.name"]
            for m in json.load(open(index_path))["manifests"]]
    bundle = os.path.join(WORK_DIR, "systemd-root")
    shutil.rmtree(bundle, ignore_errors=True)
    nspawn_run_dir_existed = os.path.exists("/run/systemd/nspawn")
    container = None
    try:
        step(f"unpack {layout}:{tags[0]} and add systemd to it")
        run(["umoci", "unpack", "--image", f"{layout}:{tags[0]}", bundle])
        rootfs = os.path.join(bundle, "rootfs")
        shutil.copy("/etc/resolv.conf", os.path.join(rootfs, "etc/resolv.conf"))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["chroot", rootfs, "apt-get", "update", "-q"], env=env)
        run(["chroot", rootfs, "apt-get", "install", "-y", "-q", "--no-install-recommends",
             "systemd", "systemd-sysv"], env=env)
        os.remove(os.path.join(rootfs, "etc/resolv.conf"))
        manifests = os.path.join(rootfs, "etc/sliceproxy/manifests")
        shutil.copytree(os.path.join(SOURCE_DIR, "examples"), manifests,
                        ignore=shutil.ignore_patterns("*.md"))

        step("boot without a kubeconfig: enabled, not started")
        container = Container(rootfs, os.path.join(WORK_DIR, "systemd-console.log"))
        c = container
        c.wait_for("boot", lambda: c.sh("systemctl", "is-system-running", check=False)
                   .stdout.strip() in ("running", "degraded"), timeout=60)
        if c.sh("systemctl", "is-enabled", "sliceproxy", check=False).stdout.strip() != "enabled":
            fail("the package did not enable sliceproxy.service")
        if c.show("ActiveState") != "inactive" or c.show("ConditionResult") != "no":
            fail(f"without a kubeconfig: ActiveState={c.show('ActiveState')}, "
                 f"ConditionResult={c.show('ConditionResult')}")
        if c.tables():
            fail(f"nftables tables without a kubeconfig: {c.tables()}")

        step("upgrade N -> N+1 with systemd running and no kubeconfig: still not started")
        next_deb = os.path.realpath(os.path.join(DEB_DIR, "sliceproxy-N+1.deb"))
        # /var/tmp: the booted container has a fresh tmpfs on /tmp.
        shutil.copy(next_deb, os.path.join(rootfs, "var/tmp/sliceproxy-next.deb"))
        dpkg = ["env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--force-confdef",
                "--force-confold", "--install", "/var/tmp/sliceproxy-next.deb"]
        c.sh(*dpkg)
        version = c.sh("dpkg-query", "-W", "-f=${Version}", "sliceproxy").stdout
        if not version.endswith("+test1"):
            fail(f"the upgrade left version {version}")
        if c.show("ActiveState") != "inactive" or c.tables():
            fail(f"the upgrade's restart started the unit: {c.show('ActiveState')}, {c.tables()}")

        step("with a kubeconfig: runs sandboxed and programs the examples")
        # The manifest directory stands in for an API server; the kubeconfig only has to exist.
        with open(os.path.join(rootfs, "etc/sliceproxy/kubeconfig"), "w") as f:
            f.write("# placeholder: --source-dir is used instead\n")
        with open(os.path.join(rootfs, "etc/default/sliceproxy"), "w") as f:
            f.write('SLICEPROXY_ARGS="--source-dir /etc/sliceproxy/manifests '
                    '--hostname-override node-a"\n')
        c.sh("systemctl", "start", "sliceproxy")
        c.wait_for("the first full sync", lambda: "full sync:" in c.sh(
            "journalctl", "--no-pager", "-u", "sliceproxy").stdout)
        if c.show("ActiveState") != "active":
            fail(f"ActiveState={c.show('ActiveState')}")
        if "table ip sliceproxy" not in c.tables():
            fail(f"tables: {c.tables()}")
        pid = c.show("MainPID")
        st = proc_status(c, pid)
        allowed = sum(1 << CAP_BITS[x] for x in unit_value("CapabilityBoundingSet").split())
        bounding = int(st["CapBnd"], 16)
        print({k: st[k] for k in ("CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")})
        if bounding != allowed:
            fail(f"CapBnd {st['CapBnd']} is not the unit's set {hex(allowed)}")
        if st["NoNewPrivs"] != "1" or st["Seccomp"] != "2" or int(st["CapAmb"], 16):
            fail(f"NoNewPrivs {st['NoNewPrivs']}, Seccomp {st['Seccomp']}, CapAmb {st['CapAmb']}")
        m = mounts(c, pid)
        for point, mode in [("/", "ro"), ("/proc/sys", "ro"), ("/proc/sys/net", "rw"),
                            ("/var/lib/sliceproxy", "rw"), ("/tmp", "rw")]:
            if mode not in m.get(point, []):
                fail(f"{point} is mounted {m.get(point)}, want {mode}")
        out = c.sh("sliceproxy", "explain", "10.96.0.20:80").stdout
        print(out)
        if "web" not in out:
            fail("explain inside the booted node does not know default/web")

        step("an upgrade (the package reinstalled) restarts it; the data plane stays")
        c.sh(*dpkg)
        c.wait_for("the restart", lambda: c.show("ActiveState") == "active"
                   and c.show("MainPID") not in ("0", pid))
        if "table ip sliceproxy" not in c.tables():
            fail(f"tables after the restart: {c.tables()}")
        pid = c.show("MainPID")

        step("a crash is restarted (Restart=on-failure)")
        c.sh("systemctl", "kill", "--kill-whom=main", "--signal=SIGSEGV", "sliceproxy")
        c.wait_for("a restart", lambda: c.show("NRestarts") == "1" and c.show("ActiveState")
                   == "active" and c.show("MainPID") not in ("0", pid))

        step("a configuration error is not restarted (RestartPreventExitStatus=2)")
        config = os.path.join(rootfs, "etc/sliceproxy/config.yaml")
        good = open(config).read()
        with open(config, "w") as f:
            f.write(good.replace("minSyncPeriod: 1s", "minSyncPeriod: soon"))
        c.sh("systemctl", "restart", "sliceproxy", check=False)
        c.wait_for("the failed state", lambda: c.show("ActiveState") == "failed")
        # A manual restart resets NRestarts; an automatic one would count after RestartSec.
        time.sleep(float(unit_value("RestartSec").rstrip("s")) + 2)
        if c.show("ActiveState") != "failed" or c.show("ExecMainStatus") != "2" \
                or c.show("NRestarts") != "0":
            fail(f"after a bad config: ActiveState={c.show('ActiveState')}, "
                 f"ExecMainStatus={c.show('ExecMainStatus')}, NRestarts={c.show('NRestarts')}")
        with open(config, "w") as f:
            f.write(good)

        step("stopped, the data plane stays; `sliceproxy cleanup` removes it")
        if "table ip sliceproxy" not in c.tables():
            fail(f"the stop removed the data plane: {c.tables()}")
        c.sh("sliceproxy", "cleanup")
        if c.tables():
            fail(f"cleanup left {c.tables()}")

        step("a kubeconfig elsewhere, with the README's drop-in moving the condition")
        elsewhere = "/etc/kubernetes/sliceproxy.conf"
        os.makedirs(os.path.join(rootfs, "etc/kubernetes"))
        os.rename(os.path.join(rootfs, "etc/sliceproxy/kubeconfig"), rootfs + elsewhere)
        with open(config, "w") as f:
            f.write(good.replace("kubeconfig: /etc/sliceproxy/kubeconfig", f"kubeconfig: {elsewhere}"))
        c.sh("systemctl", "restart", "sliceproxy")
        if c.show("ActiveState") == "active" or c.show("ConditionResult") != "no":
            fail("the unit started although /etc/sliceproxy/kubeconfig is gone")
        # What `systemctl edit sliceproxy` saves.
        dropin = os.path.join(rootfs, "etc/systemd/system/sliceproxy.service.d")
        os.makedirs(dropin)
        with open(os.path.join(dropin, "override.conf"), "w") as f:
            f.write(f"[Unit]\nConditionPathExists=\nConditionPathExists={elsewhere}\n")
        c.sh("systemctl", "daemon-reload")
        c.sh("systemctl", "restart", "sliceproxy")
        c.wait_for("the start with the moved kubeconfig", lambda: c.show("ActiveState") == "active"
                   and "table ip sliceproxy" in c.tables())
        c.sh("systemctl", "stop", "sliceproxy")
        c.sh("sliceproxy", "cleanup")
    finally:
        if container:
            container.stop()
        shutil.rmtree(bundle, ignore_errors=True)
        if not nspawn_run_dir_existed:
            shutil.rmtree("/run/systemd/nspawn", ignore_errors=True)
    print("unit under systemd ok")


if __name__ == "__main__":
    main()
