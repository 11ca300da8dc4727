"""What a backend left in the kernel of node-a, per backend: the objects it owns (for the
restart and cleanup tests) and a readable dump of its state (for failure reports). A new
backend adds its two functions here; nothing else in the suite names a kernel mechanism."""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def expectations():
    with open(os.path.join(HERE, "expectations.json")) as f:
        return json.load(f)["backends"]


def serves_outside(backend):
    """False for a backend whose expectations declare traffic from outside node-a unsupported,
    everywhere or (restart_unsupported) only across restarts and bulk cold loads (the live-change
    and restart tests then probe from node-a's pods only)."""
    e = expectations().get(backend, {})
    return "TrafficFromOutsideNode" not in e.get("unsupported", []) + \
        e.get("restart_unsupported", [])


def _nft_tables(sandbox, node):
    out = sandbox.node_exec(["nft", "list", "tables"], node=node).stdout
    return [tuple(l.split()[1:3]) for l in out.splitlines() if l.startswith("table ")]


def _nft_owned(sandbox, node):
    # main table, service tables (sliceproxy-svc-N), flow record (sliceproxy-flows)
    return sorted("nftables table %s %s" % t for t in _nft_tables(sandbox, node)
                  if t[1] == "sliceproxy" or t[1].startswith("sliceproxy-"))


def _nft_dump(sandbox, node):
    p = sandbox.node_exec(["nft", "list", "ruleset"], node=node, check=False)
    return p.stdout + p.stderr


def _ebpf_pin_dir(sandbox):
    flags = sandbox.backend_flags()
    return flags[flags.index("--bpf-pin-dir") + 1], flags[flags.index("--cgroup-root") + 1]


def _ebpf_packet_path(sandbox, node):
    # The packet path's programs (np_*) on node-a's interfaces: tcx, tc filters, XDP.
    p = sandbox.node_exec(["python3", os.path.join(HERE, "bpf_attachments.py")], node=node)
    return [l for l in p.stdout.splitlines() if l.split() and l.split()[-1].startswith("np_")]


def _per_interface(name):
    # The packet path attaches to every interface by default, pods' included, and pods come
    # and go: its objects are listed by kind ("links/np_ingress_*", "tcx_ingress * np_ingress"),
    # so that what a run owns compares equal across restarts while pods are added.
    parts = name.split()
    if len(parts) == 3:
        return "%s * %s" % (parts[0], parts[2])
    head, _, tail = name.rpartition("_")
    return head + "_*" if name.startswith("links/np_") and tail.isdigit() else name


def _ebpf_owned(sandbox, node):
    # Pinned links and maps, the programs attached to node-a's cgroup and to its interfaces.
    pin, cgroup = _ebpf_pin_dir(sandbox)
    out = []
    for sub in ("links", "maps"):
        d = os.path.join(pin, sub)
        if os.path.isdir(d):
            out += ["ebpf pin %s" % _per_interface("%s/%s" % (sub, n)) for n in os.listdir(d)]
    p = sandbox.node_exec(["bpftool", "-j", "cgroup", "show", cgroup], node=node, check=False)
    for prog in json.loads(p.stdout.strip() or "[]"):
        out.append("ebpf attached %s %s" % (prog.get("attach_type"), prog.get("name")))
    out += ["ebpf attached %s" % _per_interface(a) for a in _ebpf_packet_path(sandbox, node)]
    return sorted(set(out))


def _ebpf_dump(sandbox, node):
    pin, cgroup = _ebpf_pin_dir(sandbox)
    parts = []
    for cmd in (["bpftool", "cgroup", "show", cgroup],
                ["bpftool", "map", "dump", "pinned", os.path.join(pin, "maps", "sp_services")],
                ["bpftool", "map", "dump", "pinned", os.path.join(pin, "maps", "sp_slots")]):
        p = sandbox.node_exec(cmd, node=node, check=False)
        parts.append("$ %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    parts.append("packet path attachments:\n" + "\n".join(_ebpf_packet_path(sandbox, node)))
    return "\n".join(parts)


def _ipvs_owned(sandbox, node):
    # Whether there are virtual services (read from /proc/net/ip_vs: no ipvsadm needed; which
    # ones changes with the services, as the nftables backend's table names do not), the dummy
    # link, the masquerade table.
    p = sandbox.node_exec(["cat", "/proc/net/ip_vs"], node=node, check=False)
    out = []
    if any(l.split() and l.split()[0] in ("TCP", "UDP", "SCTP") for l in p.stdout.splitlines()):
        out.append("ipvs virtual services")
    if sandbox.node_exec(["ip", "link", "show", "sliceproxy-ipvs"], node=node,
                         check=False).returncode == 0:
        out.append("link sliceproxy-ipvs")
    out += _nft_owned(sandbox, node)
    return sorted(out)


def _ipvs_dump(sandbox, node):
    parts = []
    # The connection entries and conntrack show where a flow went when a probe failed.
    for cmd in (["cat", "/proc/net/ip_vs"], ["cat", "/proc/net/ip_vs_conn"],
                ["conntrack", "-L"], ["ip", "addr", "show", "sliceproxy-ipvs"],
                ["nft", "list", "ruleset"]):
        p = sandbox.node_exec(cmd, node=node, check=False)
        parts.append("$ %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return "\n".join(parts)


_OWNED = {"nftables": _nft_owned, "ebpf": _ebpf_owned, "ipvs": _ipvs_owned}
_DUMP = {"nftables": _nft_dump, "ebpf": _ebpf_dump, "ipvs": _ipvs_dump}


def owned(sandbox, backend, node="node-a"):
    """Sorted names of the kernel objects `backend` owns in the node's namespace."""
    if backend not in _OWNED:
        raise AssertionError("tests/conformance/kernel_state.py cannot list what backend %r owns:"
                             " add it" % backend)
    return _OWNED[backend](sandbox, node)


def describe(sandbox, backend, node="node-a", limit=400):
    """The backend's kernel state, for a failure report (at most `limit` lines)."""
    fn = _DUMP.get(backend)
    if fn is None:
        return "(no kernel state describer for backend %r in kernel_state.py)" % backend
    lines = fn(sandbox, node).splitlines()
    if len(lines) > limit:
        lines = lines[:limit] + ["... (%d more lines)" % (len(lines) - limit)]
    return "\n".join(lines)
