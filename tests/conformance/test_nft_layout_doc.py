#!/usr/bin/env python3
"""backends/nftables/README.md names every table, chain, set and map the nftables backend
creates, and nothing it does not create.

Programs services of every kind (dual-stack ClusterIP, UDP, NodePort with
externalTrafficPolicy Local, LoadBalancer with source ranges, ClientIP affinity with a client
remembered) in node-a of the conformance sandbox, once with the default flags and once with
`--nodeport-addresses primary`, and compares `nft list ruleset` with the names in the first
column of the page's object tables (`<...>` stands for any text). Needs root; fails, never
skips, without it.
"""

import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import manifests  # noqa: E402
import proxy as proxymod  # noqa: E402
from framework import CLUSTER_CIDR  # noqa: E402
from manifests import ep, port, svc  # noqa: E402
from sandbox import Sandbox  # noqa: E402

README = os.path.join(os.path.dirname(os.path.dirname(HERE)), "backends", "nftables",
                      "README.md")
# Page section -> the table its object rows describe ("" : the rows name tables).
SECTIONS = {
    "## Tables": "",
    "### Objects of a service table": "sliceproxy-svc-<N>",
    "### ClientIP affinity": "sliceproxy-svc-<N>",
    "## The main table `sliceproxy`": "sliceproxy",
    "## The flow record `sliceproxy-flows`": "sliceproxy-flows",
}


def pattern(name):
    return re.compile("^" + re.sub(r"<[^>]+>", "[^ ]+", re.escape(name).replace(r"\<", "<")
                                   .replace(r"\>", ">")) + "$")


def documented():
    """{table pattern: set of object name patterns}; the key "" holds the table names."""
    out, section = {}, None
    with open(README) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                section = SECTIONS.get(line)
                continue
            if section is None or not line.startswith("| `"):
                continue
            first = line.split("|")[1]
            out.setdefault(section, set()).update(re.findall(r"`([^`]+)`", first))
    return out


def objects(ruleset):
    """{(family, table, name)} for every table, chain, set and map of sliceproxy."""
    out, table = set(), None
    for line in ruleset.splitlines():
        m = re.match(r"^table (ip6?) (\S+) \{", line)
        if m:
            table = m.groups() if m.group(2).startswith("sliceproxy") else None
            if table:
                out.add((table[0], "", table[1]))
            continue
        m = re.match(r"^\t(?:chain|set|map) (\S+) \{", line)
        if m and table:
            out.add((table[0], table[1], m.group(1)))
    return out


def services():
    http_np = port(80, 8080, node_port=30080)
    return {
        "web.json": svc("web", ["10.96.0.11", "fd00:96::11"], port(80, 8080),
                        [ep("a2"), ep("b2")]),
        "dns.json": svc("dns", "10.96.0.12", port(53, 5353, "UDP"), [ep("a2")]),
        "loc.json": svc("loc", "10.96.0.51", port(80, 8080, node_port=30081),
                        [ep("a2"), ep("b2")], type="NodePort", etp="Local"),
        "lb.json": svc("lb", "10.96.0.41", http_np, [ep("a2"), ep("b2")], type="LoadBalancer",
                       lb=["203.0.113.10"], source_ranges=["192.168.0.0/16"]),
        "aff.json": svc("aff", "10.96.0.61", port(80, 8080), [ep("a2"), ep("b2")],
                        affinity_timeout=600),
    }


class LayoutDoc(unittest.TestCase):
    def test_readme_names_every_object(self):
        doc = documented()
        self.assertEqual(set(doc), set(SECTIONS.values()),
                         "%s: a section of %s lost its object table" % (README, sorted(SECTIONS)))
        seen = set()
        with Sandbox() as sb:
            for p in ("a2", "b2"):
                sb.pod(p).listen("tcp", 8080)
            for flags in (CLUSTER_CIDR, CLUSTER_CIDR + ("--nodeport-addresses", "primary")):
                proxymod.cleanup(sb)
                d = manifests.ManifestDir(sb.tmpdir("doc"))
                d.write("nodes.json", manifests.nodes())
                for name, objs in services().items():
                    d.write(name, objs)
                sliceproxy = proxymod.SliceProxy(sb, d.path, flags)
                sliceproxy.start()
                try:
                    # a remembered client: the affinity sets and chains in use
                    res = sb.agent("a10").probe("tcp", "10.96.0.61", 80, n=2, sequential=True)
                    self.assertTrue(all(r["r"] == "answered" for r in res), res)
                    seen |= objects(sb.node_exec(["nft", "list", "ruleset"]).stdout)
                finally:
                    sliceproxy.stop()
            proxymod.cleanup(sb)

        tables = {t: pattern(t) for t in doc[""]}
        used = set()
        undocumented = []
        for fam, table, name in sorted(seen):
            if not table:
                hits = [t for t, rx in tables.items() if rx.match(name)]
                used.update(("", t) for t in hits)
                if not hits:
                    undocumented.append("table %s %s" % (fam, name))
                continue
            section = [t for t, rx in tables.items() if rx.match(table)]
            hits = [(s, n) for s in section for n in doc.get(s, ()) if pattern(n).match(name)]
            used.update(hits)
            if not hits:
                undocumented.append("%s %s: %s" % (fam, table, name))
        missing = sorted("%s: %s" % (s or "tables", n) for s, names in doc.items() for n in names
                         if (s, n) not in used)
        problems = ["in the kernel but not in the page: " + o for o in undocumented]
        problems += ["on the page but not in the kernel: " + o for o in missing]
        if problems:
            self.fail("%s and the kernel differ:\n  %s" % (README, "\n  ".join(problems)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
