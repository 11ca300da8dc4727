#pragma once
// Internal to the decoders: Node v1 (addresses, pod CIDRs, taints, deletion).

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "proxier/core/events.h"
#include "slice-watch/json_reader.h"
#include "slice-watch/object_meta.h"

namespace sliceproxy::slicewatch::detail {

class NodeDecoder {
 public:
  explicit NodeDecoder(Reader& r) : r_(r) {}
  void field(Field& f);
  proxier::NodePtr finish(ObjectMeta&& meta);

 private:
  void spec(od::value& v);
  void address(od::value& v);
  std::optional<proxier::Cidr> cidrOrSkip(std::string_view text);

  Reader& r_;
  std::shared_ptr<proxier::Node> node_ = std::make_shared<proxier::Node>();
  // spec.podCIDR, kept apart because spec.podCIDRs wins when both are present.
  std::optional<proxier::Cidr> podCIDR_;
  bool havePodCIDRs_ = false;
};

}  // namespace sliceproxy::slicewatch::detail
