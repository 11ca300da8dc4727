"""kube-proxy's nftables-mode ruleset for a workload, as `nft -f` input.

Written from the layout kube-proxy's nftables proxier produces (pkg/proxy/nftables): table
`ip kube-proxy`; base chains hooked at filter/nat priorities; the `service-ips` and
`service-nodeports` verdict maps dispatching to one `service-*` chain per service port (and an
`external-*` chain for NodePorts); each service chain picks an endpoint with
`numgen random mod N vmap { i : goto endpoint-* }`; one `endpoint-*` chain per endpoint with the
hairpin masquerade mark and the DNAT; the `masquerading` chain in nat postrouting. Only the text
is produced here; the harness times `nft -f`.
"""

import base64
import hashlib

TABLE = "ip kube-proxy"
MARK = "0x4000"


def _hash8(text):
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def _base_name(svc):
    ns, name = svc["service"].split("/", 1)
    return f"{ns}/{name}/{svc['protocol']}/{svc['port']}"


def service_chain(svc):
    b = _base_name(svc)
    return f"service-{_hash8(b)}-{b}"


def external_chain(svc):
    b = _base_name(svc)
    return f"external-{_hash8(b)}-{b}"


def endpoint_chain(svc, ip):
    b = f"{_base_name(svc)}__{ip}/{svc['target_port']}"
    return f"endpoint-{_hash8(b)}-{b}"


def base_ruleset(service_cidr, node_ips):
    t = TABLE
    lines = [
        f'add table {t} {{ comment "rules for kube-proxy" ; }}',
        f'add set {t} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}',
        f'add set {t} nodeport-ips {{ type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }}',
        f'add map {t} firewall-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}',
        f'add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; }}',
        f'add map {t} no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}',
        f'add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
        f"add chain {t} cluster-ips-check",
        f"add chain {t} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}",
        f"add chain {t} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}",
        f"add chain {t} filter-forward {{ type filter hook forward priority 0 ; }}",
        f"add chain {t} filter-input {{ type filter hook input priority 0 ; }}",
        f"add chain {t} filter-output {{ type filter hook output priority 0 ; }}",
        f"add chain {t} firewall-check",
        f"add chain {t} mark-for-masquerade",
        f"add chain {t} masquerading",
        f"add chain {t} nat-output {{ type nat hook output priority -100 ; }}",
        f"add chain {t} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add chain {t} nodeport-endpoints-check",
        f"add chain {t} reject-chain",
        f"add chain {t} services",
        f"add chain {t} service-endpoints-check",
        f"add rule {t} cluster-ips-check ip daddr @cluster-ips reject",
        f"add rule {t} cluster-ips-check ip daddr {{ {service_cidr} }} drop",
        f"add rule {t} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-forward ct state new jump service-endpoints-check",
        f"add rule {t} filter-forward ct state new jump cluster-ips-check",
        f"add rule {t} filter-input ct state new jump nodeport-endpoints-check",
        f"add rule {t} filter-input ct state new jump service-endpoints-check",
        f"add rule {t} filter-output ct state new jump service-endpoints-check",
        f"add rule {t} filter-output-pre-dnat ct state new jump firewall-check",
        f"add rule {t} filter-output ct state new jump cluster-ips-check",
        f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        f"add rule {t} mark-for-masquerade mark set mark or {MARK}",
        f"add rule {t} masquerading mark and {MARK} == 0 return",
        f"add rule {t} masquerading mark set mark xor {MARK}",
        f"add rule {t} masquerading masquerade fully-random",
        f"add rule {t} nat-output jump services",
        f"add rule {t} nat-postrouting jump masquerading",
        f"add rule {t} nat-prerouting jump services",
        f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"add rule {t} reject-chain reject",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    ]
    for ip in node_ips:
        lines.append(f"add element {t} nodeport-ips {{ {ip} }}")
    return lines


class NftRuleset:
    def __init__(self, services, cluster_cidr, service_cidr, node_ips=("198.18.0.1",)):
        self.services = services
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.node_ips = list(node_ips)

    def service_lines(self, svc, flush=False, endpoints=None):
        """The service port's chains, rules and map elements, chains first (a rule may only
        jump to an existing chain). endpoints: which endpoint chains to create; None = all of
        them (a new service)."""
        t, proto, tp = TABLE, svc["protocol"], svc["target_port"]
        eps = svc["endpoints"]
        new_eps = eps if endpoints is None else endpoints
        sc = service_chain(svc)
        ec = external_chain(svc) if svc["node_port"] else None
        out = [f"add chain {t} {sc}"]
        if ec:
            out.append(f"add chain {t} {ec}")
        out.extend(f"add chain {t} {endpoint_chain(svc, ip)}" for ip in new_eps)
        for ip in new_eps:
            ep = endpoint_chain(svc, ip)
            out.append(f"add rule {t} {ep} ip saddr {ip} jump mark-for-masquerade")
            out.append(f"add rule {t} {ep} meta l4proto {proto} dnat to {ip}:{tp}")
        if flush:
            out.append(f"flush chain {t} {sc}")
        out.append(f"add rule {t} {sc} ip daddr {svc['cluster_ip']} {proto} dport "
                   f"{svc['port_num']} ip saddr != {self.cluster_cidr} jump mark-for-masquerade")
        vmap = " , ".join(f"{i} : goto {endpoint_chain(svc, ip)}" for i, ip in enumerate(eps))
        out.append(f"add rule {t} {sc} numgen random mod {len(eps)} vmap {{ {vmap} }}")
        out.append(f"add element {t} cluster-ips {{ {svc['cluster_ip']} }}")
        out.append(f"add element {t} service-ips {{ {svc['cluster_ip']} . {proto} . "
                   f"{svc['port_num']} : goto {sc} }}")
        if ec:
            if flush:
                out.append(f"flush chain {t} {ec}")
            out.append(f"add rule {t} {ec} jump mark-for-masquerade")
            out.append(f"add rule {t} {ec} goto {sc}")
            out.append(f"add element {t} service-nodeports {{ {proto} . {svc['node_port']} : "
                       f"goto {ec} }}")
        return out

    def cold_text(self):
        lines = base_ruleset(self.service_cidr, self.node_ips)
        for svc in self.services:
            lines.extend(self.service_lines(svc))
        return "\n".join(lines) + "\n"

    def endpoint_change_text(self, svc, added, removed):
        """One transaction as kube-proxy's partial sync writes it for a changed service: the
        service chain flushed and rewritten (its numgen map lists every endpoint), the new
        endpoint's chain created, the stale one deleted."""
        lines = self.service_lines(svc, flush=True, endpoints=added)
        for ip in removed:
            ep = endpoint_chain(svc, ip)
            lines.append(f'flush chain {TABLE} {ep}')
            lines.append(f'delete chain {TABLE} {ep}')
        return "\n".join(lines) + "\n"

    def service_added_text(self, svc):
        return "\n".join(self.service_lines(svc)) + "\n"
