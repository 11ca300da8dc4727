#!/usr/bin/env python3
"""Issue 18, Security: nothing sliceproxy prints or serves reveals its credentials. The daemon
runs against the test API server with a known bearer token and client certificate (embedded in
the kubeconfig, then as files, then a token the server refuses), at the highest log verbosity,
with every listener on; every output is collected (stderr, the dry-run stdout, /healthz, /livez,
/metrics, /debug/state, /debug/explain, `sliceproxy explain` in text and JSON, `capabilities`,
`backends`, --write-config-to) and searched for the token and for any line of the key and
certificate files, raw or base64-encoded as a kubeconfig carries them."""

import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))

import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402
from harness import SliceproxyProcess  # noqa: E402
from ops_common import BINARY, free_port, http_get, wait_for  # noqa: E402

TOKEN = "leak-canary-" + secrets.token_hex(16)
REFUSED_TOKEN = "refused-canary-" + secrets.token_hex(16)


def pem_lines(path):
    """The base64 lines of a PEM file: any one of them in an output is a leak."""
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("-----")]


def b64_pieces(path):
    """Pieces of the file's base64 encoding, as certificate-authority-data and client-key-data
    carry it; 40-byte windows so a leak of any part of it is found."""
    with open(path, "rb") as f:
        enc = base64.b64encode(f.read()).decode()
    return [enc[i:i + 40] for i in range(0, len(enc) - 40, 40)]


class SecretsLeakTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-leak-")
        cls.certs = tls_certs.generate(cls.dir)
        cls.secrets = {"the bearer token": [TOKEN], "the refused token": [REFUSED_TOKEN]}
        for name, path in (("the client key", cls.certs.client_key),
                           ("the client certificate", cls.certs.client_cert)):
            cls.secrets[name] = pem_lines(path)
            cls.secrets[name + " (base64)"] = b64_pieces(path)
        token_file = os.path.join(cls.dir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        cls.kubeconfigs = {
            "embedded": kubeconfig_file.write(
                os.path.join(cls.dir, "kc-embedded"), "", cls.certs.ca_cert, token=TOKEN,
                client_cert=cls.certs.client_cert, client_key=cls.certs.client_key, embed=True),
            "files": kubeconfig_file.write(
                os.path.join(cls.dir, "kc-files"), "", cls.certs.ca_cert, token_file=token_file,
                client_cert=cls.certs.client_cert, client_key=cls.certs.client_key),
            "refused": kubeconfig_file.write(
                os.path.join(cls.dir, "kc-refused"), "", cls.certs.ca_cert, token=REFUSED_TOKEN),
        }

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        # Only the token authenticates (no client CA), so the refused run meets 401s.
        self.srv = ApiServer(self.certs, tokens=[TOKEN]).start()
        self.srv.create(k.node("node-a"))
        self.srv.create(k.service("web", "10.96.0.20"))
        self.srv.create(k.endpoint_slice("web-1", "web", [k.endpoint("10.244.1.1", "node-a")]))
        self.outputs = {}

    def tearDown(self):
        self.srv.stop()

    def kubeconfig(self, name):
        # The server's port is known only now: rewrite the placeholder server of the file.
        path = self.kubeconfigs[name]
        with open(path) as f:
            text = f.read()
        live = path + ".live"
        with open(live, "w") as f:
            f.write(text.replace('server: ""', 'server: "%s"' % self.srv.url))
        return live

    def run_cli(self, label, *args):
        r = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)
        self.outputs[label] = r.stdout + r.stderr
        return r

    def assert_no_secret(self):
        self.assertGreater(len(self.outputs), 0)
        for label, text in self.outputs.items():
            for what, needles in self.secrets.items():
                for n in needles:
                    self.assertNotIn(n, text, f"{label} reveals {what}:\n{text[-3000:]}")

    def daemon(self, kubeconfig, healthz, metrics, debug):
        return SliceproxyProcess([
            "--backend", "dry-run", "--kubeconfig", kubeconfig, "--hostname-override", "node-a",
            "--v", "4", "--min-sync-period", "100ms",
            "--healthz-bind-address", f"127.0.0.1:{healthz}",
            "--metrics-bind-address", f"127.0.0.1:{metrics}", "--debug-port", str(debug)])

    def run_daemon(self, name):
        healthz, metrics, debug = free_port(), free_port(), free_port()
        kc = self.kubeconfig(name)
        p = self.daemon(kc, healthz, metrics, debug)
        stdout = []
        try:
            def programmed():
                while not p.lines.empty():
                    stdout.append(p.lines.get())
                code, _, body = http_get(f"http://127.0.0.1:{debug}/debug/state")
                return code == 200 and json.loads(body)["servicePorts"]
            wait_for(programmed, timeout=30, what=f"{name}: web programmed")
            for port, path in ((healthz, "/healthz"), (healthz, "/livez"), (metrics, "/metrics"),
                               (metrics, "/healthz"), (debug, "/debug/state"),
                               (debug, "/debug/explain?target=10.96.0.20:80"),
                               (debug, "/debug/explain?target=nonsense"), (debug, "/nothing")):
                code, headers, body = http_get(f"http://127.0.0.1:{port}{path}")
                self.outputs[f"{name} {path}"] = json.dumps(headers) + body
            for args in ((), ("-o", "json")):
                r = self.run_cli(f"{name} explain {args}", "explain", "10.96.0.20:80",
                                 "--debug-port", str(debug), *args)
                self.assertEqual(r.returncode, 0, r.stderr)
            r = self.run_cli(f"{name} write-config-to", "--kubeconfig", kc, "--v", "4",
                             "--write-config-to", os.path.join(self.dir, "dump.yaml"))
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(self.dir, "dump.yaml")) as f:
                self.outputs[f"{name} config dump"] = f.read()
            self.assertIn(kc, self.outputs[f"{name} config dump"])
        finally:
            self.assertEqual(p.stop(), 0, p.stderr())
            while not p.lines.empty():
                stdout.append(p.lines.get())
        self.outputs[f"{name} stderr"] = p.stderr()
        self.outputs[f"{name} stdout"] = "".join(stdout)
        # The highest verbosity really was on (sliceproxy has no trace lines yet; debug ones).
        self.assertIn("[debug]", p.stderr())

    def test_no_output_reveals_the_credentials(self):
        self.run_daemon("embedded")
        self.run_daemon("files")
        # Refused: the 401 paths log what went wrong, never with what.
        p = self.daemon(self.kubeconfig("refused"), free_port(), free_port(), free_port())
        try:
            p.wait_log(r"401", timeout=20)
            time.sleep(1)
        finally:
            p.stop()
        self.outputs["refused stderr"] = p.stderr()
        self.run_cli("capabilities", "capabilities", "--backend", "dry-run", "--v", "4")
        self.run_cli("backends", "backends", "--v", "4")
        self.run_cli("help", "--help")
        sizes = {label: len(text) for label, text in self.outputs.items()}
        sys.stderr.write(f"  searched {len(sizes)} outputs, {sum(sizes.values())} bytes, for "
                         f"{sum(len(v) for v in self.secrets.values())} secret pieces\n")
        for label in ("embedded /metrics", "embedded /debug/state", "files stderr"):
            self.assertGreater(sizes[label], 200, f"{label} is nearly empty")
        self.assert_no_secret()


if __name__ == "__main__":
    unittest.main()
