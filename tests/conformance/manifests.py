"""Builders for the three kinds sliceproxy reads (Service, EndpointSlice, Node), as plain dicts
written to the manifest directory as JSON (`kind: List`)."""

import json
import os

from sandbox import NODES, family, pod_for_ip, pod_ip, pod_node

NAMESPACE = "conf"


def nodes():
    """node-a (where sliceproxy runs) and node-b, as in examples/nodes.yaml."""
    out = []
    for name, spec in NODES.items():
        net = spec["pod_net"]
        cidrs = ["10.244.%d.0/24" % net, "fd00:244:%d::/64" % net]
        out.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": spec["zone"]}},
            "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
            "status": {"addresses": [
                {"type": "InternalIP", "address": spec["ip"][4]},
                {"type": "InternalIP", "address": spec["ip"][6]},
                {"type": "Hostname", "address": name},
            ]},
        })
    return out


def port(port, target, proto="TCP", node_port=None, name=None):
    p = {"name": name or "%s-%d" % (proto.lower(), port), "protocol": proto, "port": port,
         "targetPort": target}
    if node_port:
        p["nodePort"] = node_port
    return p


def ep(pod, ready=True, serving=None, terminating=None, hints=None, conditions=True):
    """An endpoint on a sandbox pod; `hints` is a list of zone names (forZones)."""
    e = {"pod": pod}
    if conditions:
        c = {"ready": ready}
        if serving is not None:
            c["serving"] = serving
        if terminating is not None:
            c["terminating"] = terminating
        e["conditions"] = c
    if hints is not None:
        e["hints"] = {"forZones": [{"name": z} for z in hints]}
    return e


def service(name, ips, ports, type="ClusterIP", etp=None, itp=None, lb=(), external_ips=(),
            affinity_timeout=None, source_ranges=(), namespace=NAMESPACE, spec_extra=None):
    fams = ["IPv6" if family(ip) == 6 else "IPv4" for ip in ips]
    spec = {"type": type, "clusterIP": ips[0], "clusterIPs": list(ips), "ipFamilies": fams,
            "ipFamilyPolicy": "SingleStack" if len(ips) == 1 else "RequireDualStack",
            "ports": ports}
    if etp:
        spec["externalTrafficPolicy"] = etp
    if itp:
        spec["internalTrafficPolicy"] = itp
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if affinity_timeout:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout}}
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    if spec_extra:
        spec.update(spec_extra)
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if lb:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb]}}
    return obj


def endpoint_slice(svc, fam, endpoints, ports, name=None, namespace=NAMESPACE):
    """`ports` are the service's ports (their targetPort and protocol are what the slice lists)."""
    eps = []
    for e in endpoints:
        pod = e["pod"]
        node = pod_node(pod)
        out = {"addresses": [pod_ip(pod, fam)], "nodeName": node, "zone": NODES[node]["zone"]}
        for k in ("conditions", "hints"):
            if k in e:
                out[k] = e[k]
        eps.append(out)
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name or "%s-v%d" % (svc, fam), "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4" if fam == 4 else "IPv6",
        "endpoints": eps,
        "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]}
                  for p in ports],
    }


def svc(name, ips, ports, endpoints, **kw):
    """A Service and one EndpointSlice per family of its cluster IPs (same pods in each)."""
    if isinstance(ips, str):
        ips = [ips]
    if isinstance(ports, dict):
        ports = [ports]
    objs = [service(name, ips, ports, **kw)]
    for fam in sorted({family(ip) for ip in ips}):
        objs.append(endpoint_slice(name, fam, endpoints, ports))
    return objs


def listeners(objects):
    """{pod: {(proto, port)}} for every endpoint of every slice: the pod servers to start."""
    out = {}
    for o in objects:
        if o.get("kind") != "EndpointSlice":
            continue
        for e in o.get("endpoints", []):
            pod = pod_for_ip(e["addresses"][0])
            if pod:
                for p in o.get("ports", []):
                    out.setdefault(pod, set()).add((p.get("protocol", "TCP").lower(), p["port"]))
    return out


class ManifestDir:
    """A directory sliceproxy watches; files are replaced atomically (write to temp + rename)."""

    def __init__(self, path):
        self.path = path

    def write(self, name, objects):
        tmp = os.path.join(self.path, ".%s.tmp" % name)
        with open(tmp, "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": list(objects)}, f, indent=1)
        os.rename(tmp, os.path.join(self.path, name))

    def delete(self, name):
        os.remove(os.path.join(self.path, name))
