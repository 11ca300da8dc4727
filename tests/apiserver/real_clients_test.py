#!/usr/bin/env python3
"""The test API server checked with real Kubernetes clients: kubectl (get and --watch of
services and endpointslices through a kubeconfig) and the Python kubernetes client (paged list
and watch). If they can use it, it speaks the protocol they expect."""

import os
import shutil
import subprocess
import sys


def _reexec_with_kubernetes_module():
    # Debian's python3-kubernetes lives in the system interpreter, which may not be the python3
    # first on PATH (pyenv, a virtualenv).
    try:
        import kubernetes  # noqa: F401
        return
    except ImportError:
        pass
    system = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(system) and os.path.exists(system):
        os.execv(system, [system] + sys.argv)


_reexec_with_kubernetes_module()

import queue  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402
from apiserver import ApiServer  # noqa: E402

KUBECTL = os.environ.get("KUBECTL", "kubectl")


class LineReader:
    def __init__(self, proc):
        self.q = queue.Queue()
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))

    def wait_for(self, text, timeout=20):
        seen, deadline = [], time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.q.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            seen.append(line)
            if text in line:
                return seen
        raise AssertionError("%r never printed; got %r" % (text, seen))


class RealClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sliceproxy-clients-")
        cls.certs = tls_certs.generate(cls.dir)
        cls.srv = ApiServer(cls.certs, client_ca=cls.certs.ca_cert, bookmark_interval=1).start()
        cls.kubeconfig = kubeconfig_file.write(os.path.join(cls.dir, "kubeconfig"), cls.srv.url,
                                               cls.certs.ca_cert, token="test-token")
        for i in range(3):
            cls.srv.create(k.service("web-%d" % i, "10.96.0.%d" % (i + 1)))
            cls.srv.create(k.endpoint_slice("web-%d-abc" % i, "web-%d" % i,
                                            [k.endpoint("10.244.1.%d" % (i + 1), "node-a")]))
        cls.srv.create(k.service("dns", "10.96.0.10", namespace="kube-system",
                                 ports=(("dns", 53, 53, "UDP"),)))
        cls.srv.create(k.node("node-a"))

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # -- kubectl ----------------------------------------------------------------------------

    def kubectl(self, *args, timeout=60):
        if shutil.which(KUBECTL) is None:
            self.fail("kubectl is not installed (packaging/install-deps.sh installs kubernetes-client)")
        r = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                           text=True, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_kubectl_get(self):
        self.assertLessEqual({"service/web-0", "service/web-1", "service/web-2", "service/dns"},
                             set(self.kubectl("get", "services", "-A", "-o", "name").split()))
        self.assertEqual(self.kubectl("get", "services", "-n", "kube-system", "-o", "name").split(),
                         ["service/dns"])
        out = self.kubectl("get", "endpointslices", "-o", "name")
        self.assertIn("endpointslice.discovery.k8s.io/web-1-abc", out.split())
        self.assertIn("web-1", self.kubectl("get", "services", "web-1", "-o", "jsonpath={.metadata.name}"))
        self.assertIn("node-a", self.kubectl("get", "nodes", "-o", "name"))
        # Paged: kubectl asks for pages of 500; --chunk-size makes it follow continue tokens.
        paged = self.kubectl("get", "services", "-A", "-o", "name", "--chunk-size", "1").split()
        self.assertEqual(sorted(paged), sorted(self.kubectl("get", "services", "-A", "-o", "name").split()))
        self.assertTrue(any("continue=" in p for _, p in self.srv.requests), "kubectl followed continue tokens")

    def watch_with_kubectl(self, resource, create, expect):
        if shutil.which(KUBECTL) is None:
            self.fail("kubectl is not installed (packaging/install-deps.sh installs kubernetes-client)")
        proc = subprocess.Popen([KUBECTL, "--kubeconfig", self.kubeconfig, "get", resource, "--watch",
                                 "-o", "name"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            lines = LineReader(proc)
            lines.wait_for("web-0")  # the initial list
            time.sleep(0.5)  # let kubectl start its watch
            create()
            lines.wait_for(expect)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()

    def test_kubectl_watch_services(self):
        self.watch_with_kubectl("services", lambda: self.srv.create(k.service("watched", "10.96.0.50")),
                                "service/watched")

    def test_kubectl_watch_endpointslices(self):
        self.watch_with_kubectl(
            "endpointslices",
            lambda: self.srv.create(k.endpoint_slice("watched-xyz", "watched", [k.endpoint("10.244.9.9")])),
            "watched-xyz")

    # -- python kubernetes client -----------------------------------------------------------

    def test_python_client_list_and_watch(self):
        try:
            from kubernetes import client, config, watch
        except ImportError:
            self.fail("the Python kubernetes client is not installed (Debian python3-kubernetes)")
        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        core = client.CoreV1Api(api_client)
        disc = client.DiscoveryV1Api(api_client)

        names, cont = [], None
        while True:
            kw = {"limit": 2}
            if cont:
                kw["_continue"] = cont
            page = core.list_service_for_all_namespaces(**kw)
            names += [s.metadata.name for s in page.items]
            cont = page.metadata._continue
            if not cont:
                break
        self.assertLessEqual({"dns", "web-0", "web-1", "web-2"}, set(names))
        self.assertEqual(len(names), len(set(names)), "no object twice across pages")
        slices = disc.list_endpoint_slice_for_all_namespaces()
        self.assertGreaterEqual(len(slices.items), 3)
        self.assertEqual(slices.items[0].endpoints[0].addresses[0].startswith("10.244."), True)
        self.assertEqual(core.read_node("node-a").status.addresses[0].type, "InternalIP")

        rv = core.list_namespaced_service("default").metadata.resource_version
        threading.Timer(0.5, lambda: self.srv.create(k.service("py-watched", "10.96.0.60"))).start()
        w = watch.Watch()
        seen = []
        for ev in w.stream(core.list_service_for_all_namespaces, resource_version=rv, timeout_seconds=15,
                           allow_watch_bookmarks=True):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["object"].metadata.name == "py-watched":
                w.stop()
        self.assertIn(("ADDED", "py-watched"), seen)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
