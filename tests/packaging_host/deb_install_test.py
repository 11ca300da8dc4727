"""Installs the Debian package on this machine, upgrades it from version N to N+1, removes and
purges it, checking every file at each step, and that the machine is exactly as before
afterwards (every path under /etc, /usr and /var/lib: type, mode, owner, size, link target).

It refuses to run (fails) where sliceproxy is already installed or configured, since purging
would destroy that. Whatever happens, it purges what it installed."""

import gzip
import os
import stat
import subprocess
import time

from packaging_common import (DEB_DIR, DEFAULT_CONFIG, DEFAULT_ENV, UNIT, fail, require_env,
                              require_tools, run, step)

PKG = "sliceproxy"
BINARY = "/usr/bin/sliceproxy"
UNIT_PATH = "/lib/systemd/system/sliceproxy.service"
CONFIG = "/etc/sliceproxy/config.yaml"
ENV_FILE = "/etc/default/sliceproxy"
MAN = "/usr/share/man/man8/sliceproxy.8.gz"
WANTS = "/etc/systemd/system/multi-user.target.wants/sliceproxy.service"
STATE_DIR = "/var/lib/sliceproxy"
CONF_DIR = "/etc/sliceproxy"
# Trees the package or its maintainer scripts could touch. dpkg's and apt's own databases and
# caches change with any package operation and are checked through dpkg-query instead.
SNAPSHOT_ROOTS = ["/etc", "/usr", "/var/lib"] + [d for d in ["/lib", "/bin", "/sbin"]
                                                if not os.path.islink(d)]
SNAPSHOT_SKIP = {"/var/lib/dpkg", "/var/lib/apt"}


def snapshot():
    """Every path under SNAPSHOT_ROOTS with what dpkg could change about it. Directory sizes
    and all mtimes are left out: they change when a child comes and goes."""
    out = {}
    for top in SNAPSHOT_ROOTS:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in SNAPSHOT_SKIP]
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                entry = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
                if stat.S_ISLNK(st.st_mode):
                    entry += (os.readlink(path),)
                elif stat.S_ISREG(st.st_mode):
                    entry += (st.st_size,)
                out[path] = entry
    return out


def dpkg(*args):
    """dpkg with a few retries while another dpkg/apt holds the lock."""
    for attempt in range(30):
        res = run(["dpkg", "--force-confdef", "--force-confold", *args], check=False,
                  env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if res.returncode == 0:
            return res
        if "lock" in res.stderr and attempt < 29:
            time.sleep(2)
            continue
        fail(f"dpkg {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")


def status():
    res = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", PKG], check=False)
    return res.stdout.strip() if res.returncode == 0 else "not known to dpkg"


def package_files():
    return [l for l in run(["dpkg-query", "-L", PKG]).stdout.splitlines() if l.startswith("/")]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def running_from(binary):
    """PIDs of processes executing `binary` (other tests run their own sliceproxy builds)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") == binary:
                pids.append(pid)
        except OSError:
            pass
    return pids


def check_installed(version, config_text, deb):
    got = status()
    if not got.startswith("ii") or not got.endswith("|" + version):
        fail(f"dpkg status after install: {got!r}, want installed {version}")
    files = package_files()
    missing = [f for f in files if not os.path.lexists(f)]
    if missing:
        fail(f"files of the package missing after install: {missing}")
    # Every shipped file has the content of the .deb (md5sums); the config only once edited.
    verify = run(["dpkg", "--verify", PKG], check=False)
    edited = config_text != read(DEFAULT_CONFIG)
    bad = [l for l in verify.stdout.splitlines() if not (edited and l.endswith(" c " + CONFIG))]
    if bad or verify.stderr.strip():
        fail(f"dpkg --verify: {verify.stdout}{verify.stderr}")
    for path in [BINARY, UNIT_PATH, CONFIG, ENV_FILE, MAN, "/usr/share/doc/sliceproxy/copyright"]:
        if path not in files:
            fail(f"{path} is not in the package's file list")
    if not os.access(BINARY, os.X_OK):
        fail(f"{BINARY} is not executable")
    if read(UNIT_PATH) != read(UNIT):
        fail(f"{UNIT_PATH} differs from packaging/systemd/sliceproxy.service")
    if read(ENV_FILE) != read(DEFAULT_ENV):
        fail(f"{ENV_FILE} differs from packaging/systemd/sliceproxy.default")
    if read(CONFIG) != config_text:
        fail(f"{CONFIG} does not hold the expected text")
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout.split()
    for path in [CONFIG, ENV_FILE]:
        if path not in conffiles:
            fail(f"{path} is not a conffile: {conffiles}")
    for left in [CONFIG + ".dpkg-new", CONFIG + ".dpkg-dist", CONFIG + ".dpkg-old"]:
        if os.path.exists(left):
            fail(f"{left} left behind")
    if "kubeconfig" not in gzip.open(MAN, "rt").read():
        fail(f"{MAN} does not document the flags")
    # Enabled (deb-systemd-helper's symlink), not started: no kubeconfig yet.
    if not os.path.islink(WANTS) or os.readlink(WANTS) != UNIT_PATH:
        fail(f"{WANTS} should link to {UNIT_PATH} (unit enabled)")
    if running_from(BINARY):
        fail(f"{BINARY} is running although no kubeconfig is configured")
    if os.path.isdir("/run/systemd/system"):
        active = run(["systemctl", "is-active", PKG], check=False).stdout.strip()
        if active != "inactive":
            fail(f"systemctl is-active sliceproxy: {active}, want inactive")
    out = run([BINARY, "--version"]).stdout.strip()
    if not version.startswith(out.split()[-1]):
        fail(f"{BINARY} --version says {out!r}, package version {version}")
    # The unit as installed, with its man page and binary in place.
    res = run(["systemd-analyze", "verify", UNIT_PATH], check=False, cwd="/")
    if res.returncode != 0 or (res.stdout + res.stderr).strip():
        fail(f"systemd-analyze verify {UNIT_PATH}:\n{res.stdout}{res.stderr}")
    res = run([BINARY, "--config", CONFIG, "--write-config-to", os.devnull])
    if "[warning]" in res.stderr:
        fail(f"the installed configuration draws warnings:\n{res.stderr}")
    print(f"installed {version}: {len(files)} paths in place, {deb}")


def main():
    require_env()
    require_tools("dpkg", "dpkg-query", "systemd-analyze", "deb-systemd-helper")
    debs = [os.path.join(DEB_DIR, f"sliceproxy-{v}.deb") for v in ("N", "N+1")]
    for deb in debs:
        if not os.path.exists(deb):
            fail(f"{deb} is missing: packaging_deb_build did not run or failed")
    versions = [run(["dpkg-deb", "--field", d, "Version"]).stdout.strip() for d in debs]

    step("preconditions: no sliceproxy on this machine")
    if status() != "not known to dpkg" and not status().startswith("un"):
        fail(f"the {PKG} package is already on this machine ({status()}); the test would purge it")
    for path in [BINARY, CONF_DIR, STATE_DIR, ENV_FILE, UNIT_PATH, WANTS]:
        if os.path.lexists(path):
            fail(f"{path} exists; the test would overwrite or delete it")

    started = time.monotonic()
    before = snapshot()
    print(f"snapshot: {len(before)} paths in {time.monotonic() - started:.1f}s")
    default_config = read(DEFAULT_CONFIG)
    try:
        step(f"install N ({versions[0]})")
        dpkg("-i", debs[0])
        check_installed(versions[0], default_config, debs[0])

        # What an administrator adds: an edited config, their own file next to it, and the
        # state directory systemd creates on the first start.
        edited = default_config.replace(b"hostnameOverride: \"\"", b"hostnameOverride: node-7")
        if edited == default_config:
            fail("could not edit hostnameOverride in the default config")
        with open(CONFIG, "wb") as f:
            f.write(edited)
        with open(os.path.join(CONF_DIR, "token"), "w") as f:
            f.write("not a real token\n")
        os.makedirs(STATE_DIR)
        with open(os.path.join(STATE_DIR, "state"), "w") as f:
            f.write("kept across upgrades\n")

        step(f"upgrade N -> N+1 ({versions[1]})")
        dpkg("-i", debs[1])
        check_installed(versions[1], edited, debs[1])
        for path in [os.path.join(CONF_DIR, "token"), os.path.join(STATE_DIR, "state")]:
            if not os.path.exists(path):
                fail(f"the upgrade removed {path}")

        step("remove")
        files = package_files()
        dpkg("-r", PKG)
        if not status().startswith("rc"):
            fail(f"dpkg status after remove: {status()!r}, want rc (config files kept)")
        kept = {CONFIG, ENV_FILE}
        for path in files:
            if path in kept:
                continue
            if os.path.lexists(path) and not os.path.isdir(path):
                fail(f"{path} is still there after remove")
        if read(CONFIG) != edited:
            fail(f"remove lost the edited {CONFIG}")
        if running_from(BINARY):
            fail("sliceproxy still runs after remove")

        step("purge")
        dpkg("-P", PKG)
        if status() != "not known to dpkg" and not status().startswith("un"):
            fail(f"dpkg status after purge: {status()!r}")
        for path in [CONF_DIR, STATE_DIR, ENV_FILE, WANTS, BINARY, UNIT_PATH, MAN,
                     "/usr/share/doc/sliceproxy",
                     "/var/lib/systemd/deb-systemd-helper-enabled/sliceproxy.service.dsh-also"]:
            if os.path.lexists(path):
                fail(f"{path} is still there after purge")
    finally:
        if status() != "not known to dpkg" and not status().startswith("un"):
            subprocess.run(["dpkg", "-P", PKG], check=False)
        subprocess.run(["rm", "-rf", CONF_DIR, STATE_DIR], check=False)

    step("the machine is as it was")
    after = snapshot()
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    if added or removed or changed:
        fail("the machine differs after purge:\n"
             + "".join(f"  added {p}\n" for p in added)
             + "".join(f"  removed {p}\n" for p in removed)
             + "".join(f"  changed {p}: {before[p]} -> {after[p]}\n" for p in changed))
    print(f"install, upgrade, remove, purge ok; {len(after)} paths compared "
          f"({time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
