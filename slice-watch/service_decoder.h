#pragma once
// Internal to the decoders: Service v1 spec and status.

#include <memory>
#include <optional>

#include "proxier/core/events.h"
#include "slice-watch/json_reader.h"
#include "slice-watch/object_meta.h"

namespace sliceproxy::slicewatch::detail {

class ServiceDecoder {
 public:
  explicit ServiceDecoder(Reader& r) : r_(r) {}
  // A top-level field other than apiVersion, kind and metadata; unknown ones are ignored.
  void field(Field& f);
  // Cross-field rules, once every field has been seen (JSON objects have no field order).
  proxier::ServicePtr finish(ObjectMeta&& meta);

 private:
  void spec(od::value& v);
  // false: a port to leave out (its protocol is unknown), reported in Service::skipped.
  bool port(od::value& v, proxier::ServicePortSpec& out);
  void clusterIPs(od::value& v);
  void ingress(od::value& v, proxier::LoadBalancerIngress& out);
  proxier::TrafficPolicy trafficPolicy(od::value& v);

  Reader& r_;
  std::shared_ptr<proxier::Service> svc_ = std::make_shared<proxier::Service>();
  // spec.clusterIP, kept apart because spec.clusterIPs wins when both are present.
  std::optional<proxier::IpAddr> clusterIP_;
  bool clusterIPNone_ = false;
  bool haveClusterIPs_ = false;
};

}  // namespace sliceproxy::slicewatch::detail
