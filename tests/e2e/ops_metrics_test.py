#!/usr/bin/env python3
"""Issue 6, metrics: every listed metric is present on /metrics of the running daemon, a real
Prometheus text-format parser (Debian's python3-prometheus-client) accepts the page, and the
sync metrics move after syncs. Run it with Debian's /usr/bin/python3."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops_common import Daemon, node_manifest, wait_for  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

WEB = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  internalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.244.2.{last}"]
    nodeName: node-b
"""

BAD = """
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: default}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: http, port: 99999}]
"""

# family name as the parser reports it (counters lose _total) -> type
EXPECTED = {
    "kubeproxy_sync_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_full_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_partial_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_network_programming_duration_seconds": "histogram",
    "sliceproxy_network_programming_duration_seconds": "summary",
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": "gauge",
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "gauge",
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_endpoint_changes": "counter",
    "kubeproxy_sync_proxy_rules_service_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_service_changes": "counter",
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": "gauge",
    "kubeproxy_proxy_healthz": "counter",
    "kubeproxy_proxy_livez": "counter",
    "sliceproxy_kernel_operations": "counter",
    "sliceproxy_sync_kernel_operations": "histogram",
    "sliceproxy_sync_failures": "counter",
    "sliceproxy_data_plane_repairs": "counter",
    "sliceproxy_conntrack_entries_deleted": "counter",
    "sliceproxy_objects_rejected": "counter",
    "sliceproxy_watch_reconnects": "counter",
    "sliceproxy_watch_relists": "counter",
}


def parse(text):
    """{family: type} and {(sample name, frozenset(labels)): value}."""
    families, samples = {}, {}
    for fam in text_string_to_metric_families(text):
        families[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return families, samples


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


class MetricsTest(unittest.TestCase):
    def test_metrics(self):
        d = Daemon({"node.yaml": node_manifest(), "web.yaml": WEB.replace("{last}", "10"),
                    "bad.yaml": BAD})
        try:
            wait_for(lambda: d.health()[1]["lastUpdated"], what="first sync")
            families, s = parse(d.scrape())
            for name, kind in EXPECTED.items():
                self.assertEqual(families.get(name), kind, name)
            # Buckets as kube-proxy's.
            self.assertIsNotNone(val(s, "kubeproxy_sync_proxy_rules_duration_seconds_bucket", le="0.001"))
            self.assertIsNotNone(val(s, "kubeproxy_sync_proxy_rules_duration_seconds_bucket", le="16.384"))
            self.assertIsNotNone(val(s, "kubeproxy_network_programming_duration_seconds_bucket", le="0.25"))
            self.assertIsNotNone(val(s, "kubeproxy_network_programming_duration_seconds_bucket", le="410"))
            self.assertEqual(val(s, "kubeproxy_sync_full_proxy_rules_duration_seconds_count"), 1)
            self.assertEqual(val(s, "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                                 traffic_policy="internal"), 1)
            self.assertGreater(val(s, "sliceproxy_kernel_operations_total", backend="dry-run"), 0)
            rejected = [v for (n, l), v in s.items() if n == "sliceproxy_objects_rejected_total"]
            self.assertEqual(sum(rejected), 1, s)
            self.assertEqual(val(s, "sliceproxy_watch_relists_total", resource="services"), 0)
            t0 = val(s, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
            syncs0 = val(s, "kubeproxy_sync_proxy_rules_duration_seconds_count")
            ep0 = val(s, "kubeproxy_sync_proxy_rules_endpoint_changes_total")
            np0 = val(s, "kubeproxy_network_programming_duration_seconds_count")
            ops0 = val(s, "sliceproxy_kernel_operations_total", backend="dry-run")
            hz0 = val(s, "kubeproxy_proxy_healthz_total", code="200")

            d.health()
            # A local endpoint appears: a partial sync; metrics move.
            d.write("web.yaml", WEB.replace("{last}", "10").replace(
                'nodeName: node-b', 'nodeName: node-b\n  - addresses: ["10.244.1.10"]\n    nodeName: node-a'))

            def moved():
                _, s2 = parse(d.scrape())
                return s2 if val(s2, "kubeproxy_sync_partial_proxy_rules_duration_seconds_count") else None
            s = wait_for(moved, what="a partial sync")
            self.assertGreater(val(s, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"), t0)
            self.assertGreater(val(s, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds"), 0)
            self.assertGreater(val(s, "kubeproxy_sync_proxy_rules_duration_seconds_count"), syncs0)
            self.assertGreater(val(s, "kubeproxy_sync_proxy_rules_endpoint_changes_total"), ep0)
            self.assertEqual(val(s, "kubeproxy_sync_proxy_rules_endpoint_changes_pending"), 0)
            self.assertEqual(val(s, "kubeproxy_sync_proxy_rules_service_changes_pending"), 0)
            self.assertGreater(val(s, "kubeproxy_network_programming_duration_seconds_count"), np0)
            self.assertGreater(val(s, "sliceproxy_kernel_operations_total", backend="dry-run"), ops0)
            self.assertEqual(val(s, "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                                 traffic_policy="internal"), 0)
            self.assertGreater(val(s, "kubeproxy_proxy_healthz_total", code="200"), hz0)
        finally:
            d.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
