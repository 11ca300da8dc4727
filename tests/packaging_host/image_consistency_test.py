"""packaging/Containerfile cannot be built here (no container engine), so this checks it against
what is tested: it copies paths that exist, builds with the package's Build-Depends (which must
all be in packaging/install-deps.sh, the project's one list), installs the same tools as
build-oci.sh, and runs the binary the package installs, as build-oci.sh's image does."""

import json
import os
import re
import shlex

from packaging_common import SOURCE_DIR, fail, require_env, step, unit_value

CONTAINERFILE = os.path.join(SOURCE_DIR, "packaging/Containerfile")
BUILD_OCI = os.path.join(SOURCE_DIR, "packaging/image/build-oci.sh")
CONTROL = os.path.join(SOURCE_DIR, "packaging/debian/debian/control")
INSTALL_DEPS = os.path.join(SOURCE_DIR, "packaging/install-deps.sh")


def instructions(path):
    """(INSTRUCTION, argument text) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def install_deps_packages():
    text = open(INSTALL_DEPS).read()
    body = text[text.index("packages=(") + len("packages=("):]
    body = body[:body.index("\n)")]
    words = []
    for line in body.splitlines():
        words += line.split("#", 1)[0].split()
    return set(words)


def build_depends():
    text = open(CONTROL).read()
    source = text.split("\n\n", 1)[0]
    lines = [l for l in source.splitlines() if not l.startswith("#")]
    joined = "\n".join(lines)
    m = re.search(r"^Build-Depends:(.*?)(?=^\S)", joined + "\nEnd:", re.S | re.M)
    if not m:
        fail(f"{CONTROL}: no Build-Depends")
    names = []
    for dep in m.group(1).split(","):
        name = dep.strip().split()[0] if dep.strip() else ""
        if name:
            names.append(name)
    return names


def main():
    require_env()
    steps = instructions(CONTAINERFILE)

    step("base images follow this machine's Debian release")
    os_release = dict(l.strip().split("=", 1) for l in open("/etc/os-release") if "=" in l)
    version_id = os_release["VERSION_ID"].strip('"')
    froms = [arg.split()[0] for ins, arg in steps if ins == "FROM"]
    if len(froms) != 2 or any(not f.startswith(f"debian:{version_id}") for f in froms):
        fail(f"FROM {froms}, want two debian:{version_id} stages (build and run time)")

    step("COPY sources exist")
    for ins, arg in steps:
        if ins != "COPY" or arg.startswith("--from"):
            continue
        for src in shlex.split(arg)[:-1]:
            if not os.path.exists(os.path.join(SOURCE_DIR, src)):
                fail(f"COPY {src}: not in the checkout")
    top = {e for e in os.listdir(SOURCE_DIR) if not e.startswith((".", "build"))}
    copied = {w for ins, arg in steps if ins == "COPY" and not arg.startswith("--from")
              for w in shlex.split(arg)[:-1]}
    needed = {"CMakeLists.txt", "proxier", "slice-watch", "backends", "bpf", "conntrack",
              "packaging"}
    if not needed <= copied:
        fail(f"the build stage lacks {sorted(needed - copied)}")
    for name in sorted(top - copied):
        print(f"not copied into the build stage: {name}")

    step("Build-Depends are in packaging/install-deps.sh")
    listed = install_deps_packages()
    names = build_depends()
    if len(names) < 5:
        fail(f"{CONTROL}: Build-Depends read as {names}")
    for name in names:
        wanted = "debhelper" if name == "debhelper-compat" else name
        if wanted not in listed:
            fail(f"Build-Depends names {name}, which packaging/install-deps.sh does not install")
    if not any("apt-get build-dep" in arg for ins, arg in steps if ins == "RUN"):
        fail("the build stage does not install the Build-Depends")
    if not any("packaging/debian/build-deb.sh" in arg for ins, arg in steps if ins == "RUN"):
        fail("the build stage does not build the package with build-deb.sh")

    step("run-time tools and entrypoint match build-oci.sh and the unit")
    runs = [arg for ins, arg in steps if ins == "RUN" and "sliceproxy_*.deb" in arg]
    if len(runs) != 1:
        fail("the run-time stage should install the package in one RUN")
    words = runs[0].split("&&")
    install = [w for w in words if "apt-get install" in w][0].split()
    tools = set(install[install.index("/tmp/deb/sliceproxy_*.deb") + 1:])
    script = open(BUILD_OCI).read()
    m = re.search(r"^node_tools=\((.*)\)$", script, re.M)
    if not m:
        fail("build-oci.sh: cannot find node_tools, the tools it adds to the Debian root")
    if tools != set(m.group(1).split()):
        fail(f"Containerfile installs {sorted(tools)}, build-oci.sh {sorted(m.group(1).split())}")
    entry = [json.loads(arg) for ins, arg in steps if ins == "ENTRYPOINT"]
    oci_entry = re.search(r"--config\.entrypoint=(\S+)", script).group(1)
    exec_bin = shlex.split(unit_value("ExecStart"))[0]
    if entry != [[oci_entry]] or oci_entry != exec_bin:
        fail(f"entrypoints differ: Containerfile {entry}, build-oci.sh {oci_entry}, unit {exec_bin}")
    print(f"tools {sorted(tools)}, entrypoint {oci_entry}: consistent")


if __name__ == "__main__":
    main()
