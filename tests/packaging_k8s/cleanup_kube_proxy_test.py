#!/usr/bin/env python3
"""`sliceproxy cleanup-kube-proxy` against the real kernel, in a network namespace this test
creates: kube-proxy's leftovers (iptables-nft and iptables-legacy chains, IPv4 and IPv6, with the
jumps from the built-in chains; the nftables tables ip/ip6 kube-proxy; KUBE-* ipsets) sit next to
things that must survive (user chains and rules in the same built-in chains, the kubelet's own
KUBE-* chains, other nftables tables including sliceproxy's, a user ipset, a bridge that happens
to be called kube-ipvs0). After the cleanup every leftover is gone and everything else is
byte-identical: each dump afterwards equals the dump before minus the removed parts.

This kernel has no IPVS and no dummy driver: the IPVS and kube-ipvs0 parts are checked under
qemu (tests/qemu/); here the cleanup must report "no IPVS in this kernel" and succeed."""

import json
import os
import shlex
import subprocess
import sys
import unittest

BIN = os.environ.get("SLICEPROXY_BIN", "sliceproxy")
NS = "kpclean-%d" % os.getpid()
KUBELET_CHAINS = {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-MARK-DROP"}

# What kube-proxy's iptables mode leaves (abridged but shaped like the real thing), what the
# kubelet adds, and a user's own chains and rules in the same tables and built-in chains.
IPTABLES_V4 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:KUBE-SEP-VPVYSBXMO5LJPXC4 - [0:0]
:KUBE-EXT-ABCDEFGHIJKLMNOP - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:USER-DNAT - [0:0]
:USER-HOOK - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment "user: not -j KUBE-SERVICES" -j USER-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -d 203.0.113.7/32 -j USER-DNAT
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.1.0.0/16 ! -d 10.1.0.0/16 -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j KUBE-EXT-ABCDEFGHIJKLMNOP
-A KUBE-EXT-ABCDEFGHIJKLMNOP -j KUBE-MARK-MASQ
-A KUBE-EXT-ABCDEFGHIJKLMNOP -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SVC-NPX46M4PTMTKRN6Y ! -s 10.1.0.0/16 -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https -> 192.168.50.2:6443" -j KUBE-SEP-VPVYSBXMO5LJPXC4
-A KUBE-SEP-VPVYSBXMO5LJPXC4 -s 192.168.50.2/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-VPVYSBXMO5LJPXC4 -p tcp -m tcp -j DNAT --to-destination 192.168.50.2:6443
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A USER-DNAT -p tcp -j DNAT --to-destination 10.2.0.1:80
-A USER-HOOK -j KUBE-SERVICES
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:USER-FILTER - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -j USER-FILTER
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns has no endpoints" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable
-A USER-FILTER -s 192.168.77.0/24 -j DROP
-A USER-FILTER -j KUBE-FORWARD
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:USER-MARK - [0:0]
-A PREROUTING -j USER-MARK
-A USER-MARK -p udp -m udp --dport 4789 -j MARK --set-xmark 0x1/0xffffffff
COMMIT
"""

IPTABLES_V6 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-6RTAVM7W6BCZJDH5 - [0:0]
:KUBE-SEP-IO6BO3WM3CYU5ZTG - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:USER6-DNAT - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -p tcp -m tcp --dport 8080 -j USER6-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s fd00:10::/64 -j MASQUERADE
-A KUBE-SERVICES -d fd00:96::1/128 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-6RTAVM7W6BCZJDH5
-A KUBE-SVC-6RTAVM7W6BCZJDH5 -j KUBE-SEP-IO6BO3WM3CYU5ZTG
-A KUBE-SEP-IO6BO3WM3CYU5ZTG -s 2001:db8::2/128 -j KUBE-MARK-MASQ
-A KUBE-SEP-IO6BO3WM3CYU5ZTG -p tcp -m tcp -j DNAT --to-destination [2001:db8::2]:6443
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
-A USER6-DNAT -p tcp -j DNAT --to-destination [2001:db8::80]:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:USER6-FILTER - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -p ipv6-icmp -j ACCEPT
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -j USER6-FILTER
-A KUBE-FIREWALL -m comment --comment "kubelet: drop marked packets" -m mark --mark 0x8000/0x8000 -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A USER6-FILTER -s fd00:77::/64 -j DROP
COMMIT
"""

# kube-proxy's nftables mode (abridged), sliceproxy's table and a user's table.
NFT = """
table ip kube-proxy {
  set cluster-ips {
    type ipv4_addr
    elements = { 10.96.0.1 }
  }
  map service-ips {
    type ipv4_addr . inet_proto . inet_service : verdict
  }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
  }
  chain nat-prerouting {
    type nat hook prerouting priority dstnat
    jump services
  }
  chain service-ULMVA6XW-default/kubernetes/tcp/https {
    ip daddr 10.96.0.1 counter
  }
}
table ip6 kube-proxy {
  map service-ips {
    type ipv6_addr . inet_proto . inet_service : verdict
  }
  chain services {
    ip6 daddr . meta l4proto . th dport vmap @service-ips
  }
  chain nat-output {
    type nat hook output priority -100
    jump services
  }
}
table ip sliceproxy {
  map frontends {
    type ipv4_addr . inet_proto . inet_service : verdict
  }
  chain prerouting {
    type nat hook prerouting priority dstnat
    ip daddr . meta l4proto . th dport vmap @frontends
  }
  chain svc-0 {
    counter
  }
}
table inet user-fw {
  set blocked {
    type ipv4_addr
    elements = { 198.18.0.9 }
  }
  chain input {
    type filter hook input priority 0
    ip saddr @blocked drop
  }
}
"""

IPSETS = [
    "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536",
    "add KUBE-CLUSTER-IP 10.96.0.1,tcp:443",
    "create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536",
    "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535",
    "create user-allow hash:ip family inet hashsize 1024 maxelem 65536",
    "add user-allow 192.168.9.9",
]
# kube-proxy's IPVS mode matches its ipsets from KUBE-SERVICES: the sets stay in use until the
# rules are gone, which the cleanup has to respect.
IPSET_RULE = ("-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port\" "
              "-m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT")

VARIANTS = [("iptables-nft", "iptables-nft-save", "iptables-nft-restore", IPTABLES_V4),
            ("ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore", IPTABLES_V6),
            ("iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore", IPTABLES_V4),
            ("ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore", IPTABLES_V6)]


def sh(*args, check=True, input=None, ns=True):
    cmd = (["ip", "netns", "exec", NS] if ns else []) + list(args)
    p = subprocess.run(cmd, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr))
    return p


def kube_proxy_chain(name):
    return name.startswith("KUBE-") and name not in KUBELET_CHAINS


def save_lines(tool):
    """iptables-save output without its timestamped comment lines."""
    return [l for l in sh(tool).stdout.splitlines() if l and not l.startswith("#")]


def minus_kube_proxy(lines):
    """The dump with kube-proxy's chains, their rules and the rules jumping to them taken out."""
    out = []
    for line in lines:
        if line.startswith(":") and kube_proxy_chain(line[1:].split()[0]):
            continue
        if line.startswith("-A "):
            w = shlex.split(line)
            target = next((w[i + 1] for i in range(len(w) - 1) if w[i] in ("-j", "-g")), "")
            if kube_proxy_chain(w[1]) or kube_proxy_chain(target):
                continue
        out.append(line)
    return out


def nft_objects():
    """`nft -j list ruleset` as (kind, object) pairs, without the metainfo entry."""
    data = json.loads(sh("nft", "-j", "list", "ruleset").stdout)["nftables"]
    return [next(iter(o.items())) for o in data if "metainfo" not in o]


def in_table(obj, family, table):
    kind, body = obj
    name = body["name"] if kind == "table" else body.get("table")
    return body.get("family") == family and name == table


XTABLES = {"filter", "nat", "mangle", "raw", "security"}


def not_iptables_nft(obj):
    # iptables-nft's tables are compared through iptables-nft-save instead.
    return not any(in_table(obj, fam, t) for fam in ("ip", "ip6") for t in XTABLES)


class CleanupKubeProxyTest(unittest.TestCase):
    def setUp(self):
        subprocess.run(["ip", "netns", "add", NS], check=True)
        sh("ip", "link", "set", "lo", "up")

    def tearDown(self):
        subprocess.run(["ip", "netns", "del", NS], check=False)

    def build_leftovers(self):
        sh("ipset", "restore", input="\n".join(IPSETS) + "\n")
        for _, _, restore, text in VARIANTS:
            if text is IPTABLES_V4:
                text = text.replace("-A USER-FILTER -s 192.168.77.0/24 -j DROP\n",
                                    IPSET_RULE + "\n-A USER-FILTER -s 192.168.77.0/24 -j DROP\n")
            # The legacy tools share /run/xtables.lock with everything else on this machine.
            sh(restore, *(["--wait=10"] if "legacy" in restore else []), input=text)
        sh("nft", "-f", "-", input=NFT)
        # kube-ipvs0 that is not a dummy (this kernel has no dummy driver): not kube-proxy's.
        sh("ip", "link", "add", "kube-ipvs0", "type", "bridge")
        sh("ip", "link", "add", "veth-kp0", "type", "veth", "peer", "name", "veth-kp1")

    def snapshot(self):
        return {
            "iptables": {name: save_lines(save) for name, save, _, _ in VARIANTS},
            "nft": nft_objects(),
            "ipset": sorted(sh("ipset", "save").stdout.splitlines()),
            "links": json.loads(sh("ip", "-d", "-j", "link", "show").stdout),
        }

    def run_cleanup(self, *extra):
        return sh(BIN, "cleanup-kube-proxy", *extra, check=False)

    def test_removes_leftovers_and_nothing_else(self):
        self.build_leftovers()
        before = self.snapshot()
        for name, lines in before["iptables"].items():
            self.assertTrue(any(l.startswith(":KUBE-SVC-") for l in lines), name)

        res = self.run_cleanup()
        self.assertEqual(res.returncode, 0, res.stderr + res.stdout)
        out = res.stdout
        for expect in ("removed: nftables table ip kube-proxy (3 chains, 2 sets and maps)",
                       "removed: nftables table ip6 kube-proxy (2 chains, 1 sets and maps)",
                       "removed: iptables-nft (IPv4): ",
                       "removed: iptables-nft (IPv6): ",
                       "removed: iptables-legacy (IPv4): ",
                       "removed: iptables-legacy (IPv6): ",
                       "removed: ipset: 3 KUBE-* sets",
                       "checked: IPVS: no IPVS in this kernel",
                       "checked: link kube-ipvs0 left in place: it is a bridge device"):
            self.assertIn(expect, out)
        self.assertIn("table nat: 8 KUBE-* chains, 4 rules jumping to them", out)
        self.assertIn("table filter: 6 KUBE-* chains, 8 rules jumping to them", out)
        self.assertIn("table mangle: 1 KUBE-* chains, 0 rules jumping to them", out)
        self.assertIn("table nat: 5 KUBE-* chains, 3 rules jumping to them", out)  # IPv6
        self.assertIn("table filter: 2 KUBE-* chains, 2 rules jumping to them", out)

        after = self.snapshot()
        for name, lines in before["iptables"].items():
            self.assertEqual(after["iptables"][name], minus_kube_proxy(lines), name)
            chains = [l[1:].split()[0] for l in after["iptables"][name] if l.startswith(":")]
            self.assertFalse([c for c in chains if kube_proxy_chain(c)], name)
            # The kubelet's chains and the user's survive with their rules.
            self.assertIn("KUBE-FIREWALL", chains, name)
            self.assertTrue(any(c.startswith("USER") for c in chains), name)
            self.assertTrue(any(l.startswith("-A KUBE-FIREWALL ") for l in after["iptables"][name]),
                            name)
            self.assertFalse(any("KUBE-SERVICES" in l and "not -j KUBE-SERVICES" not in l
                                 for l in after["iptables"][name]), name)
        v4 = after["iptables"]["iptables-nft"]
        self.assertIn('-A PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment '
                      '"user: not -j KUBE-SERVICES" -j USER-DNAT', v4)
        self.assertIn(":USER-HOOK - [0:0]", v4)  # its one rule jumped to KUBE-SERVICES
        self.assertIn(":KUBE-KUBELET-CANARY - [0:0]", v4)

        kube_tables = [("ip", "kube-proxy"), ("ip6", "kube-proxy")]
        expected_nft = [o for o in before["nft"]
                        if not any(in_table(o, f, t) for f, t in kube_tables) and not_iptables_nft(o)]
        self.assertEqual([o for o in after["nft"] if not_iptables_nft(o)], expected_nft)
        self.assertTrue(any(in_table(o, "ip", "sliceproxy") for o in after["nft"]))
        self.assertTrue(any(in_table(o, "inet", "user-fw") for o in after["nft"]))
        self.assertEqual(after["ipset"],
                         [l for l in before["ipset"] if not l.split()[1].startswith("KUBE-")])
        self.assertTrue(any("user-allow" in l for l in after["ipset"]))
        self.assertEqual(after["links"], before["links"])

        # A second run finds nothing left and changes nothing.
        again = self.run_cleanup()
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertNotIn("removed:", again.stdout)
        self.assertEqual(self.snapshot(), after)

    def test_nothing_there(self):
        res = self.run_cleanup()
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertNotIn("removed:", res.stdout)
        self.assertIn("checked: IPVS: no IPVS in this kernel", res.stdout)
        self.assertIn("checked: link kube-ipvs0: absent", res.stdout)
        self.assertIn("nothing of kube-proxy's was left on this node", res.stderr)
        # Looking must not create anything: no legacy table instantiated, no nftables table.
        self.assertEqual(sh("nft", "list", "tables").stdout.strip(), "")
        self.assertEqual(sh("cat", "/proc/net/ip_tables_names").stdout.strip(), "")

    def test_kernel_error_is_reported(self):
        sh("nft", "-f", "-", input=NFT)
        # Without CAP_NET_ADMIN the kernel refuses every nftables request.
        res = sh("setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin", BIN,
                 "cleanup-kube-proxy", check=False)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertIn("cleanup-kube-proxy: listing nftables tables: Operation not permitted",
                      res.stderr)
        self.assertIn("table ip kube-proxy", sh("nft", "list", "tables").stdout)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("cleanup_kube_proxy_test: needs root (network namespaces, iptables, nftables)")
    unittest.main(verbosity=2)
