"""Shared pieces of the packaging tests: paths from CTest, tool checks, the unit file's settings."""

import os
import shlex
import shutil
import subprocess
import sys
import time

SOURCE_DIR = os.environ.get("SLICEPROXY_SOURCE_DIR", "")
BUILD_DIR = os.environ.get("SLICEPROXY_BUILD_DIR", "")
SLICEPROXY_BIN = os.environ.get("SLICEPROXY_BIN", "")
WORK_DIR = os.environ.get("SLICEPROXY_PACKAGING_WORK", "")

UNIT = os.path.join(SOURCE_DIR, "packaging/systemd/sliceproxy.service")
DEFAULT_CONFIG = os.path.join(SOURCE_DIR, "packaging/systemd/config.yaml")
DEFAULT_ENV = os.path.join(SOURCE_DIR, "packaging/systemd/sliceproxy.default")
# Where the Debian package test finds the packages the build test made.
DEB_DIR = os.path.join(WORK_DIR, "deb")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def step(msg):
    print(f"--- {msg}", flush=True)


def require_env():
    for name, value in [("SLICEPROXY_SOURCE_DIR", SOURCE_DIR), ("SLICEPROXY_BUILD_DIR", BUILD_DIR),
                        ("SLICEPROXY_BIN", SLICEPROXY_BIN), ("SLICEPROXY_PACKAGING_WORK", WORK_DIR)]:
        if not value:
            fail(f"{name} is not set (run through ctest)")
    if os.geteuid() != 0:
        fail("the packaging tests need root (dpkg, chroot, network namespaces)")


def require_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        fail(f"missing tools: {' '.join(missing)} (run packaging/install-deps.sh)")


def run(cmd, check=True, **kw):
    """Runs cmd, echoing it; returns the CompletedProcess with text stdout/stderr."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.monotonic() - started
    if took > 5:
        print(f"  ({took:.1f}s)", flush=True)
    if check and res.returncode != 0:
        fail(f"{cmd[0]} exited with {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}")
    return res


def unit_settings(path=UNIT):
    """The unit file's settings as (section, key, value) triples, in order; continuation lines
    joined. Keys may repeat, as systemd allows."""
    out, section, pending = [], None, ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + line.lstrip()
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            stripped = line.strip()
            if not stripped or stripped[0] in "#;":
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped[1:-1]
                continue
            if "=" not in stripped:
                fail(f"{path}: unparsable line {stripped!r}")
            key, value = stripped.split("=", 1)
            out.append((section, key.strip(), value.strip()))
    return out


def unit_value(key, section="Service", path=UNIT):
    """The last value of key (what systemd uses for single-valued settings)."""
    values = [v for s, k, v in unit_settings(path) if s == section and k == key]
    if not values:
        fail(f"{path}: [{section}] has no {key}=")
    return values[-1]


def default_env_args(path=DEFAULT_ENV):
    """SLICEPROXY_ARGS from the EnvironmentFile shipped as /etc/default/sliceproxy."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("SLICEPROXY_ARGS="):
                # systemd unquotes the value, then splits $SLICEPROXY_ARGS on whitespace.
                words = shlex.split(line.split("=", 1)[1])
                return words[0].split() if words else []
    fail(f"{path}: no SLICEPROXY_ARGS=")


def exec_start_argv(binary, path=UNIT, env_path=DEFAULT_ENV):
    """The unit's ExecStart command line as systemd would run it with the shipped environment
    file: $SLICEPROXY_ARGS split on whitespace, the binary replaced by `binary`."""
    argv = []
    for word in shlex.split(unit_value("ExecStart", path=path)):
        if word == "$SLICEPROXY_ARGS":
            argv += default_env_args(env_path)
        elif word.startswith("$"):
            fail(f"ExecStart uses {word}, which this test does not know")
        else:
            argv.append(word)
    if argv[0] != "/usr/bin/sliceproxy":
        fail(f"ExecStart runs {argv[0]}, the package installs /usr/bin/sliceproxy")
    return [binary] + argv[1:]
