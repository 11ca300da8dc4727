#!/usr/bin/env python3
"""Issue 18, Bad input: the manifest directory under the hostile files manifest_limits_test.py
does not cover. Deeply nested YAML and JSON, binary files (random bytes, NULs, invalid UTF-8)
are each refused with one line naming the file while every other object is programmed; a file
rewritten in place (truncated and written again) while the daemon reads it ends with its last
content programmed; five thousand files arriving at once (more inotify events than the kernel
queues) are all programmed with the daemon's memory bounded."""

import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from manifest_limits_test import lines_naming, peak_rss_mb, ports, service  # noqa: E402
from ops_common import Daemon, node_manifest, wait_for  # noqa: E402

WEB = "default/web:http/TCP/IPv4"


def port_count(d):
    return len(d.state()["servicePorts"])


class HostileContentTest(unittest.TestCase):
    def test_nested_and_binary_files_refused_alone(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")})
        try:
            wait_for(lambda: ports(d) == [WEB], what="web programmed")
            base = peak_rss_mb(d.proc.pid)
            rng = random.Random(18)
            hostile = {
                # Flow style: 100,000 levels in 200 kB, far past yaml-cpp's depth guard.
                "nested-flow.yaml": "x: " + "[" * 100000 + "]" * 100000 + "\n",
                # Block style: every level a mapping, 3,000 levels.
                "nested-block.yaml": "".join("  " * i + f"k{i}:\n" for i in range(3000)) +
                                     "  " * 3000 + "v\n",
                "nested.json": '{"kind": "Service", "x": ' + "[" * 100000 + "]" * 100000 + "}",
                "random.yaml": bytes(rng.getrandbits(8) for _ in range(65536)),
                "nuls.json": b"\0" * 4096,
                # yaml-cpp 0.7 looped forever on a stray ',' (found by fuzz_yaml_manifest).
                "stray-comma.yaml": "apiVersion: v1\nkind: Service\n,\n",
                "latin1.yaml": ("apiVersion: v1\nkind: Service\nmetadata: {name: caf\xe9}\n"
                                ).encode("latin-1"),
            }
            t0 = time.monotonic()
            for name, content in hostile.items():
                mode = "wb" if isinstance(content, bytes) else "w"
                with open(os.path.join(d.dir, "." + name), mode) as f:
                    f.write(content)
                os.rename(os.path.join(d.dir, "." + name), os.path.join(d.dir, name))
            d.write("api.yaml", service("api", "10.96.0.11"))
            paths = [os.path.join(d.dir, n) for n in hostile]
            for path in paths:
                wait_for(lambda: lines_naming(d, path), timeout=20,
                         what="one line naming " + path)
            wait_for(lambda: ports(d) == ["default/api:http/TCP/IPv4", WEB],
                     what="the good file beside them programmed")
            took = time.monotonic() - t0
            self.assertIsNone(d.proc.poll(), "".join(d.stderr))
            grown = peak_rss_mb(d.proc.pid) - base
            sys.stderr.write(f"  {len(hostile)} hostile files refused in {took:.2f}s, peak RSS "
                             f"grew {grown:.1f} MB\n")
            self.assertLess(grown, 64)
            time.sleep(1)
            counts = {p: len(lines_naming(d, p)) for p in paths}
            self.assertEqual(set(counts.values()), {1}, counts)
            for path in paths:
                line = lines_naming(d, path)[0]
                self.assertLess(len(line), 600, line)
                self.assertNotIn("\0", line)
        finally:
            self.assertEqual(d.stop(), 0)

    def test_file_rewritten_while_read_ends_with_its_last_content(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")})
        try:
            wait_for(lambda: ports(d) == [WEB], what="web programmed")
            path = os.path.join(d.dir, "churn.yaml")
            # A file of a few hundred kB, rewritten in place: truncated, then written in pieces,
            # so reads see it empty, half-written and whole.
            filler = "".join(f"# padding line {i:06d} {'x' * 60}\n" for i in range(4000))
            deadline = time.monotonic() + 4
            n = 0
            while time.monotonic() < deadline:
                n += 1
                text = filler + service("churn", f"10.96.1.{n % 250 + 1}", port=1000 + n)
                with open(path, "w") as f:
                    for i in range(0, len(text), 16384):
                        f.write(text[i:i + 16384])
                        f.flush()
            final = service("churn", "10.96.2.1", port=4242)
            with open(path, "w") as f:
                f.write(final)
            wait_for(lambda: ports(d) == ["default/churn:http/TCP/IPv4", WEB],
                     timeout=20, what="churn programmed")
            wait_for(lambda: any(p["servicePort"].startswith("default/churn") and
                                 "10.96.2.1" in str(p) for p in d.state()["servicePorts"]),
                     timeout=20, what="the last content of churn.yaml programmed")
            sys.stderr.write(f"  {n} in-place rewrites\n")
            self.assertIsNone(d.proc.poll(), "".join(d.stderr))
        finally:
            self.assertEqual(d.stop(), 0)

    def test_five_thousand_files_at_once(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": service("web", "10.96.0.10")})
        try:
            wait_for(lambda: ports(d) == [WEB], what="web programmed")
            base = peak_rss_mb(d.proc.pid)
            count = 5000
            t0 = time.monotonic()
            for i in range(count):
                d.write(f"svc-{i:05d}.yaml",
                        service(f"svc-{i}", f"10.96.{16 + i // 250}.{i % 250 + 1}"))
            d.write("svc-bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\n"
                                    "spec: {clusterIP: 10.96.0.300, ports: [{port: 80}]}\n")
            wrote = time.monotonic() - t0
            wait_for(lambda: port_count(d) == count + 1, timeout=90, interval=0.5,
                     what=f"{count + 1} service ports")
            took = time.monotonic() - t0
            bad = os.path.join(d.dir, "svc-bad.yaml")
            wait_for(lambda: lines_naming(d, bad), what="the bad file named")
            grown = peak_rss_mb(d.proc.pid) - base
            sys.stderr.write(f"  {count} files written in {wrote:.1f}s, all programmed after "
                             f"{took:.1f}s, peak RSS grew {grown:.1f} MB\n")
            self.assertLess(grown, 256)
            self.assertIsNone(d.proc.poll(), "".join(d.stderr))
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
