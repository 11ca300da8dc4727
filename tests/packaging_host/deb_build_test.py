"""Builds the Debian package twice from the test suite's build (version N as in
debian/changelog, and N+1 for the upgrade test) with packaging/debian/build-deb.sh, and checks
what went into it. The packages are left in the work directory for the lintian and install
tests (CTest fixture)."""

import os
import shutil
import subprocess

from packaging_common import (BUILD_DIR, DEB_DIR, SLICEPROXY_BIN, SOURCE_DIR, fail, require_env,
                              require_tools, run, step)

CHANGELOG = os.path.join(SOURCE_DIR, "packaging/debian/debian/changelog")
EXPECTED_FILES = {
    "./usr/bin/sliceproxy", "./lib/systemd/system/sliceproxy.service",
    "./etc/sliceproxy/config.yaml", "./etc/default/sliceproxy",
    "./usr/share/man/man8/sliceproxy.8.gz", "./usr/share/doc/sliceproxy/copyright",
    "./usr/share/doc/sliceproxy/changelog.gz", "./usr/share/doc/sliceproxy/examples/ebpf.conf",
}


def build(out, version=None):
    cmd = ["bash", os.path.join(SOURCE_DIR, "packaging/debian/build-deb.sh"), "--prebuilt",
           BUILD_DIR, "--out", out]
    if version:
        cmd += ["--version", version]
    # No -dbgsym package: it costs half a minute of compression and the tests do not use it.
    env = dict(os.environ, DEB_BUILD_OPTIONS="noddebs")
    debs = run(cmd, env=env).stdout.split()
    if len(debs) != 1:
        fail(f"build-deb.sh reported {debs}, want one .deb")
    return debs[0]


def field(deb, name):
    return run(["dpkg-deb", "--field", deb, name]).stdout.strip()


def main():
    require_env()
    require_tools("dpkg-buildpackage", "dh", "help2man", "dpkg-deb", "dpkg-parsechangelog")
    shutil.rmtree(DEB_DIR, ignore_errors=True)
    os.makedirs(DEB_DIR)

    version = run(["dpkg-parsechangelog", "-l", CHANGELOG, "-S", "Version"]).stdout.strip()
    binary_version = run([SLICEPROXY_BIN, "--version"]).stdout.split()[-1]
    if version.split("-")[0].split("+")[0].split("~")[0] != binary_version:
        fail(f"debian/changelog is at {version}, but the project (CMake) is {binary_version}")
    next_version = version + "+test1"
    if subprocess.run(["dpkg", "--compare-versions", next_version, "gt", version]).returncode:
        fail(f"{next_version} does not sort after {version}")

    for label, ver in [("N", None), ("N+1", next_version)]:
        step(f"build version {label}")
        deb = build(os.path.join(DEB_DIR, label.replace("+", "plus")), ver)
        got = field(deb, "Version")
        if got != (ver or version):
            fail(f"{deb} has version {got}, want {ver or version}")
        contents = run(["dpkg-deb", "--contents", deb]).stdout
        paths = {l.split()[-1] if "->" not in l else l.split()[-3] for l in contents.splitlines()}
        missing = EXPECTED_FILES - paths
        if missing:
            fail(f"{deb} lacks {sorted(missing)}:\n{contents}")
        depends = field(deb, "Depends")
        # Computed by dpkg-shlibdeps from the binary's shared libraries.
        for lib in ["libnftnl", "libnetfilter-conntrack", "libyaml-cpp", "libstdc++6", "libc6"]:
            if lib not in depends:
                fail(f"Depends lacks {lib}: {depends}")
        conffiles = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile {deb} | tar -xO ./conffiles"]).stdout
        if sorted(conffiles.split()) != ["/etc/default/sliceproxy", "/etc/sliceproxy/config.yaml"]:
            fail(f"conffiles: {conffiles!r}")
        man = run(["sh", "-c", f"dpkg-deb --fsys-tarfile {deb} | "
                   "tar -xO ./usr/share/man/man8/sliceproxy.8.gz | gzip -dc"]).stdout
        if "kubeconfig" not in man or ".TH SLICEPROXY" not in man.upper():
            fail(f"the man page does not document the flags:\n{man[:500]}")
        print(f"{deb}: {got}, Depends: {depends}")
        link = os.path.join(DEB_DIR, f"sliceproxy-{label}.deb")
        os.symlink(deb, link)
    print("packages built")


if __name__ == "__main__":
    main()
