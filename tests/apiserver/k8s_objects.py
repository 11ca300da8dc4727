"""Builders for the Kubernetes objects the tests create through the test API server."""

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"


def service(name, cluster_ip, ports=(("http", 80, 8080, "TCP"),), namespace="default", labels=None,
            type_="ClusterIP", **spec):
    body = {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "ports": [{"name": n, "port": p, "targetPort": t, "protocol": proto} for n, p, t, proto in ports]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": body}


def endpoint(ip, node=None, ready=True, serving=None, terminating=None, zone=None):
    cond = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    ep = {"addresses": [ip], "conditions": cond}
    if node:
        ep["nodeName"] = node
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_slice(name, service_name, endpoints, ports=(("http", 8080, "TCP"),), namespace="default",
                   address_type="IPv4", labels=None):
    l = {"kubernetes.io/service-name": service_name, "endpointslice.kubernetes.io/managed-by": "test"}
    l.update(labels or {})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": l},
            "addressType": address_type,
            "endpoints": list(endpoints),
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}


def node(name, internal_ip="192.0.2.10", zone=None, labels=None):
    l = {"kubernetes.io/hostname": name}
    if zone:
        l["topology.kubernetes.io/zone"] = zone
    l.update(labels or {})
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": l},
            "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
                                     {"type": "Hostname", "address": name}]}}
