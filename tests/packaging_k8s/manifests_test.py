#!/usr/bin/python3
"""The Kubernetes manifests in packaging/kubernetes/, read as objects (not grepped):

- every document is checked field by field against the Kubernetes API types of Debian's
  python3-kubernetes (an unknown or misspelt field, or a wrong type, fails);
- the DaemonSet and RBAC hold what issue 8 requires (host network, system-node-critical,
  tolerate everything, capabilities, mounts, NODE_NAME, probes, rolling update, exact verbs);
- sliceproxy itself accepts the ConfigMap's KubeProxyConfiguration with the DaemonSet's exact
  command line, and the init container's exact `cleanup-kube-proxy` command runs in a fresh
  network namespace;
- kubectl accepts the directory in a client-side dry run, then applies it for real, reads it
  back and deletes it, against the test API server (tests/apiserver/, which speaks the real
  protocol; here it also serves the kinds the manifests use)."""

import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml
import kubernetes.client.models as k8s_models

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MANIFESTS = os.path.join(ROOT, "packaging", "kubernetes")
BIN = os.environ.get("SLICEPROXY_BIN", "sliceproxy")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
sys.path.insert(0, os.path.join(ROOT, "tests", "apiserver"))

import apiserver  # noqa: E402
import kubeconfig_file  # noqa: E402
import tls_certs  # noqa: E402

MODELS = {"ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole",
          "ClusterRoleBinding": "V1ClusterRoleBinding", "ConfigMap": "V1ConfigMap",
          "DaemonSet": "V1DaemonSet"}


def load_documents():
    docs = []
    for path in sorted(glob.glob(os.path.join(MANIFESTS, "*.yaml"))):
        with open(path) as f:
            for d in yaml.safe_load_all(f):
                if d is not None:
                    docs.append((os.path.basename(path), d))
    return docs


def schema_errors(value, typ, path):
    """Differences between a decoded YAML value and the python3-kubernetes model type `typ`."""
    if typ.startswith("list["):
        if not isinstance(value, list):
            return ["%s: want a list" % path]
        return [e for i, v in enumerate(value) for e in schema_errors(v, typ[5:-1], "%s[%d]" % (path, i))]
    if typ.startswith("dict("):
        if not isinstance(value, dict):
            return ["%s: want a map" % path]
        inner = typ[typ.index(",") + 1:-1].strip()
        return [e for k, v in value.items() for e in schema_errors(v, inner, "%s.%s" % (path, k))]
    if typ == "str":
        return [] if isinstance(value, str) else ["%s: want a string, got %r" % (path, value)]
    if typ == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else ["%s: want an integer, got %r" % (path, value)]
    if typ == "bool":
        return [] if isinstance(value, bool) else ["%s: want true/false, got %r" % (path, value)]
    if typ in ("object", "datetime"):
        return []
    cls = getattr(k8s_models, typ)
    if not isinstance(value, dict):
        return ["%s: want an object (%s)" % (path, typ)]
    by_json = {j: attr for attr, j in cls.attribute_map.items()}
    errors = []
    for key, v in value.items():
        if key not in by_json:
            errors.append("%s.%s: no such field in %s" % (path, key, typ))
        else:
            errors += schema_errors(v, cls.openapi_types[by_json[key]], "%s.%s" % (path, key))
    return errors


def sh(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


def backend_capabilities(backend):
    """The backend's Linux capabilities as `sliceproxy backends` lists them, in the
    securityContext's spelling (no CAP_ prefix), sorted."""
    out = subprocess.run([BIN, "backends"], capture_output=True, text=True, check=True).stdout
    entry = [b for b in json.loads(out) if b["name"] == backend][0]
    return sorted(c["name"][len("CAP_"):] for c in entry["linuxCapabilities"])


class ManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = load_documents()
        cls.by_kind = {}
        for _, d in cls.docs:
            cls.by_kind.setdefault(d["kind"], []).append(d)
        cls.tmp = tempfile.mkdtemp(prefix="sliceproxy-k8s-manifests-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def one(self, kind):
        objs = self.by_kind.get(kind, [])
        self.assertEqual(len(objs), 1, "want exactly one %s, got %d" % (kind, len(objs)))
        return objs[0]

    # -- shape -----------------------------------------------------------------------------

    def test_every_document_matches_the_api_types(self):
        self.assertEqual(sorted(self.by_kind), sorted(MODELS))
        for name, d in self.docs:
            with self.subTest(file=name, kind=d["kind"]):
                self.assertEqual(schema_errors(d, MODELS[d["kind"]], d["kind"]), [])
                ns = d["metadata"].get("namespace")
                cluster_scoped = d["kind"] in ("ClusterRole", "ClusterRoleBinding")
                self.assertEqual(ns, None if cluster_scoped else "kube-system")

    def daemonset(self):
        ds = self.one("DaemonSet")
        self.assertEqual(ds["metadata"]["name"], "sliceproxy")
        return ds, ds["spec"]["template"]["spec"]

    def container(self, pod, name, init=False):
        cs = [c for c in pod["initContainers" if init else "containers"] if c["name"] == name]
        self.assertEqual(len(cs), 1, name)
        return cs[0]

    def test_daemonset_takes_kube_proxys_place(self):
        ds, pod = self.daemonset()
        labels = ds["spec"]["template"]["metadata"]["labels"]
        self.assertEqual(ds["spec"]["selector"]["matchLabels"].items() - labels.items(), set())
        self.assertIs(pod["hostNetwork"], True)
        # Cluster DNS sits behind a Service address that only sliceproxy would route.
        self.assertEqual(pod["dnsPolicy"], "Default")
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        self.assertIn({"operator": "Exists"}, pod["tolerations"])
        self.assertEqual(pod["serviceAccountName"], self.one("ServiceAccount")["metadata"]["name"])
        self.assertEqual(ds["spec"]["updateStrategy"],
                         {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        c = self.container(pod, "sliceproxy")
        self.assertEqual(c["image"], "sliceproxy:VERSION")
        sc = c["securityContext"]
        self.assertIs(sc.get("privileged", False), False)
        # Exactly the nftables backend's set (the eBPF variant's is checked below).
        self.assertEqual(sorted(sc["capabilities"]["add"]), backend_capabilities("nftables"))
        # The ConfigMap's `mode: ipvs` runs in this same DaemonSet: the same set must do.
        self.assertEqual(sorted(sc["capabilities"]["add"]), backend_capabilities("ipvs"))
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIs(sc.get("allowPrivilegeEscalation"), False)
        self.assertNotIn("--backend", " ".join(c["args"]), "the ConfigMap's mode decides")
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["NODE_NAME"]["valueFrom"], {"fieldRef": {"fieldPath": "spec.nodeName"}})
        self.assertIn("--hostname-override=$(NODE_NAME)", c["args"])
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/livez", "port": 10256})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/healthz", "port": 10256})

    def mounts(self, pod, c):
        volumes = {v["name"]: v for v in pod["volumes"]}
        out = {}
        for m in c["volumeMounts"]:
            self.assertIn(m["name"], volumes, "volumeMount %s has no volume" % m["name"])
            out[m["mountPath"]] = (m, volumes[m["name"]])
        return out

    def test_daemonset_mounts(self):
        _, pod = self.daemonset()
        m = self.mounts(pod, self.container(pod, "sliceproxy"))
        self.assertEqual(m["/lib/modules"][1]["hostPath"]["path"], "/lib/modules")
        self.assertIs(m["/lib/modules"][0].get("readOnly"), True)
        # The nftables backend pins nothing and attaches to no cgroup.
        self.assertEqual(sorted(m), ["/etc/sliceproxy", "/lib/modules"])
        cfg = m["/etc/sliceproxy"][1]["configMap"]["name"]
        self.assertEqual(cfg, self.one("ConfigMap")["metadata"]["name"])
        init = self.mounts(pod, self.container(pod, "cleanup-kube-proxy", init=True))
        self.assertEqual(init["/run/xtables.lock"][1]["hostPath"],
                         {"path": "/run/xtables.lock", "type": "FileOrCreate"})

    def test_ebpf_variant_differs_only_where_ebpf_needs_it(self):
        with open(os.path.join(MANIFESTS, "ebpf", "daemonset.yaml")) as f:
            ebpf = yaml.safe_load(f)
        self.assertEqual(schema_errors(ebpf, "V1DaemonSet", "DaemonSet"), [])
        pod = ebpf["spec"]["template"]["spec"]
        c = self.container(pod, "sliceproxy")
        sc = c["securityContext"]
        self.assertEqual(sorted(sc["capabilities"]["add"]), backend_capabilities("ebpf"))
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIs(sc.get("privileged", False), False)
        # The API rejects allowPrivilegeEscalation: false together with SYS_ADMIN.
        self.assertNotIn("allowPrivilegeEscalation", sc)
        # Host process ids: the stale-socket walk opens /proc/PID/ns/net of the cgroup's pids.
        self.assertIs(pod["hostPID"], True)
        m = self.mounts(pod, c)
        self.assertEqual(m["/sys/fs/bpf"][1]["hostPath"], {"path": "/sys/fs/bpf", "type": "Directory"})
        # Bidirectional propagation would need a privileged container.
        self.assertEqual(m["/sys/fs/bpf"][0].get("mountPropagation"), "HostToContainer")
        cgroup_root = "/run/sliceproxy/cgroupv2"
        self.assertEqual(m[cgroup_root][1]["hostPath"], {"path": "/sys/fs/cgroup", "type": "Directory"})
        self.assertIs(m[cgroup_root][0].get("readOnly"), True)
        extra_args = ["--backend=ebpf", "--cgroup-root=" + cgroup_root]
        self.assertEqual(c["args"][-2:], extra_args)
        # sliceproxy accepts that command line with the ConfigMap.
        r = sh(BIN, *self.command(c, self.config_file()), "--write-config-to",
               os.path.join(self.tmp, "effective-ebpf.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        # Everything else is the nftables DaemonSet's.
        del pod["hostPID"]
        c["args"] = c["args"][:-2]
        c["securityContext"] = dict(sc, allowPrivilegeEscalation=False,
                                    capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]})
        c["volumeMounts"] = [v for v in c["volumeMounts"] if v["name"] not in ("bpffs", "cgroup")]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in ("bpffs", "cgroup")]
        self.assertEqual(ebpf, self.daemonset()[0])

    def test_rbac_is_exactly_what_sliceproxy_needs(self):
        role = self.one("ClusterRole")
        granted = set()
        for r in role["rules"]:
            self.assertEqual(set(r) - {"apiGroups", "resources", "verbs"}, set(), r)
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        granted.add((g, res, v))
        want = {("", "services", "list"), ("", "services", "watch"),
                ("discovery.k8s.io", "endpointslices", "list"),
                ("discovery.k8s.io", "endpointslices", "watch"),
                ("", "nodes", "list"), ("", "nodes", "watch"), ("", "nodes", "get"),
                ("", "events", "create"), ("", "events", "patch"),
                ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch")}
        self.assertEqual(granted, want)
        binding, sa = self.one("ClusterRoleBinding"), self.one("ServiceAccount")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "ClusterRole", "name": role["metadata"]["name"]})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                                "namespace": sa["metadata"]["namespace"]}])

    # -- sliceproxy accepts them -------------------------------------------------------------

    def config_file(self):
        cm = self.one("ConfigMap")
        text = cm["data"]["config.yaml"]
        doc = yaml.safe_load(text)
        self.assertEqual((doc["apiVersion"], doc["kind"]),
                         ("kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"))
        path = os.path.join(self.tmp, "config.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def command(self, c, config):
        """The container's command line, with the ConfigMap file's real path and $(VAR) filled."""
        _, pod = self.daemonset()
        cm_mount = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "config"][0]
        out = []
        for a in c["command"][1:] + c["args"]:
            a = a.replace(cm_mount + "/config.yaml", config).replace("$(NODE_NAME)", "node-7")
            out.append(a)
        self.assertEqual(c["command"][0], "/usr/bin/sliceproxy")
        return out

    def test_sliceproxy_accepts_the_configmap_with_the_daemonsets_command_line(self):
        _, pod = self.daemonset()
        config = self.config_file()
        args = self.command(self.container(pod, "sliceproxy"), config)
        out = os.path.join(self.tmp, "effective.yaml")
        r = sh(BIN, *args, "--write-config-to", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warn", r.stderr)  # no unknown or ignored field
        with open(out) as f:
            eff = yaml.safe_load(f)
        self.assertEqual(eff["hostnameOverride"], "node-7")
        self.assertEqual(eff["healthzBindAddress"], "0.0.0.0:10256")
        self.assertEqual(eff["sliceproxy"]["backend"], "nftables")
        self.assertTrue(eff["sliceproxy"]["master"].startswith("https://"))

    def test_init_container_command_runs(self):
        _, pod = self.daemonset()
        init = self.container(pod, "cleanup-kube-proxy", init=True)
        self.assertEqual(init["image"], "sliceproxy:VERSION")
        self.assertEqual(sorted(init["securityContext"]["capabilities"]["add"]), ["NET_ADMIN", "NET_RAW"])
        args = self.command(init, self.config_file())
        self.assertEqual(args[0], "cleanup-kube-proxy")
        ns = "k8sinit-%d" % os.getpid()
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            r = sh("ip", "netns", "exec", ns, BIN, *args)
        finally:
            subprocess.run(["ip", "netns", "del", ns])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nothing of kube-proxy's was left on this node", r.stderr)

    def test_migration_node_selector(self):
        # The README has users uncomment this line before the first apply.
        with open(os.path.join(MANIFESTS, "daemonset.yaml")) as f:
            text = f.read()
        line = "# proxy.sliceproxy.io/node: sliceproxy"
        self.assertEqual(text.count(line), 1)
        ds = yaml.safe_load(text.replace(line, line[2:]))
        self.assertEqual(ds["spec"]["template"]["spec"]["nodeSelector"],
                         {"kubernetes.io/os": "linux", "proxy.sliceproxy.io/node": "sliceproxy"})
        self.assertEqual(schema_errors(ds, "V1DaemonSet", "DaemonSet"), [])

    def readme_patches_apply(self, srv, kubectl):
        """The README's `kubectl ... patch ds` commands, as written there, in client dry runs
        against the objects they patch (the test server has no PATCH; a client dry run only
        reads the object and patches it locally)."""
        with open(os.path.join(ROOT, "README.md")) as f:
            text = f.read().replace("\\\n", " ")
        cmds = [shlex.split(l.strip()) for l in text.splitlines()
                if l.strip().startswith("kubectl -n kube-system patch ds ")]
        self.assertEqual(len(cmds), 2, "the README's migration has two `patch ds` commands")
        srv.create({"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
                    "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                             "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                                          "spec": {"containers": [{"name": "kube-proxy", "image": "kube-proxy"}]}}}})
        # sliceproxy's DaemonSet as the migration applies it: the node selector uncommented.
        with open(os.path.join(MANIFESTS, "daemonset.yaml")) as f:
            migrating = f.read().replace("# proxy.sliceproxy.io/node: sliceproxy",
                                         "proxy.sliceproxy.io/node: sliceproxy")
        path = os.path.join(self.tmp, "daemonset-migrating.yaml")
        with open(path, "w") as f:
            f.write(migrating)
        kubectl("create", "--validate=false", "-f", path)
        before = len(srv.requests)
        results = {}
        for cmd in cmds:
            self.assertEqual(cmd[0], "kubectl")
            results[cmd[5]] = yaml.safe_load(kubectl(*cmd[1:], "--dry-run=client", "-o", "json"))
        self.assertFalse([m for m, _ in srv.requests[before:] if m != "GET"], "a dry run wrote")
        terms = results["kube-proxy"]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        self.assertEqual(terms, [{"matchExpressions": [{"key": "proxy.sliceproxy.io/node",
                                                        "operator": "DoesNotExist"}]}])
        self.assertEqual(results["sliceproxy"]["spec"]["template"]["spec"]["nodeSelector"],
                         {"kubernetes.io/os": "linux"})

    # -- kubectl -----------------------------------------------------------------------------

    def test_kubectl_accepts_them(self):
        if shutil.which(KUBECTL) is None:
            self.fail("kubectl is not installed (packaging/install-deps.sh installs kubernetes-client)")
        extra = {
            "configmaps": apiserver.Resource("configmaps", "ConfigMap", "", "v1", True, ["cm"]),
            "serviceaccounts": apiserver.Resource("serviceaccounts", "ServiceAccount", "", "v1", True, ["sa"]),
            "daemonsets": apiserver.Resource("daemonsets", "DaemonSet", "apps", "v1", True, ["ds"]),
            "clusterroles": apiserver.Resource("clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", False),
            "clusterrolebindings": apiserver.Resource("clusterrolebindings", "ClusterRoleBinding",
                                                      "rbac.authorization.k8s.io", "v1", False),
        }
        # The test server's resource table is module-level: extend it for this process only.
        apiserver.RESOURCES.update(extra)
        certs = tls_certs.generate(os.path.join(self.tmp, "certs"))
        srv = apiserver.ApiServer(certs).start()
        try:
            kc = kubeconfig_file.write(os.path.join(self.tmp, "kubeconfig"), srv.url, certs.ca_cert,
                                       token="test-token")

            def kubectl(*args):
                r = sh(KUBECTL, "--kubeconfig", kc, *args, timeout=60)
                self.assertEqual(r.returncode, 0, "kubectl %s: %s" % (" ".join(args), r.stderr))
                return r.stdout

            names = {"serviceaccount/sliceproxy", "clusterrole.rbac.authorization.k8s.io/sliceproxy",
                     "clusterrolebinding.rbac.authorization.k8s.io/sliceproxy",
                     "configmap/sliceproxy", "daemonset.apps/sliceproxy"}
            dry = kubectl("apply", "--dry-run=client", "--validate=false", "-f", MANIFESTS, "-o", "name")
            self.assertEqual(set(dry.split()), names)
            self.assertFalse([m for m, _ in srv.requests if m != "GET"], "a dry run wrote")
            self.assertEqual(set(kubectl("apply", "--validate=false", "-f", MANIFESTS, "-o", "name").split()),
                             names)
            got = yaml.safe_load(kubectl("-n", "kube-system", "get", "daemonset", "sliceproxy", "-o", "yaml"))
            _, pod = self.daemonset()
            self.assertEqual(got["spec"]["template"]["spec"]["containers"][0]["securityContext"],
                             pod["containers"][0]["securityContext"])
            self.assertIn("sliceproxy", kubectl("get", "clusterrole", "-o", "name"))
            # The roll-back's `kubectl delete -f`, one object per kubectl: the test server leaves
            # a DELETE's request body unread, so a second request on that connection could
            # read garbage.
            for name in sorted(names):
                ns = [] if name.startswith("cluster") else ["-n", "kube-system"]
                kubectl("delete", *ns, name)
            self.assertEqual(kubectl("-n", "kube-system", "get", "daemonsets", "-o", "name").strip(), "")
            self.readme_patches_apply(srv, kubectl)
        finally:
            srv.stop()
            for k in extra:
                apiserver.RESOURCES.pop(k, None)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("manifests_test: needs root (the init container's command runs in a network namespace)")
    unittest.main(verbosity=2)
