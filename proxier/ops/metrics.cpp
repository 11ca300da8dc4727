#include "proxier/ops/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/text_serializer.h>

#include <algorithm>

#include "proxier/core/node_state.h"

namespace sliceproxy::proxier {

namespace prom = prometheus;

namespace {

std::vector<double> exponential(double start, double factor, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i, start *= factor) b.push_back(start);
  return b;
}

std::vector<double> linear(double start, double width, int count) {
  std::vector<double> b;
  for (int i = 0; i < count; ++i) b.push_back(start + width * i);
  return b;
}

// kube-proxy's NetworkProgrammingLatency buckets.
std::vector<double> networkProgrammingBuckets() {
  std::vector<double> b = linear(0.25, 0.25, 2);
  for (auto v : linear(1, 1, 59)) b.push_back(v);
  for (auto v : linear(60, 5, 12)) b.push_back(v);
  for (auto v : linear(300, 10, 12)) b.push_back(v);
  return b;
}

prom::MetricFamily family(std::string name, std::string help, prom::MetricType type) {
  prom::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

prom::ClientMetric value(double v, prom::MetricType type,
                         std::vector<prom::ClientMetric::Label> labels = {}) {
  prom::ClientMetric m;
  m.label = std::move(labels);
  if (type == prom::MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  return m;
}

}  // namespace

// Families computed at scrape time from counters other components keep.
class Metrics::Live : public prom::Collectable {
 public:
  explicit Live(const Metrics& m) : m_(m) {}
  std::vector<prom::MetricFamily> Collect() const override {
    std::vector<prom::MetricFamily> out;
    uint64_t svcTotal = 0, epTotal = 0;
    std::map<std::string, uint64_t> rejected;
    std::map<std::pair<std::string, std::string>, uint64_t> skipped;
    if (m_.tracker_) {
      skipped = m_.tracker_->skippedValues();
      svcTotal = m_.tracker_->counters().serviceChanges.load();
      epTotal = m_.tracker_->counters().endpointSliceChanges.load();
      rejected = m_.tracker_->rejectionsByReason();
    }
    auto pending = [](uint64_t total, uint64_t taken) {
      return total > taken ? static_cast<double>(total - taken) : 0.0;
    };
    using T = prom::MetricType;
    auto add = [&](const char* name, const char* help, T type, double v) {
      auto f = family(name, help, type);
      f.metric.push_back(value(v, type));
      out.push_back(std::move(f));
    };
    add("kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "Pending proxy rules Endpoint changes", T::Gauge,
        pending(epTotal, m_.takenSliceEvents_.load()));
    add("kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "Cumulative proxy rules Endpoint changes", T::Counter, static_cast<double>(epTotal));
    add("kubeproxy_sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes",
        T::Gauge, pending(svcTotal, m_.takenServiceEvents_.load()));
    add("kubeproxy_sync_proxy_rules_service_changes_total",
        "Cumulative proxy rules Service changes", T::Counter, static_cast<double>(svcTotal));
    auto rej =
        family("sliceproxy_objects_rejected_total",
               "Services, EndpointSlices and Nodes rejected as invalid, by reason", T::Counter);
    for (const auto& [reason, n] : rejected) {
      rej.metric.push_back(value(static_cast<double>(n), T::Counter, {{"reason", reason}}));
    }
    out.push_back(std::move(rej));
    auto skip = family("sliceproxy_object_values_skipped_total",
                       "Values left out of accepted objects (one externalIP, source range or port "
                       "that cannot be used), by kind and reason",
                       T::Counter);
    for (const auto& [key, n] : skipped) {
      skip.metric.push_back(
          value(static_cast<double>(n), T::Counter, {{"kind", key.first}, {"reason", key.second}}));
    }
    out.push_back(std::move(skip));
    if (m_.flows_) {
      // A full record stops recording new flows; cleanup then falls back to walking conntrack.
      const auto fill = m_.flows_->fill();
      if (fill.known) {
        add("sliceproxy_flow_record_flows",
            "UDP/SCTP flows in the record of translated flows (the fuller family)", T::Gauge,
            static_cast<double>(fill.flows));
        add("sliceproxy_flow_record_capacity", "Capacity of the flow record (--flow-record-max)",
            T::Gauge, static_cast<double>(fill.capacity));
        add("sliceproxy_flow_record_fill_ratio", "Flows in the record over its capacity", T::Gauge,
            fill.capacity ? static_cast<double>(fill.flows) / static_cast<double>(fill.capacity)
                          : 0.0);
      }
    }
    return out;
  }

 private:
  const Metrics& m_;
};

Metrics::Metrics(std::string backendName, const ChangeTracker* tracker)
    : registry_(std::make_shared<prom::Registry>()),
      live_(std::make_shared<Live>(*this)),
      backend_(std::move(backendName)),
      tracker_(tracker) {
  auto& r = *registry_;
  const auto syncBuckets = exponential(0.001, 2, 15);
  syncDuration_ = &prom::BuildHistogram()
                       .Name("kubeproxy_sync_proxy_rules_duration_seconds")
                       .Help("SyncProxyRules latency in seconds")
                       .Register(r)
                       .Add({}, syncBuckets);
  syncFull_ = &prom::BuildHistogram()
                   .Name("kubeproxy_sync_full_proxy_rules_duration_seconds")
                   .Help("SyncProxyRules latency in seconds for full resyncs")
                   .Register(r)
                   .Add({}, syncBuckets);
  syncPartial_ = &prom::BuildHistogram()
                      .Name("kubeproxy_sync_partial_proxy_rules_duration_seconds")
                      .Help("SyncProxyRules latency in seconds for partial resyncs")
                      .Register(r)
                      .Add({}, syncBuckets);
  netProgramming_ = &prom::BuildHistogram()
                         .Name("kubeproxy_network_programming_duration_seconds")
                         .Help(
                             "In Cluster Network Programming Latency in seconds: from an "
                             "EndpointSlice's last-change-trigger-time (or, without one, the "
                             "arrival of the change) to the sync that programmed it")
                         .Register(r)
                         .Add({}, networkProgrammingBuckets());
  netProgrammingQuantiles_ =
      &prom::BuildSummary()
           .Name("sliceproxy_network_programming_duration_seconds")
           .Help(
               "kubeproxy_network_programming_duration_seconds as quantiles over the last 5 "
               "to 10 minutes")
           .Register(r)
           .Add({}, prom::Summary::Quantiles{{0.5, 0.01}, {0.9, 0.005}, {0.99, 0.001}},
                // Two age buckets: each observation is inserted into every bucket (~0.5 us each).
                std::chrono::minutes(10), 2);
  lastTimestamp_ = &prom::BuildGauge()
                        .Name("kubeproxy_sync_proxy_rules_last_timestamp_seconds")
                        .Help("The last time proxy rules were successfully synced")
                        .Register(r)
                        .Add({});
  lastQueued_ = &prom::BuildGauge()
                     .Name("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds")
                     .Help("The last time a sync of proxy rules was queued")
                     .Register(r)
                     .Add({});
  auto& noLocal = prom::BuildGauge()
                      .Name("kubeproxy_sync_proxy_rules_no_local_endpoints_total")
                      .Help("Number of services with a Local traffic policy and no endpoints")
                      .Register(r);
  noLocalInternal_ = &noLocal.Add({{"traffic_policy", "internal"}});
  noLocalExternal_ = &noLocal.Add({{"traffic_policy", "external"}});
  healthz_ = &prom::BuildCounter()
                  .Name("kubeproxy_proxy_healthz_total")
                  .Help("Cumulative proxy healthz HTTP status")
                  .Register(r);
  livez_ = &prom::BuildCounter()
                .Name("kubeproxy_proxy_livez_total")
                .Help("Cumulative proxy livez HTTP status")
                .Register(r);
  for (const char* code : {"200", "503"}) {
    healthz_->Add({{"code", code}});
    livez_->Add({{"code", code}});
  }
  kernelOps_ = &prom::BuildCounter()
                    .Name("sliceproxy_kernel_operations_total")
                    .Help("Kernel objects added, changed or removed by the data plane")
                    .Register(r)
                    .Add({{"backend", backend_}});
  kernelOpsPerSync_ = &prom::BuildHistogram()
                           .Name("sliceproxy_sync_kernel_operations")
                           .Help("Kernel objects added, changed or removed per sync")
                           .Register(r)
                           .Add({{"backend", backend_}}, exponential(1, 4, 10));
  syncFailures_ = &prom::BuildCounter()
                       .Name("sliceproxy_sync_failures_total")
                       .Help("Syncs the data plane rejected (the next sync is a full one)")
                       .Register(r)
                       .Add({{"backend", backend_}});
  if (backend_ == "nftables") {
    nftablesSyncFailures_ = &prom::BuildCounter()
                                 .Name("kubeproxy_sync_proxy_rules_nftables_sync_failures_total")
                                 .Help("Cumulative proxy nftables sync failures")
                                 .Register(r)
                                 .Add({});
  }
  repairs_ = &prom::BuildCounter()
                  .Name("sliceproxy_data_plane_repairs_total")
                  .Help(
                      "Full syncs that reprogrammed what another program had removed from the "
                      "kernel (nft flush ruleset and the like)")
                  .Register(r)
                  .Add({{"backend", backend_}});
  conntrackDeleted_ = &prom::BuildCounter()
                           .Name("sliceproxy_conntrack_entries_deleted_total")
                           .Help("Stale UDP conntrack entries deleted after syncs")
                           .Register(r)
                           .Add({});
  conntrackErrors_ = &prom::BuildCounter()
                          .Name("sliceproxy_conntrack_cleanup_errors_total")
                          .Help("Conntrack deletes and reads that failed during stale-flow cleanup")
                          .Register(r)
                          .Add({});
  frontendConflicts_ = &prom::BuildGauge()
                            .Name("sliceproxy_service_frontend_conflicts")
                            .Help(
                                "Frontends (address:port or nodePort) a Service claims and does "
                                "not get because an older Service has them")
                            .Register(r)
                            .Add({});
  hcBindFailures_ = &prom::BuildCounter()
                         .Name("sliceproxy_healthcheck_port_bind_failures_total")
                         .Help(
                             "healthCheckNodePort listeners that could not be bound (each is "
                             "retried every 5 s)")
                         .Register(r)
                         .Add({});
  reconnects_ = &prom::BuildCounter()
                     .Name("sliceproxy_watch_reconnects_total")
                     .Help("Watches of the API server re-established, by resource")
                     .Register(r);
  relists_ = &prom::BuildCounter()
                  .Name("sliceproxy_watch_relists_total")
                  .Help("Full relists from the API server (e.g. after 410 Gone), by resource")
                  .Register(r);
  for (const char* res : {"services", "endpointslices", "nodes"}) {
    reconnects_->Add({{"resource", res}});
    relists_->Add({{"resource", res}});
  }
}

Metrics::~Metrics() = default;

void Metrics::queued() {
  lastQueued_->Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
}

void Metrics::healthServed(bool livez, unsigned code) {
  (livez ? livez_ : healthz_)->Add({{"code", std::to_string(code)}}).Increment();
}

void Metrics::watchReconnected(const std::string& resource) {
  reconnects_->Add({{"resource", resource}}).Increment();
}

void Metrics::relisted(const std::string& resource) {
  relists_->Add({{"resource", resource}}).Increment();
}

void Metrics::healthCheckBindFailed() {
  hcBindFailures_->Increment();
}

void Metrics::conntrackErrors(uint64_t n) {
  conntrackErrors_->Increment(static_cast<double>(n));
}

void Metrics::conntrackEntriesDeleted(uint64_t n) {
  conntrackDeleted_->Increment(static_cast<double>(n));
}

void Metrics::onSync(const SyncReport& report) {
  takenServiceEvents_ += report.serviceEvents;
  takenSliceEvents_ += report.sliceEvents;
  if (!report.repaired.empty()) repairs_->Increment();
  if (!report.ok) {
    syncFailures_->Increment();
    if (nftablesSyncFailures_) nftablesSyncFailures_->Increment();
    return;
  }
  const double took = report.took.count();
  if (report.state) frontendConflicts_->Set(static_cast<double>(report.state->conflicts().lost()));
  syncDuration_->Observe(took);
  (report.full ? syncFull_ : syncPartial_)->Observe(took);
  lastTimestamp_->Set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  if (report.programmed) {
    kernelOps_->Increment(static_cast<double>(report.operations));
    kernelOpsPerSync_->Observe(static_cast<double>(report.operations));
  }
  // One observation per change, as kube-proxy makes one per trigger time.
  const auto now = std::chrono::system_clock::now();
  for (const auto& started : report.changeStarts) {
    // A wall clock stepped back must not produce a negative latency.
    const double s = std::max(0.0, std::chrono::duration<double>(now - started).count());
    netProgramming_->Observe(s);
    netProgrammingQuantiles_->Observe(s);
  }
  // Services with a Local policy and no local endpoints, kept per port and updated from the diff.
  std::lock_guard lock(mu_);
  auto account = [&](const ServicePortView& v) {
    const auto& info = v.info();
    const bool internal = info && info->internalPolicyLocal;
    const bool external = info && info->externalPolicyLocal && info->externallyAccessible();
    if ((internal || external) && v.hasAnyEndpoints() && v.localCount() == 0) {
      noLocal_[v.key()] = {internal, external};
    } else {
      noLocal_.erase(v.key());
    }
  };
  if (report.full || !report.diff) {
    noLocal_.clear();
    if (report.state) {
      for (const ServicePortView* v : report.state->state().ports) account(*v);
    }
  } else {
    for (const auto& u : report.diff->upserts) account(*u.view);
    for (const auto& d : report.diff->deletes) noLocal_.erase(d.key);
  }
  size_t in = 0, ex = 0;
  for (const auto& [k, v] : noLocal_) {
    in += v.first;
    ex += v.second;
  }
  noLocalInternal_->Set(static_cast<double>(in));
  noLocalExternal_->Set(static_cast<double>(ex));
}

std::string Metrics::render() const {
  auto families = registry_->Collect();
  for (auto& f : live_->Collect()) families.push_back(std::move(f));
  return prom::TextSerializer().Serialize(families);
}

HttpResponse Metrics::respond() const {
  return {200, "text/plain; version=0.0.4; charset=utf-8", {}, render()};
}

}  // namespace sliceproxy::proxier
