#!/usr/bin/env python3
"""The API source's TLS and credentials, end to end against the test API server: a server
certificate from the wrong CA is refused, a missing token is a clear error, a rotated token file
is picked up without a restart, client certificates work (files and *-data), rotated CA and
client certificate files are used from the next connection without a restart, exec credential
plugins give a token or a client certificate (renewed when the server rejects it), TLS below
1.2 is refused, and tls-server-name, insecure-skip-tls-verify (with a warning) and --master
over plain HTTP work."""

import json
import os
import shutil
import ssl
import sys
import tempfile
import unittest
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apiserver"))

import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402
from harness import DryRunPlane, SliceproxyProcess  # noqa: E402

WEB = {"default/web:http/TCP/IPv4": ["10.244.1.1:8080"]}


class ApiAuthTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-api-auth-")
        cls.certs = tls_certs.generate(cls.dir)
        cls.other_ca, _ = tls_certs.make_ca(cls.dir, "other-ca")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.srv = ApiServer(self.certs, tokens=["token-a"], client_ca=self.certs.ca_cert).start()
        self.srv.create(k.node("node-a"))
        self.srv.create(k.service("web", "10.96.0.20"))
        self.srv.create(k.endpoint_slice("web-1", "web", [k.endpoint("10.244.1.1", "node-a")]))
        self.planes = []

    def tearDown(self):
        for p in self.planes:
            self.assertEqual(p.stop(), 0, p.stderr())
        self.srv.stop()

    def kubeconfig(self, name, **kw):
        return kubeconfig_file.write(os.path.join(self.dir, name), kw.pop("server", self.srv.url), **kw)

    def run_plane(self, kubeconfig):
        p = DryRunPlane(node="node-a").start(kubeconfig)
        self.planes.append(p)
        return p

    def test_server_certificate_from_another_ca_is_refused(self):
        p = self.run_plane(self.kubeconfig("wrong-ca", ca=self.other_ca, token="token-a"))
        p.wait_log(r"TLS handshake with https://127\.0\.0\.1:\d+ failed: the server certificate was "
                   r"refused: (unable to get local issuer certificate|self-signed certificate in "
                   r"certificate chain) \(verified against the CA of kubeconfig", timeout=10)
        p.assert_unchanged(1.0)
        self.assertEqual(p.full_syncs, 0, "nothing is programmed from an unverified server")
        self.assertFalse(any(path.startswith("/api/v1/services") for _, path in self.srv.requests),
                         "no request was sent over the refused connection")

    def test_tls_below_1_2_is_refused_and_1_2_works(self):
        # A server that offers at most TLS 1.1 is refused at the handshake; one that offers at
        # most TLS 1.2 is used.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the point of the test
            old = ApiServer(self.certs, tokens=["token-a"],
                            tls_versions=(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)).start()
        try:
            p = self.run_plane(self.kubeconfig("tls11", server=old.url, ca=self.certs.ca_cert,
                                               token="token-a"))
            p.wait_log(r"TLS handshake with https://127\.0\.0\.1:\d+ failed: .*the server "
                       r"offers no TLS version from 1\.2 up", timeout=10)
            p.assert_unchanged(1.0)
            self.assertEqual(p.full_syncs, 0)
            self.assertEqual(old.requests, [], "no request over TLS 1.1")
        finally:
            old.stop()
        tls12 = ApiServer(self.certs, tokens=["token-a"],
                          tls_versions=(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)).start()
        try:
            tls12.create(k.node("node-a"))
            tls12.create(k.service("web", "10.96.0.20"))
            tls12.create(k.endpoint_slice("web-1", "web", [k.endpoint("10.244.1.1", "node-a")]))
            p = self.run_plane(self.kubeconfig("tls12", server=tls12.url, ca=self.certs.ca_cert,
                                               token="token-a"))
            p.wait_for(WEB)
        finally:
            tls12.stop()

    def test_server_name_is_verified(self):
        # The certificate holds apiserver.test: tls-server-name makes it match; a wrong one fails.
        p = self.run_plane(self.kubeconfig("sni-ok", ca=self.certs.ca_cert, token="token-a",
                                           tls_server_name="apiserver.test"))
        p.wait_for(WEB)
        p = self.run_plane(self.kubeconfig("sni-bad", ca=self.certs.ca_cert, token="token-a",
                                           tls_server_name="wrong.test"))
        p.wait_log(r"server certificate was refused: [Hh]ostname mismatch", timeout=10)

    def test_missing_token_file_is_a_clear_error(self):
        missing = os.path.join(self.dir, "no-such-token")
        proc = SliceproxyProcess(["--backend", "dry-run", "--hostname-override", "node-a", "--kubeconfig",
                                  self.kubeconfig("missing-token", ca=self.certs.ca_cert, token_file=missing)])
        self.assertEqual(proc.wait_exit(10), 2)
        proc.stop()
        self.assertIn("cannot read token file %s: No such file or directory" % missing, proc.stderr())

    def test_no_credentials_is_a_clear_error(self):
        p = self.run_plane(self.kubeconfig("no-creds", ca=self.certs.ca_cert))
        p.wait_log(r"no token, token file or client certificate: requests are anonymous")
        p.wait_log(r"401 Unauthorized: the API server refused our credentials from kubeconfig")
        self.assertEqual(p.full_syncs, 0)

    def test_rotated_token_file_is_picked_up_without_restart(self):
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write("token-a\n")
        p = self.run_plane(self.kubeconfig("token-file", ca=self.certs.ca_cert, token_file=token_file))
        p.wait_for(WEB)
        # Rotation: the server accepts only the new token, the file gets it (atomically, as the
        # kubelet does), and the connections drop.
        self.srv.tokens = {"token-b"}
        tmp = token_file + ".new"
        with open(tmp, "w") as f:
            f.write("token-b\n")
        os.rename(tmp, token_file)
        self.srv.drop_watches()
        self.srv.create(k.service("after", "10.96.0.21"))
        self.srv.create(k.endpoint_slice("after-1", "after", [k.endpoint("10.244.1.2", "node-a")]))
        p.wait_for(dict(WEB, **{"default/after:http/TCP/IPv4": ["10.244.1.2:8080"]}), timeout=15)
        p.wait_log(r"new token loaded")

    def test_client_certificate_files_and_data(self):
        for name, embed in (("cert-files", False), ("cert-data", True)):
            with self.subTest(name):
                p = self.run_plane(self.kubeconfig(name, ca=self.certs.ca_cert, embed=embed,
                                                   client_cert=self.certs.client_cert,
                                                   client_key=self.certs.client_key))
                p.wait_for(WEB)

    def replace(self, path, source):
        """Rotates a file the way kubelet and cert-manager do: a new file renamed over it."""
        shutil.copyfile(source, path + ".new")
        os.rename(path + ".new", path)

    def test_rotated_client_certificate_files_are_used_without_restart(self):
        # Starts with a client certificate from a CA the server does not trust (no token): the
        # server refuses it. The files then get a good certificate and key; the daemon picks
        # them up at its next connection.
        bad_cert, bad_key = tls_certs.sign(self.dir, "client-other", "/CN=system:node:node-a",
                                           self.other_ca, self.other_ca.replace(".crt", ".key"),
                                           usage="clientAuth")
        cert, key = os.path.join(self.dir, "rot-client.crt"), os.path.join(self.dir, "rot-client.key")
        self.replace(cert, bad_cert)
        self.replace(key, bad_key)
        p = self.run_plane(self.kubeconfig("rot-cert", ca=self.certs.ca_cert, client_cert=cert,
                                           client_key=key))
        p.wait_log(r"(TLS handshake|request to|reading from) .* failed|401 Unauthorized", timeout=10)
        self.assertEqual(p.full_syncs, 0)
        self.replace(key, self.certs.client_key)
        self.replace(cert, self.certs.client_cert)
        p.wait_for(WEB, timeout=30)
        p.wait_log(r"rot-client\.crt: changed; new connections use the new contents")

    def test_rotated_ca_file_is_used_without_restart(self):
        ca = os.path.join(self.dir, "rot-ca.crt")
        self.replace(ca, self.other_ca)
        p = self.run_plane(self.kubeconfig("rot-ca", ca=ca, token="token-a"))
        p.wait_log(r"server certificate was refused", timeout=10)
        self.replace(ca, self.certs.ca_cert)
        p.wait_for(WEB, timeout=30)
        p.wait_log(r"rot-ca\.crt: changed")

    def plugin(self, name, status):
        """A client-go exec plugin printing an ExecCredential whose status is `status` with TOKEN
        replaced by the contents of the file TOKEN_FILE; it counts its runs."""
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("#!/usr/bin/env python3\n"
                    "import json, os\n"
                    "open(os.environ['RUNS'], 'a').write('x\\n')\n"
                    "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
                    "assert info['spec']['interactive'] is False\n"
                    "token = open(os.environ['TOKEN_FILE']).read().strip()\n"
                    "status = json.loads(os.environ['STATUS'].replace('TOKEN', token))\n"
                    "print(json.dumps({'kind': 'ExecCredential', 'apiVersion': info['apiVersion'],"
                    " 'status': status}))\n")
        os.chmod(path, 0o755)
        return path

    def test_exec_plugin_token_renewed_when_rejected(self):
        token_file, runs = os.path.join(self.dir, "exec-token"), os.path.join(self.dir, "exec-runs")
        with open(token_file, "w") as f:
            f.write("token-a\n")
        plugin = self.plugin("token-plugin", {"token": "TOKEN"})
        p = self.run_plane(self.kubeconfig(
            "exec-token-kubeconfig", ca=self.certs.ca_cert, exec_command=plugin,
            exec_env={"TOKEN_FILE": token_file, "RUNS": runs,
                      "STATUS": json.dumps({"token": "TOKEN"})}))
        p.wait_for(WEB)
        # The identity provider rotates: the server accepts only the new token, the plugin gives
        # it from now on; the daemon runs the plugin again after the 401, without a restart.
        self.srv.tokens = {"token-b"}
        with open(token_file, "w") as f:
            f.write("token-b\n")
        self.srv.drop_watches()
        self.srv.create(k.service("after", "10.96.0.21"))
        self.srv.create(k.endpoint_slice("after-1", "after", [k.endpoint("10.244.1.2", "node-a")]))
        p.wait_for(dict(WEB, **{"default/after:http/TCP/IPv4": ["10.244.1.2:8080"]}), timeout=20)
        p.wait_log(r"exec plugin .*token-plugin: new credential")
        with open(runs) as f:
            self.assertGreaterEqual(len(f.read().splitlines()), 2)

    def test_exec_plugin_client_certificate(self):
        with open(self.certs.client_cert) as f:
            cert = f.read()
        with open(self.certs.client_key) as f:
            key = f.read()
        token_file = os.path.join(self.dir, "exec-unused-token")
        with open(token_file, "w") as f:
            f.write("unused\n")
        plugin = self.plugin("cert-plugin", {})
        p = self.run_plane(self.kubeconfig(
            "exec-cert", ca=self.certs.ca_cert, exec_command=plugin,
            exec_env={"TOKEN_FILE": token_file, "RUNS": os.path.join(self.dir, "cert-runs"),
                      "STATUS": json.dumps({"clientCertificateData": cert,
                                            "clientKeyData": key})}))
        p.wait_for(WEB)

    def test_exec_plugin_failure_at_start_is_a_clear_error(self):
        proc = SliceproxyProcess(["--backend", "dry-run", "--hostname-override", "node-a",
                                  "--kubeconfig", self.kubeconfig(
                                      "exec-missing", ca=self.certs.ca_cert,
                                      exec_command=os.path.join(self.dir, "no-such-plugin"))])
        self.assertEqual(proc.wait_exit(10), 2)
        proc.stop()
        self.assertIn("exec credential plugin %s" % os.path.join(self.dir, "no-such-plugin"),
                      proc.stderr())
        self.assertIn("cannot run it: No such file or directory", proc.stderr())

    def test_master_over_plain_http(self):
        # client-go's rule: --master alone means that URL, without credentials.
        plain = ApiServer(self.certs, tls=False, require_auth=False).start()
        try:
            plain.create(k.service("web", "10.96.0.20"))
            plain.create(k.endpoint_slice("web-1", "web", [k.endpoint("10.244.1.1", "node-a")]))
            p = DryRunPlane(node="node-a").start(extra_args=["--master", plain.url])
            self.planes.append(p)
            p.wait_for(WEB)
            p.wait_log(r"reached over plain HTTP, without TLS")
        finally:
            plain.stop()

    def test_insecure_skip_tls_verify_works_and_warns(self):
        p = self.run_plane(self.kubeconfig("insecure", insecure=True, token="token-a"))
        p.wait_for(WEB)
        p.wait_log(r"insecure-skip-tls-verify is set")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
