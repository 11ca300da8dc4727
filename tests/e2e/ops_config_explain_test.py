#!/usr/bin/env python3
"""Issue 6, configuration and explain: --config KubeProxyConfiguration (round trip through
--write-config-to, flags override the file, each invalid value exits 2 with one clear message)
and `sliceproxy explain` against the running daemon."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import BINARY, Daemon, node_manifest, wait_for  # noqa: E402

CONFIG = """
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clusterCIDR: 10.244.0.0/16,fd00:244::/48
hostnameOverride: node-x
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:11256
metricsBindAddress: 127.0.0.1:11249
nodePortAddresses: [10.0.0.0/8]
detectLocalMode: ClusterCIDR
detectLocal: {bridgeInterface: cbr0, interfaceNamePrefix: veth}
conntrack: {maxPerCore: 1000, min: 2000, tcpEstablishedTimeout: 2h, tcpCloseWaitTimeout: 30m,
            tcpBeLiberal: true, udpTimeout: 30s, udpStreamTimeout: 2m}
nftables: {masqueradeAll: true, masqueradeBit: 12, minSyncPeriod: 2s, syncPeriod: 45s}
ipvs: {scheduler: rr, strictARP: true}
featureGates: {SomeGate: true}
someFutureField: 1
sliceproxy: {backend: dry-run, snatAddresses: [192.0.2.1], debugPort: 11260,
             flowRecordMax: 5000}
"""


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sliceproxy-cfg-")

    def path(self, name, text=None):
        p = os.path.join(self.dir, name)
        if text is not None:
            with open(p, "w") as f:
                f.write(text)
        return p

    def test_round_trip_and_override(self):
        import yaml
        src = self.path("in.yaml", CONFIG)
        out1, out2 = self.path("out1.yaml"), self.path("out2.yaml")
        r = run("--config", src, "--write-config-to", out1)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("featureGates accepted and ignored: SomeGate", r.stderr)
        self.assertIn("unknown field someFutureField", r.stderr)
        doc = yaml.safe_load(open(out1))
        self.assertEqual(doc["apiVersion"], "kubeproxy.config.k8s.io/v1alpha1")
        self.assertEqual(doc["kind"], "KubeProxyConfiguration")
        self.assertEqual(doc["clusterCIDR"], "10.244.0.0/16,fd00:244::/48")
        self.assertEqual(doc["hostnameOverride"], "node-x")
        self.assertEqual(doc["healthzBindAddress"], "127.0.0.1:11256")
        self.assertEqual(doc["bindAddress"], "0.0.0.0")
        self.assertEqual(doc["nodePortAddresses"], ["10.0.0.0/8"])
        self.assertEqual(doc["detectLocal"], {"bridgeInterface": "cbr0", "interfaceNamePrefix": "veth"})
        self.assertEqual(doc["conntrack"]["maxPerCore"], 1000)
        self.assertEqual(doc["conntrack"]["tcpBeLiberal"], True)
        self.assertEqual(doc["nftables"]["masqueradeAll"], True)
        self.assertEqual(doc["nftables"]["masqueradeBit"], 12)
        self.assertEqual(doc["ipvs"]["scheduler"], "rr")
        self.assertEqual(doc["sliceproxy"]["backend"], "dry-run")
        self.assertEqual(doc["sliceproxy"]["snatAddresses"], ["192.0.2.1"])
        self.assertEqual(doc["sliceproxy"]["flowRecordMax"], 5000)
        # What was written reads back to the same configuration.
        r = run("--config", out1, "--write-config-to", out2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(yaml.safe_load(open(out2)), doc)
        # Flags override the file.
        r = run("--config", src, "--masquerade-bit", "9", "--hostname-override", "node-y",
                "--min-sync-period", "3s", "--bind-address", "198.18.0.9",
                "--write-config-to", out2)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc2 = yaml.safe_load(open(out2))
        self.assertEqual(doc2["nftables"]["masqueradeBit"], 9)
        self.assertEqual(doc2["hostnameOverride"], "node-y")
        self.assertEqual(doc2["bindAddress"], "198.18.0.9")
        self.assertNotEqual(doc2["nftables"]["minSyncPeriod"], doc["nftables"]["minSyncPeriod"])
        self.assertEqual(doc2["nftables"]["syncPeriod"], doc["nftables"]["syncPeriod"])

    def test_mode_sections(self):
        """Issue 12 point 7: the section of the mode applies (kube-proxy's rule); iptables.* is
        honoured when migrating from mode iptables, never silently dropped."""
        import yaml
        base = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        cases = [
            # mode iptables: iptables.* applies, nftables.* is reported as not applying.
            (base + "mode: iptables\niptables: {masqueradeAll: true, masqueradeBit: 9, "
             "syncPeriod: 40s, minSyncPeriod: 3s}\nnftables: {syncPeriod: 50s}\n",
             {"syncPeriod": "40s", "minSyncPeriod": "3s", "masqueradeBit": 9, "masqueradeAll": True},
             ["nftables.syncPeriod ignored"]),
            # kubeadm's generated file: 0s everywhere means the defaults.
            (base + "mode: \"\"\niptables: {masqueradeAll: false, masqueradeBit: null, "
             "minSyncPeriod: 0s, syncPeriod: 0s}\nnftables: {minSyncPeriod: 0s, syncPeriod: 0s}\n"
             "syncPeriod: 0s\n",
             {"syncPeriod": "30s", "minSyncPeriod": "1s"}, []),
            # No mode: nftables.* applies, iptables.* fills the rest, with a warning.
            (base + "iptables: {syncPeriod: 20s, minSyncPeriod: 2s}\nnftables: {syncPeriod: 25s}\n",
             {"syncPeriod": "25s", "minSyncPeriod": "2s"},
             ["iptables.minSyncPeriod applied", "iptables.syncPeriod ignored"]),
            # kube-proxy 1.31's top-level fields win.
            (base + "syncPeriod: 35s\nnftables: {syncPeriod: 25s}\n", {"syncPeriod": "35s"}, []),
        ]
        for i, (text, want, warnings) in enumerate(cases):
            with self.subTest(case=i):
                out = self.path("out%d.yaml" % i)
                r = run("--config", self.path("in%d.yaml" % i, text), "--write-config-to", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                doc = yaml.safe_load(open(out))
                flat = dict(doc)
                flat.update({k: v for k, v in doc.get("nftables", {}).items()})
                for k, v in want.items():
                    self.assertEqual(flat.get(k), v, (k, doc))
                for w in warnings:
                    self.assertIn(w, r.stderr)

    def test_invalid_values_exit_2(self):
        base = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
        cases = {
            "apiVersion: v1\nkind: KubeProxyConfiguration\n": "apiVersion",
            base + "kind2: x\nmode: userspace\n": "mode",
            base + "clusterCIDR: 10.0.0.0/33\n": "clusterCIDR",
            base + "healthzBindAddress: nonsense\n": "healthzBindAddress",
            base + "metricsBindAddress: 127.0.0.1:99999\n": "metricsBindAddress",
            base + "nodePortAddresses: [bogus]\n": "nodePortAddresses",
            base + "bindAddress: node-a\n": "bindAddress",
            base + "detectLocalMode: Magic\n": "detectLocalMode",
            base + "nftables: {masqueradeBit: 40}\n": "nftables.masqueradeBit",
            base + "nftables: {syncPeriod: soon}\n": "nftables.syncPeriod",
            base + "conntrack: {maxPerCore: -1}\n": "conntrack.maxPerCore",
            base + "conntrack: {tcpBeLiberal: maybe}\n": "conntrack.tcpBeLiberal",
            base + "sliceproxy: {snatAddresses: [x]}\n": "sliceproxy.snatAddresses",
            base + "sliceproxy: {flowRecordMax: -1}\n": "sliceproxy.flowRecordMax",
            base + "sliceproxy: {sockmapShortcut: maybe}\n": "sliceproxy.sockmapShortcut",
            base + "sliceproxy: {enableDSR: maybe}\n": "sliceproxy.enableDSR",
            base + "mode: [unclosed\n": "not valid YAML",
        }
        for text, field in cases.items():
            with self.subTest(field=field):
                p = self.path("bad.yaml", text)
                r = run("--config", p, "--backend", "dry-run", "--source-dir", self.dir,
                        "--healthz-bind-address", "", "--metrics-bind-address", "",
                        "--debug-port", "0")
                self.assertEqual(r.returncode, 2, r.stderr)
                errors = [l for l in r.stderr.splitlines() if "[error]" in l]
                self.assertEqual(len(errors), 1, r.stderr)
                self.assertIn(field, errors[0])
                self.assertIn("bad.yaml", errors[0])
        r = run("--config", self.path("missing.yaml"))
        self.assertEqual(r.returncode, 2)
        r = run("--healthz-bind-address", "10256", "--backend", "dry-run")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--healthz-bind-address", r.stderr)
        # The sockmap shortcut and direct server return are the eBPF backend's: refused for any
        # other, from the flag and from the file.
        for flag, field in (("--sockmap-shortcut", "sockmapShortcut"),
                            ("--enable-dsr", "enableDSR")):
            conf = self.path(field + ".yaml", base + "sliceproxy: {%s: true}\n" % field)
            for args in ([flag], ["--config", conf]):
                with self.subTest(args=args):
                    r = run(*args, "--backend", "dry-run", "--source-dir", self.dir,
                            "--healthz-bind-address", "", "--metrics-bind-address", "",
                            "--debug-port", "0")
                    self.assertEqual(r.returncode, 2, r.stderr)
                    self.assertIn(flag + ": only the ebpf backend", r.stderr)


CLUSTER = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  sessionAffinity: ClientIP
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.244.1.10"]
    nodeName: node-a
  - addresses: ["10.244.2.10"]
    conditions: {ready: false}
    nodeName: node-b
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: np-1, namespace: default, labels: {kubernetes.io/service-name: np}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: UDP}]
endpoints:
  - addresses: ["10.244.2.20"]
    nodeName: node-b
---
apiVersion: v1
kind: Service
metadata: {name: gw, namespace: edge}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.50
  externalTrafficPolicy: Local
  healthCheckNodePort: 0
  ports: [{name: https, port: 443, targetPort: 8443, nodePort: 30443}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: gw-1, namespace: edge, labels: {kubernetes.io/service-name: gw}}
addressType: IPv4
ports: [{name: https, port: 8443, protocol: TCP}]
endpoints:
  - addresses: ["10.244.2.50"]
    nodeName: node-b
"""


class ExplainTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon({"node.yaml": node_manifest(), "svc.yaml": CLUSTER},
                       extra_args=["--cluster-cidr", "10.244.0.0/16"])
        wait_for(lambda: len(cls.d.state()["servicePorts"]) == 3, what="three service ports")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def explain(self, *args, as_json=True):
        r = run("explain", *args, "--debug-port", str(self.d.debug), *(["-o", "json"] if as_json else []))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout) if as_json else r.stdout

    def test_cluster_ip(self):
        e = self.explain("10.96.0.10:80", "--from", "10.244.1.99")
        self.assertEqual(e["servicePort"], "default/web:http/TCP/IPv4")
        self.assertEqual(e["frontend"], "ClusterIP")
        self.assertEqual(e["verdict"], "dnat")
        self.assertEqual([x["endpoint"] for x in e["eligibleEndpoints"]], ["10.244.1.10:8080"])
        self.assertEqual(e["ineligibleEndpoints"][0]["reason"], "not ready")
        self.assertTrue(e["masquerade"].startswith("no"), e["masquerade"])
        self.assertIn("ClientIP", e["sessionAffinity"])
        e = self.explain("10.96.0.10:80", "--from", "192.0.2.7")
        self.assertTrue(e["masquerade"].startswith("yes"), e["masquerade"])
        text = self.explain("10.96.0.10:80/tcp", as_json=False)
        self.assertIn("default/web:http/TCP/IPv4 (ClusterIP)", text)
        self.assertIn("10.244.2.10:8080: not ready", text)

    def test_node_port(self):
        e = self.explain("10.0.0.10:30080/udp")
        self.assertEqual(e["frontend"], "NodePort")
        self.assertEqual(e["verdict"], "dnat")
        self.assertEqual(e["protocol"], "UDP")
        self.assertIn("externalTrafficPolicy=Cluster", e["masquerade"])

    def test_local_policy_without_local_endpoints_drops(self):
        e = self.explain("203.0.113.10:443", "--from", "198.51.100.1")
        self.assertEqual(e["frontend"], "LoadBalancer")
        self.assertEqual(e["verdict"], "drop")
        self.assertIn("no local endpoint", e["reason"])
        self.assertEqual(e["eligibleEndpoints"], [])
        self.assertEqual(e["ineligibleEndpoints"][0]["reason"], "not local: runs on another node")
        # From a pod, the same address short-circuits to the cluster-wide endpoints.
        e = self.explain("203.0.113.10:443", "--from", "10.244.1.5")
        self.assertEqual(e["verdict"], "dnat")

    def test_not_a_service(self):
        e = self.explain("192.0.2.200:80")
        self.assertIsNone(e["servicePort"])
        self.assertEqual(e["verdict"], "not a service")
        e = self.explain("10.96.0.10:81")
        self.assertEqual(e["verdict"], "reject")
        r = run("explain", "nonsense", "--debug-port", str(self.d.debug))
        self.assertEqual(r.returncode, 2)

    def test_debug_state(self):
        st = self.d.state()
        self.assertEqual(st["backend"], "dry-run")
        self.assertEqual(st["node"]["name"], "node-a")
        self.assertEqual(sorted(p["servicePort"] for p in st["servicePorts"]),
                         ["default/np:http/UDP/IPv4", "default/web:http/TCP/IPv4",
                          "edge/gw:https/TCP/IPv4"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
