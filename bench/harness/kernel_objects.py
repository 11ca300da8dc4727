"""Counts the netfilter objects in the current network namespace: what a ruleset costs the
kernel. Prints one JSON object. Run inside the namespace being measured. `ebpf PIN_DIR`
instead reports the eBPF backend's pinned maps and the kernel memory they hold."""

import json
import os
import subprocess
import sys


def _inline_elements(node):
    """Entries of anonymous sets and verdict maps written inside a rule (kube-proxy's
    `numgen random mod N vmap { ... }` holds one per endpoint); the kernel stores them as set
    elements, but `nft list` shows them only inside the rule."""
    if isinstance(node, list):
        return sum(_inline_elements(n) for n in node)
    if not isinstance(node, dict):
        return 0
    total = 0
    for key, value in node.items():
        if key == "set" and isinstance(value, list):
            total += len(value)
        else:
            total += _inline_elements(value)
    return total


def nft_objects():
    out = subprocess.run(["nft", "-j", "list", "ruleset"], check=True, capture_output=True,
                         text=True).stdout
    counts = {"tables": 0, "chains": 0, "rules": 0, "sets": 0, "elements": 0}
    for item in json.loads(out).get("nftables", []):
        if "table" in item:
            counts["tables"] += 1
        elif "chain" in item:
            counts["chains"] += 1
        elif "rule" in item:
            counts["rules"] += 1
            counts["elements"] += _inline_elements(item["rule"].get("expr", []))
        elif "set" in item or "map" in item:
            counts["sets"] += 1
            counts["elements"] += len((item.get("set") or item.get("map")).get("elem", []))
    return counts


def legacy_objects():
    counts = {"tables": 0, "chains": 0, "rules": 0, "sets": 0, "elements": 0}
    out = subprocess.run(["iptables-legacy-save"], check=True, capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if line.startswith("*"):
            counts["tables"] += 1
        elif line.startswith(":"):
            counts["chains"] += 1
        elif line.startswith("-A"):
            counts["rules"] += 1
    return counts


def ebpf_maps(pin_dir):
    """bpftool's bytes_memlock per pinned map: the kernel's own account of the map's memory
    (for a hash map without preallocation, what its elements use now)."""
    maps = {}
    d = os.path.join(pin_dir, "maps")
    for name in sorted(os.listdir(d)):
        out = subprocess.run(["bpftool", "-j", "map", "show", "pinned", os.path.join(d, name)],
                             check=True, capture_output=True, text=True).stdout
        info = json.loads(out)
        maps[name] = {"bytes": int(info.get("bytes_memlock", 0)),
                      "max_entries": info.get("max_entries")}
    total = sum(m["bytes"] for m in maps.values())
    return {"maps": len(maps), "memlock_bytes": total, "per_map": maps, "total": len(maps)}


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "nft"
    if which == "ebpf":
        print(json.dumps(ebpf_maps(sys.argv[2])))
        sys.exit(0)
    counts = legacy_objects() if which == "legacy" else nft_objects()
    counts["total"] = sum(counts.values())
    print(json.dumps(counts))
