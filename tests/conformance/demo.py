#!/usr/bin/env python3
"""README command 1 (run by packaging/run-demo.sh): the bundled example cluster (examples/) in a
sandbox of network namespaces, served by sliceproxy.

It copies the example manifests to a fresh directory, builds the sandbox (tests/conformance/
sandbox.py: an outside client, node-a where sliceproxy runs, node-b, one namespace per pod),
starts a small server in every pod that an example endpoint names, starts sliceproxy (backend
SLICEPROXY_DEMO_BACKEND, default nftables) in node-a, sends traffic to every service frontend
(ClusterIPs from a pod, NodePorts / load-balancer and external IPs from the outside client) and
prints which pod answered and which source address it saw. Then it waits: every edit of the
manifest directory re-runs the traffic and prints the table again. Ctrl-C tears everything down.
"""

import argparse
import collections
import ipaddress
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import proxy as proxymod  # noqa: E402
from sandbox import CLIENT_EXTRA_V4, CLIENTS, NODES, Sandbox, family, pod_for_ip, pod_ip  # noqa

try:
    import yaml
except ImportError:  # python3-yaml is in packaging/install-deps.sh
    sys.exit("demo: needs python3-yaml (bash packaging/install-deps.sh)")

PROBE_POD = "a200"  # the pod that sends ClusterIP traffic; no example endpoint uses it
CLUSTER_CIDR_FLAGS = ["--cluster-cidr", "10.244.0.0/16,fd00:244::/32"]
ATTEMPTS = 8


def load_objects(directory):
    """Every Service and EndpointSlice of the directory (multi-document YAML, JSON, Lists)."""
    objs, problems = [], []
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml", ".json")) or name.startswith("."):
            continue
        try:
            with open(os.path.join(directory, name)) as f:
                docs = [d for d in yaml.safe_load_all(f) if d]
        except (OSError, yaml.YAMLError) as e:
            problems.append("%s: %s" % (name, str(e).splitlines()[0]))
            continue
        for d in docs:
            objs += d.get("items", []) if d.get("kind") == "List" else [d]
    return objs, problems


def pods_and_ports(objs):
    """{pod: {(proto, port)}} for every endpoint address that lies in the sandbox."""
    out = collections.defaultdict(set)
    for o in objs:
        if o.get("kind") != "EndpointSlice":
            continue
        for e in o.get("endpoints") or []:
            for addr in e.get("addresses") or []:
                pod = pod_for_ip(addr)
                if pod:
                    for p in o.get("ports") or []:
                        if p.get("port"):
                            out[pod].add((p.get("protocol", "TCP").lower(), int(p["port"])))
    return out


def frontends(objs):
    """(service, frontend label, from, proto, address, port, note) for every service port."""
    rows = []
    for o in objs:
        if o.get("kind") != "Service":
            continue
        try:
            rows += service_frontends(o)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            print("demo: skipping a malformed Service (%s: %s)" % (type(e).__name__, e),
                  file=sys.stderr)
    return rows


def service_frontends(o):
    """The rows of frontends() for one Service."""
    rows = []
    meta, spec = o.get("metadata", {}), o.get("spec", {})
    name = "%s/%s" % (meta.get("namespace", "default"), meta.get("name"))
    if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
        return rows
    ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
    ips = [ip for ip in ips if ip and ip != "None"]
    lb = [i["ip"] for i in (o.get("status", {}).get("loadBalancer", {}).get("ingress") or [])
          if i.get("ip")]
    ranges = spec.get("loadBalancerSourceRanges") or []
    local = spec.get("externalTrafficPolicy") == "Local"
    cluster_note = ", ".join(n for n in (
        "sessionAffinity ClientIP" if spec.get("sessionAffinity") == "ClientIP" else "",
        "zone hints (node-a is in zone-a)" if spec.get("trafficDistribution") else "",
        "iTP=Local" if spec.get("internalTrafficPolicy") == "Local" else "") if n)
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP").lower()
        label = "%s:%s" % (name, p.get("name") or p["port"])
        for ip in ips:
            rows.append((label, "ClusterIP", PROBE_POD, proto, ip, p["port"], cluster_note))
        if p.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
            for ip in ips:
                node_ip = NODES["node-a"]["ip"][family(ip)]
                rows.append((label, "NodePort", "client", proto, node_ip, p["nodePort"],
                             "eTP=Local: node-a endpoints, client IP kept" if local else ""))
        for ip in lb:
            for src in lb_sources(ip, ranges):
                note = "eTP=Local" if local else ""
                if ranges:
                    allowed = in_ranges(src or CLIENTS["client"][family(ip)], ranges)
                    note = (note + ", " if note else "") + (
                        "source in loadBalancerSourceRanges" if allowed else
                        "source NOT in loadBalancerSourceRanges")
                rows.append((label, "LoadBalancer", ("client", src), proto, ip, p["port"],
                             note))
        for ip in spec.get("externalIPs") or []:
            rows.append((label, "externalIP", "client", proto, ip, p["port"], ""))
    return rows


def in_ranges(addr, ranges):
    a = ipaddress.ip_address(addr)
    for r in ranges:
        try:
            net = ipaddress.ip_network(r, strict=False)
        except ValueError:
            continue
        if a.version == net.version and a in net:
            return True
    return False


def lb_sources(ip, ranges):
    """Send from the client's own address, and also from its extra address if only that one is
    inside the source ranges (so the demo shows both the drop and the allowed path)."""
    srcs = [None]
    if ranges and family(ip) == 4 and not in_ranges(CLIENTS["client"][4], ranges) and \
            in_ranges(CLIENT_EXTRA_V4, ranges):
        srcs.append(CLIENT_EXTRA_V4)
    return srcs


def who(sb, frm, fam):
    src = None
    if isinstance(frm, tuple):
        frm, src = frm
    if frm == PROBE_POD:
        return frm, src, "pod %s" % pod_ip(frm, fam)
    return frm, src, "%s %s" % (frm, src or sb.address(frm, fam))


def run_traffic(sb, rows):
    table = []
    for label, kind, frm, proto, addr, port, note in rows:
        fam = family(addr)
        agent_name, src, from_text = who(sb, frm, fam)
        res = sb.agent(agent_name).probe(proto, addr, port, n=ATTEMPTS,
                                         timeout=1.5 if proto == "tcp" else 1.0, src=src)
        dst = "[%s]" % addr if fam == 6 else addr
        front = "%s %s:%s/%s" % (kind, dst, port, proto.upper())
        groups = collections.Counter()
        for r in res:
            if r["r"] == "answered":
                groups[("pod %s (%s)" % (pod_ip(r["pod"], fam), pod_node_of(r["pod"])),
                        r["src"])] += 1
            elif r["r"] == "timeout":
                groups[("timed out (dropped)", "")] += 1
            elif r["r"] == "refused":
                groups[("refused (rejected)", "")] += 1
            else:
                groups[("error " + str(r.get("errno")), "")] += 1
        first = True
        for (answer, seen), count in sorted(groups.items()):
            table.append((label if first else "", front if first else "",
                          from_text if first else "", "%s x%d" % (answer, count), seen,
                          note if first else ""))
            first = False
    return table


def pod_node_of(pod):
    return "node-a" if pod.startswith("a") else "node-b"


def print_table(table):
    head = ("SERVICE", "FRONTEND", "FROM", "ANSWERED BY", "SOURCE SEEN", "NOTE")
    widths = [max(len(r[i]) for r in table + [head]) for i in range(len(head))]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print((fmt % head).rstrip())
    print((fmt % tuple("-" * w for w in widths)).rstrip())
    for r in table:
        print((fmt % r).rstrip())
    sys.stdout.flush()


def snapshot(directory):
    out = {}
    for name in os.listdir(directory):
        try:
            st = os.stat(os.path.join(directory, name))
            out[name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=proxymod.binary())
    ap.add_argument("--examples", default=os.path.join(proxymod.REPO, "examples"))
    ap.add_argument("--dir", default=os.environ.get("SLICEPROXY_DEMO_DIR"),
                    help="manifest directory (default: a fresh temporary copy of the examples)")
    ap.add_argument("--backend", default=os.environ.get("SLICEPROXY_DEMO_BACKEND", "nftables"))
    ap.add_argument("--once", action="store_true", help="print the table once and exit")
    ap.add_argument("extra", nargs="*", help="more sliceproxy flags (after --)")
    args = ap.parse_args()
    os.environ["SLICEPROXY_BIN"] = os.path.abspath(args.binary)

    with Sandbox(prefix="spdemo") as sb:
        if args.dir:
            directory = args.dir
            os.makedirs(directory, exist_ok=True)
        else:
            directory = sb.tmpdir("manifests")
        if not any(n.endswith((".yaml", ".yml", ".json")) for n in os.listdir(directory)):
            for n in os.listdir(args.examples):
                if n.endswith((".yaml", ".yml", ".json")):
                    shutil.copy(os.path.join(args.examples, n), directory)

        def start_pods():
            objs, problems = load_objects(directory)
            for p in problems:
                print("demo: cannot read %s" % p, file=sys.stderr)
            for pod, ports in sorted(pods_and_ports(objs).items()):
                agent = sb.pod(pod)
                for proto, port in sorted(ports):
                    agent.listen(proto, port)
            sb.pod(PROBE_POD)
            return objs

        objs = start_pods()
        print("sandbox %s: node-a %s, node-b %s, client %s, pods %s" % (
            sb.tag, NODES["node-a"]["ip"][4], NODES["node-b"]["ip"][4], CLIENTS["client"][4],
            " ".join(sorted(sb.pods, key=lambda p: (p[0], int(p[1:]))))))
        proxy = proxymod.SliceProxy(sb, directory, CLUSTER_CIDR_FLAGS + args.extra, args.backend)
        proxy.start()
        print("sliceproxy (backend %s) running in node-a on %s\n" % (args.backend, directory))
        table = run_traffic(sb, frontends(objs))
        print_table(table)
        if args.once:
            # As a smoke test: every frontend got an answer, a refusal or a drop (no harness
            # error), and sliceproxy logged no error and stopped cleanly.
            bad = [r for r in table if r[3].startswith("error")]
            rc = proxy.stop()
            for line in proxy.errors():
                print(line, file=sys.stderr)
            return 1 if bad or proxy.errors() or rc != 0 else 0
        print("\nedit files in %s; the table is printed again after each change. "
              "Ctrl-C to stop." % directory, flush=True)
        before = snapshot(directory)
        try:
            while True:
                time.sleep(1.0)
                now = snapshot(directory)
                if now == before:
                    if not proxy.running():
                        print("sliceproxy exited (%s):\n%s" % (proxy.proc.returncode,
                                                               proxy.log()))
                        return 1
                    continue
                before = now
                mark = proxy.syncs()
                objs = start_pods()
                try:
                    proxy.wait_sync_after(mark, timeout=3.0)
                except AssertionError:
                    pass  # no change for the data plane (or a rejected edit: see the log)
                for line in proxy.lines[-5:]:
                    if "[warning]" in line or "[error]" in line:
                        print(line)
                print("\nchange in %s:" % directory)
                print_table(run_traffic(sb, frontends(objs)))
        except KeyboardInterrupt:
            print("\nstopping: removing the sandbox", flush=True)
        finally:
            if proxy.running():
                proxy.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
