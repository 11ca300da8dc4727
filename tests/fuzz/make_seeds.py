#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus/<target>/) from real objects: the
manifests of examples/, the objects the test API server serves (tests/apiserver/k8s_objects.py),
the kubeconfig files its tests write (tests/apiserver/kubeconfig_file.py) and the packaged
KubeProxyConfiguration. Run it again when those change; its output is committed."""

import base64
import json
import os
import shutil
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "apiserver"))
import k8s_objects as k  # noqa: E402
import kubeconfig_file  # noqa: E402

KIND_BYTE = {"Service": b"\x00", "EndpointSlice": b"\x01", "Node": b"\x02"}


def example_docs():
    for name in sorted(os.listdir(os.path.join(ROOT, "examples"))):
        path = os.path.join(ROOT, "examples", name)
        if name.endswith(".yaml"):
            with open(path) as f:
                text = f.read()
            yield name, text, [d for d in yaml.safe_load_all(text) if d]
        elif name.endswith(".json"):
            with open(path) as f:
                text = f.read()
            yield name, text, [json.loads(text)]


def api_objects():
    eps = [k.endpoint("10.1.0.5", node="node-a", zone="a"),
           k.endpoint("10.1.0.6", ready=False, serving=True, terminating=True)]
    return [
        k.service("web", "10.96.0.10"),
        k.service("lb", "10.96.0.11", type_="LoadBalancer", externalTrafficPolicy="Local",
                  healthCheckNodePort=30100, sessionAffinity="ClientIP",
                  ports=(("http", 80, 8080, "TCP"), ("dns", 53, 53, "UDP"))),
        k.service("headless", "None"),
        k.endpoint_slice("web-1", "web", eps),
        k.endpoint_slice("web6-1", "web", [k.endpoint("fd00::5")], address_type="IPv6"),
        k.node("node-a", zone="a"),
    ]


def flatten(doc):
    if isinstance(doc, dict) and doc.get("kind", "").endswith("List"):
        return [i for i in doc.get("items", []) if isinstance(i, dict)]
    return [doc]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def chunked(body):
    out, i, step = b"", 0, 97
    while i < len(body):
        piece = body[i:i + step]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        i += step
    return out + b"0\r\n\r\n"


def main():
    shutil.rmtree(os.path.join(HERE, "corpus"), ignore_errors=True)
    objects = list(api_objects())
    for name, text, docs in example_docs():
        base = name.rsplit(".", 1)[0]
        if name.endswith(".yaml"):
            write("yaml_manifest", base, text)
        write("json_document", base, json.dumps(docs[0] if len(docs) == 1 else
                                                {"apiVersion": "v1", "kind": "List", "items": docs}))
        for d in docs:
            objects += flatten(d)
    for i, o in enumerate(api_objects()):
        write("json_document", f"api-{i}", json.dumps(o, indent=1))
        write("yaml_manifest", f"api-{i}", yaml.safe_dump(o))
    by_kind = {}
    for o in objects:
        if o.get("kind") in KIND_BYTE:
            by_kind.setdefault(o["kind"], []).append(o)
    for kind, objs in by_kind.items():
        rv = 100
        items = []
        for o in objs:
            o = json.loads(json.dumps(o))
            o.pop("apiVersion", None), o.pop("kind", None)
            o.setdefault("metadata", {})["resourceVersion"] = str(rv)
            rv += 1
            items.append(o)
        page = {"kind": kind + "List", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(rv), "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ"},
                "items": items}
        write("list_page", kind, KIND_BYTE[kind] + json.dumps(page).encode())
        lines = []
        for typ, o in zip(["ADDED", "MODIFIED", "DELETED"] * len(objs), objs):
            o = dict(o)
            o["metadata"] = dict(o["metadata"], resourceVersion=str(rv))
            lines.append(json.dumps({"type": typ, "object": o}))
            rv += 1
        lines.append(json.dumps({"type": "BOOKMARK", "object": {
            "kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}}}))
        for i, line in enumerate(lines):
            write("watch_event", f"{kind}-{i}", KIND_BYTE[kind] + line.encode())
        body = ("\n".join(lines) + "\n").encode()
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        write("watch_stream", kind, KIND_BYTE[kind] + head + chunked(body))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        write("watch_stream", kind + "-length", KIND_BYTE[kind] + head + body)
    gone = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: 1 (2)", "reason": "Expired", "code": 410}
    write("watch_event", "error", b"\x00" + json.dumps({"type": "ERROR", "object": gone}).encode())
    write("api_status", "expired", json.dumps(gone))
    write("api_status", "invalid", json.dumps({
        "kind": "Status", "code": 400, "reason": "BadRequest", "message": "bad",
        "details": {"causes": [{"reason": "FieldValueInvalid", "field": "resourceVersion"}]}}))
    write("api_status", "exec-token", json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
        "status": {"token": "t0k3n", "expirationTimestamp": "2026-12-04T10:00:00Z"}}))
    write("api_status", "exec-cert", json.dumps({
        "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
        "status": {"clientCertificateData": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                   "clientKeyData": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}}))
    with tempfile.TemporaryDirectory() as tmp:
        pem = os.path.join(tmp, "ca.crt")
        with open(pem, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n")
        variants = {
            "token": dict(server="https://10.0.0.1:6443", ca=pem, token="abc", embed=True),
            "files": dict(server="https://[fd00::1]:6443", ca="ca.crt", token_file="token",
                          client_cert="client.crt", client_key="client.key"),
            "embedded-cert": dict(server="https://192.168.1.1", ca=pem, client_cert=pem,
                                  client_key=pem, embed=True, tls_server_name="kubernetes"),
            "insecure": dict(server="https://api.example:443", insecure=True, token="x"),
            "exec": dict(server="https://10.0.0.1:6443", exec_command="/usr/bin/get-token",
                         exec_env={"A": "b"}),
        }
        for name, kw in variants.items():
            path = os.path.join(tmp, name)
            kubeconfig_file.write(path, **kw)
            with open(path, "rb") as f:
                write("kubeconfig", name, f.read())
    with open(os.path.join(ROOT, "packaging", "systemd", "config.yaml"), "rb") as f:
        write("kube_proxy_config", "systemd", f.read())
    cm = yaml.safe_load(open(os.path.join(ROOT, "packaging", "kubernetes", "configmap.yaml")))
    for key, value in (cm.get("data") or {}).items():
        write("kube_proxy_config", "configmap-" + key.replace(".", "-"), value)
    write("kube_proxy_config", "small", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
          "kind: KubeProxyConfiguration\nmode: nftables\nclusterCIDR: 10.244.0.0/16,fd00:10::/56\n"
          "iptables: {syncPeriod: 30s, minSyncPeriod: 1s}\nnodePortAddresses: [primary]\n"
          "conntrack: {tcpEstablishedTimeout: 24h0m0s, udpTimeout: 30s}\n")
    for i, d in enumerate(["1s", "500ms", "1m30s", "1h", "0", "1.5h", "10us", "2h45m0.5s", "300ns"]):
        write("duration", str(i), d)
    for i, t in enumerate(["2024-05-01T12:34:56Z", "2024-05-01T12:34:56.123456789Z",
                           "2024-02-29T23:59:59+02:00", "1970-01-01T00:00:00-00:30"]):
        write("rfc3339", str(i), t)


if __name__ == "__main__":
    main()
