#pragma once
// Internal to the decoders: discovery.k8s.io/v1 EndpointSlice.

#include <memory>
#include <optional>
#include <string>

#include "proxier/core/events.h"
#include "slice-watch/json_reader.h"
#include "slice-watch/object_meta.h"

namespace sliceproxy::slicewatch::detail {

class EndpointSliceDecoder {
 public:
  explicit EndpointSliceDecoder(Reader& r) : r_(r) {}
  void field(Field& f);
  proxier::SlicePtr finish(ObjectMeta&& meta);

 private:
  void endpoint(od::value& v, proxier::Endpoint& out);
  void address(od::value& v, proxier::Endpoint& out);
  void port(od::value& v);

  Reader& r_;
  std::shared_ptr<proxier::EndpointSlice> slice_ = std::make_shared<proxier::EndpointSlice>();
  std::optional<proxier::AddressType> addressType_;
  // The API server writes addressType before endpoints, but a hand-written manifest may not. An
  // address that does not parse before addressType is known is an error only if the slice turns
  // out not to be FQDN, so the first one waits here.
  struct PendingBadAddress {
    std::string field;
    std::string text;
  };
  std::optional<PendingBadAddress> pendingBad_;
};

}  // namespace sliceproxy::slicewatch::detail
