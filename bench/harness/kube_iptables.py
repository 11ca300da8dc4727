"""kube-proxy's iptables-mode rules for a workload, as iptables-restore input.

Written from the structure kube-proxy's iptables proxier produces (pkg/proxy/iptables): the
filter table's KUBE-SERVICES / KUBE-EXTERNAL-SERVICES / KUBE-FORWARD / KUBE-NODEPORTS /
KUBE-PROXY-FIREWALL chains; in nat, KUBE-SERVICES with one rule per service port, KUBE-NODEPORTS
jumping to a KUBE-EXT-* chain per NodePort service, a KUBE-SVC-* chain per service port that
picks an endpoint with `-m statistic --mode random --probability 1/(n-i)` rules, one KUBE-SEP-*
chain per endpoint (hairpin KUBE-MARK-MASQ + DNAT), and KUBE-POSTROUTING's masquerade.
Comments on per-endpoint rules are dropped above 1,000 endpoints, as kube-proxy's
"large cluster mode" does. Only the text is produced here; the harness times iptables-restore.
"""

import base64
import hashlib

MARK = "0x4000"
LARGE_CLUSTER_ENDPOINTS = 1000
TOP_FILTER = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
              "KUBE-PROXY-FIREWALL"]
TOP_NAT = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]


def _hash16(text):
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_name(svc):
    return f"{svc['service']}:{svc['port']}"


def svc_chain(svc):
    return "KUBE-SVC-" + _hash16(port_name(svc) + svc["protocol"])


def ext_chain(svc):
    return "KUBE-EXT-" + _hash16(port_name(svc) + svc["protocol"])


def sep_chain(svc, ip):
    return "KUBE-SEP-" + _hash16(port_name(svc) + svc["protocol"] + f"{ip}:{svc['target_port']}")


def chains_of(svc):
    """Every nat chain this service port owns."""
    out = [svc_chain(svc)]
    if svc["node_port"]:
        out.append(ext_chain(svc))
    out.extend(sep_chain(svc, ip) for ip in svc["endpoints"])
    return out


def jump_rules():
    """The jumps from the built-in chains that kube-proxy ensures with single iptables calls
    before its first restore (not timed: they are written once per boot)."""
    new = "-m conntrack --ctstate NEW"
    return "\n".join([
        "*filter",
        *[f":{c} - [0:0]" for c in TOP_FILTER],
        f'-I INPUT {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-I INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        f'-I INPUT {new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        f'-I FORWARD {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-I FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        f'-I FORWARD {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        f'-I FORWARD {new} -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
        f'-I OUTPUT {new} -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        f'-I OUTPUT {new} -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "COMMIT",
        "*nat",
        *[f":{c} - [0:0]" for c in TOP_NAT],
        '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-I POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "COMMIT",
        "",
    ])


class IptablesRuleset:
    def __init__(self, services, cluster_cidr):
        self.services = services  # dump rows; endpoints lists are edited in place by changes
        self.cluster_cidr = cluster_cidr

    def large(self):
        return sum(len(s["endpoints"]) for s in self.services) > LARGE_CLUSTER_ENDPOINTS

    def _service_entry_rules(self, svc, out):
        name, proto = port_name(svc), svc["protocol"]
        out.append(f'-A KUBE-SERVICES -m comment --comment "{name} cluster IP" -m {proto} -p {proto} '
                   f'-d {svc["cluster_ip"]} --dport {svc["port_num"]} -j {svc_chain(svc)}')
        if svc["node_port"]:
            out.append(f'-A KUBE-NODEPORTS -m comment --comment {name} -m {proto} -p {proto} '
                       f'--dport {svc["node_port"]} -j {ext_chain(svc)}')

    def _service_chain_rules(self, svc, out, large):
        name, proto = port_name(svc), svc["protocol"]
        svc_c = svc_chain(svc)
        if svc["node_port"]:
            ext = ext_chain(svc)
            out.append(f'-A {ext} -m comment --comment "masquerade traffic for {name} external '
                       f'destinations" -j KUBE-MARK-MASQ')
            out.append(f"-A {ext} -j {svc_c}")
        out.append(f'-A {svc_c} -m comment --comment "{name} cluster IP" -m {proto} -p {proto} '
                   f'-d {svc["cluster_ip"]} --dport {svc["port_num"]} ! -s {self.cluster_cidr} '
                   f"-j KUBE-MARK-MASQ")
        eps = svc["endpoints"]
        n = len(eps)
        tp = svc["target_port"]
        for i, ip in enumerate(eps):
            comment = "" if large else f'-m comment --comment "{name} -> {ip}:{tp}" '
            stat = (f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} "
                    if i < n - 1 else "")
            out.append(f"-A {svc_c} {comment}{stat}-j {sep_chain(svc, ip)}")
        for ip in eps:
            sep = sep_chain(svc, ip)
            comment = "" if large else f"-m comment --comment {name} "
            out.append(f"-A {sep} {comment}-s {ip} -j KUBE-MARK-MASQ")
            out.append(f"-A {sep} {comment}-m {proto} -p {proto} -j DNAT --to-destination {ip}:{tp}")

    def restore_text(self, changed=None, stale_chains=()):
        """iptables-restore --noflush input. changed=None: a full sync (every chain written);
        otherwise a partial sync writing only those services' chains (by service+port name), as
        kube-proxy's partial sync does. The top-level chains are always rewritten whole."""
        large = self.large()
        filt = ["*filter", *[f":{c} - [0:0]" for c in TOP_FILTER],
                "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
                f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {MARK}/{MARK} -j ACCEPT',
                '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
                "COMMIT"]
        chains = [f":{c} - [0:0]" for c in TOP_NAT]
        rules = [f"-A KUBE-POSTROUTING -m mark ! --mark {MARK}/{MARK} -j RETURN",
                 f"-A KUBE-POSTROUTING -j MARK --xor-mark {MARK}",
                 '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
                 f"-A KUBE-MARK-MASQ -j MARK --or-mark {MARK}"]
        for svc in self.services:
            self._service_entry_rules(svc, rules)
            if changed is not None and port_name(svc) not in changed:
                continue
            chains.extend(f":{c} - [0:0]" for c in chains_of(svc))
            self._service_chain_rules(svc, rules, large)
        for c in stale_chains:
            chains.append(f":{c} - [0:0]")
            rules.append(f"-X {c}")
        rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: '
                     'this must be the last rule in this chain" -m addrtype --dst-type LOCAL '
                     "-j KUBE-NODEPORTS")
        return "\n".join(filt + ["*nat"] + chains + rules + ["COMMIT", ""])
