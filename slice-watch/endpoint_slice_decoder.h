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
  void skipUnusable(proxier::EndpointSlice& s);

  Reader& r_;
  std::shared_ptr<proxier::EndpointSlice> slice_ = std::make_shared<proxier::EndpointSlice>();
  std::optional<proxier::AddressType> addressType_;
  // kube-proxy leaves out an endpoint it cannot use and serves the rest of the slice. Whether an
  // address is bad depends on addressType, which a hand-written manifest may put after the
  // endpoints, so bad addresses wait here until finish().
  struct BadAddress {
    size_t endpoint;
    std::string field;
    std::string text;
  };
  std::vector<BadAddress> badAddresses_;
  std::vector<std::pair<size_t, std::string>> noAddress_;  // endpoint index, field
  size_t endpoint_ = 0;                                    // the endpoint being decoded
};

}  // namespace sliceproxy::slicewatch::detail
