#!/usr/bin/env python3
"""Issue 12, points 2 and 4: nothing a manifest directory holds may take the daemon's memory or
stop it following the directory. Hostile files (an alias bomb, a sparse 1 GB file, a FIFO, a
symlink loop) are each refused with one line naming the file while every other object is
programmed; --config /dev/zero is one line and exit 2; a file that arrives while descriptors
are exhausted is read once they are back; a directory replaced under its path is followed."""

import os
import resource
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import BINARY, Daemon, node_manifest, wait_for  # noqa: E402


def service(name, ip, port=80):
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: {ip}
  ports: [{{name: http, port: {port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: [10.1.0.5]
  conditions: {{ready: true}}
"""


def alias_bomb(levels=9, fanout=10):
    # 695 bytes in the report: each level is ten aliases of the one before.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    lines.append("apiVersion: v1\nkind: Service\nmetadata: {name: bomb, namespace: default}")
    lines.append(f"spec: {{clusterIP: 10.96.0.99, ports: [{{port: 80}}], x: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def ports(d):
    return sorted(p["servicePort"] for p in d.state()["servicePorts"])


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def lines_naming(d, path):
    return [l for l in d.stderr if path in l]


class HostileFilesTest(unittest.TestCase):
    def test_each_hostile_file_refused_alone_with_memory_bounded(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")})
        try:
            wait_for(lambda: ports(d) == ["default/web:http/TCP/IPv4"], what="web programmed")
            base = peak_rss_mb(d.proc.pid)
            bomb = os.path.join(d.dir, "bomb.yaml")
            big = os.path.join(d.dir, "big.yaml")
            fifo = os.path.join(d.dir, "pipe.yaml")
            loop = os.path.join(d.dir, "loop.yaml")
            t0 = time.monotonic()
            d.write("bomb.yaml", alias_bomb())
            with open(big, "wb") as f:
                f.truncate(1 << 30)  # sparse: costs the disk nothing
            os.mkfifo(fifo)
            os.symlink("loop.yaml", loop)
            d.write("api.yaml", service("api", "10.96.0.11"))
            for path in (bomb, big, fifo, loop):
                wait_for(lambda: lines_naming(d, path), timeout=20,
                         what="one line naming " + path)
            wait_for(lambda: ports(d) == ["default/api:http/TCP/IPv4",
                                          "default/web:http/TCP/IPv4"],
                     what="the good file beside them programmed")
            took = time.monotonic() - t0
            self.assertIsNone(d.proc.poll(), "".join(d.stderr))
            grown = peak_rss_mb(d.proc.pid) - base
            sys.stderr.write(f"  hostile files refused in {took:.2f}s, peak RSS grew "
                             f"{grown:.1f} MB\n")
            self.assertLess(grown, 64, "peak RSS grew by %.0f MB" % grown)
            self.assertIn("expands to more than", "".join(lines_naming(d, bomb)))
            self.assertIn("more than the limit", "".join(lines_naming(d, big)))
            self.assertIn("FIFO", "".join(lines_naming(d, fifo)))
            # Refused once, not again on every rescan: the files did not change.
            counts = {p: len(lines_naming(d, p)) for p in (bomb, big, fifo, loop)}
            self.assertEqual(set(counts.values()), {1}, counts)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_file_size_limit_is_a_flag(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")},
                   extra_args=["--manifest-max-file-bytes", "300"])
        try:
            path = os.path.join(d.dir, "web.yaml")
            wait_for(lambda: lines_naming(d, path), what="web.yaml refused at 300 bytes")
            self.assertIn("--manifest-max-file-bytes", "".join(lines_naming(d, path)))
            self.assertEqual(ports(d), [])
        finally:
            d.stop()

    def test_bad_limits_and_special_config_files_exit_2(self):
        for args, word in ((["--config", "/dev/zero"], "/dev/zero"),
                           (["--manifest-max-file-bytes", "0"], "--manifest-max-file-bytes"),
                           (["--sync-period", "0s"], "--sync-period")):
            t0 = time.monotonic()
            p = subprocess.run([BINARY, "--backend", "dry-run", "--source-dir", "/nonexistent",
                                *args], capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            errors = [l for l in p.stderr.splitlines() if "error" in l]
            self.assertEqual(len(errors), 1, p.stderr)
            self.assertIn(word, errors[0])
            self.assertLess(time.monotonic() - t0, 10)


class ConflictTest(unittest.TestCase):
    def test_older_service_keeps_a_claimed_frontend_and_the_loser_is_reported(self):
        owner = service("owner", "10.96.0.10").replace(
            "namespace: default}", "namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}", 1)
        thief = service("thief", "10.96.0.20").replace(
            "namespace: default}", "namespace: default, creationTimestamp: '2025-01-01T00:00:00Z'}", 1
        ).replace("clusterIP: 10.96.0.20", "clusterIP: 10.96.0.20\n  externalIPs: [10.96.0.10]")
        # The thief's file is read first: arrival order must not decide.
        d = Daemon({"node.yaml": node_manifest(), "a-thief.yaml": thief, "b-owner.yaml": owner})
        try:
            wait_for(lambda: len(ports(d)) == 2, what="both services programmed")
            wait_for(lambda: any("default/thief" in l and "older Service default/owner" in l
                                 for l in d.stderr), what="the loss logged")
            wait_for(lambda: "sliceproxy_service_frontend_conflicts 1" in d.scrape(),
                     what="the conflict gauge")
            out = subprocess.run([BINARY, "explain", "10.96.0.10:80", "--debug-port",
                                  str(d.debug)], capture_output=True, text=True, timeout=20)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("default/owner:http", out.stdout)
            self.assertIn("also claimed by default/thief", out.stdout)
            d.remove("b-owner.yaml")
            wait_for(lambda: "sliceproxy_service_frontend_conflicts 0" in d.scrape(),
                     what="the conflict over once the owner is gone")
            self.assertEqual(sum("older Service" in l for l in d.stderr), 1, "logged once")
        finally:
            self.assertEqual(d.stop(), 0)


class RecoveryTest(unittest.TestCase):
    def test_file_read_while_descriptors_exhausted_is_retried(self):
        limit = 64
        d = Daemon({"node.yaml": node_manifest()},
                   extra_args=[])
        d.stop()  # the plain daemon only found free ports; run one under the limit below
        args = [a for a in d.args]
        set_limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))  # noqa
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=set_limit)
        err = []
        import threading
        threading.Thread(target=lambda: [err.append(l) for l in p.stderr], daemon=True).start()
        hogs = []
        try:
            wait_for(lambda: socket.create_connection(("127.0.0.1", d.healthz), timeout=0.5),
                     what="daemon up")
            # Idle connections take every descriptor the daemon has left.
            for _ in range(limit):
                hogs.append(socket.create_connection(("127.0.0.1", d.healthz)))
            time.sleep(0.5)
            d.write("web.yaml", service("web", "10.96.0.10"))
            wait_for(lambda: any("web.yaml" in l and "retrying" in l for l in err),
                     what="the read failing with descriptors exhausted")
            for s in hogs:
                s.close()
            hogs = []
            wait_for(lambda: ports(d) == ["default/web:http/TCP/IPv4"], timeout=40,
                     what="web programmed once descriptors are back")
        finally:
            for s in hogs:
                s.close()
            p.terminate()
            p.wait(timeout=10)
        self.assertEqual(p.returncode, 0, "".join(err))

    def test_replaced_directory_is_followed(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")})
        try:
            wait_for(lambda: ports(d) == ["default/web:http/TCP/IPv4"], what="web programmed")
            os.rename(d.dir, d.dir + ".old")
            os.mkdir(d.dir)
            d.write("node.yaml", node_manifest())
            d.write("api.yaml", service("api", "10.96.0.11"))
            wait_for(lambda: ports(d) == ["default/api:http/TCP/IPv4"], timeout=20,
                     what="the new directory read (web gone, api there)")
            d.write("db.yaml", service("db", "10.96.0.12"))
            wait_for(lambda: "default/db:http/TCP/IPv4" in ports(d), timeout=5,
                     what="changes in the new directory followed by inotify")
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
