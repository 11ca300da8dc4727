#include "conntrack/planner.h"

#include "conntrack/frontends.h"

namespace sliceproxy::conntrack {

namespace {

const Frontend* findFrontend(const Frontends& fs, const Frontend& f) {
  for (const auto& o : fs) {
    if (o.nodePort == f.nodePort && o.ip == f.ip && o.port == f.port) return &o;
  }
  return nullptr;
}

FlowSelector selectorFor(StaleReason reason, const proxier::ServicePortInfoPtr& info,
                         const Frontend& f) {
  FlowSelector s;
  s.reason = reason;
  s.family = info->key.port.family;
  s.proto = ipProto(info->key.port.protocol);
  s.anyLocalAddress = f.nodePort;
  if (!f.nodePort) s.dst = f.ip;
  s.dport = f.port;
  s.service = info;
  return s;
}

}  // namespace

bool servingChanged(const proxier::ServicePortInfo& before, const proxier::ServicePortInfo& after) {
  for (FrontendKind k : {FrontendKind::Internal, FrontendKind::External}) {
    if (servingSets(before, k) != servingSets(after, k)) return true;
  }
  return false;
}

void planTransition(const PortTransition& t, std::vector<FlowSelector>& out) {
  const Frontends before = t.before ? frontendsOf(*t.before) : Frontends();
  const Frontends after = t.after ? frontendsOf(*t.after) : Frontends();

  for (const auto& f : before) {
    if (!findFrontend(after, f))
      out.push_back(selectorFor(StaleReason::FrontendRemoved, t.before, f));
  }
  for (const auto& f : after) {
    const Frontend* old = findFrontend(before, f);
    const uint32_t servedBefore =
        old ? servingCount(*t.before, old->kind, t.beforeCluster, t.beforeLocal) : 0;
    const uint32_t servedAfter = servingCount(*t.after, f.kind, t.afterCluster, t.afterLocal);
    if (servedBefore == 0 && servedAfter > 0) {
      out.push_back(selectorFor(StaleReason::Untranslated, t.after, f));
    }
    if (!old) continue;
    const uint8_t setsBefore = servingSets(*t.before, old->kind);
    const uint8_t setsAfter = servingSets(*t.after, f.kind);
    for (const auto& e : t.endpoints) {
      if ((e.before & setsBefore) && !(e.after & setsAfter)) {
        FlowSelector s = selectorFor(StaleReason::EndpointGone, t.after, f);
        s.endpoint = e.key.ip;
        s.endpointPort = e.key.port;
        out.push_back(std::move(s));
      }
    }
  }
}

}  // namespace sliceproxy::conntrack
