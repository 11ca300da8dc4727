#pragma once
// What the decoders produce: one typed object, or one Rejection saying why an input could not
// become one. Decoders return a sequence of these so one bad item never loses the others.

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "proxier/core/events.h"
#include "proxier/model/object_key.h"

namespace sliceproxy::slicewatch {

using ObjectPtr = std::variant<proxier::ServicePtr, proxier::SlicePtr, proxier::NodePtr>;

inline constexpr std::string_view kKindService = "Service";
inline constexpr std::string_view kKindEndpointSlice = "EndpointSlice";
inline constexpr std::string_view kKindNode = "Node";

struct DecodedObject {
  std::string kind;  // kKindService, kKindEndpointSlice or kKindNode
  proxier::ObjectKey key;
  ObjectPtr object;
};

using DecodeResult = std::variant<DecodedObject, proxier::Rejection>;

struct DecodeOptions {
  std::string origin;  // copied into every Rejection (a file path, an API resource)
};

// True when both hold the same kind with equal content: what a source compares to decide
// whether an object really changed. Formatting, field order and fields the model does not keep
// (annotations, managedFields) make no difference, so they cause no event.
bool sameContent(const ObjectPtr& a, const ObjectPtr& b);

// Hands one decoded object to the sink method for its kind.
void deliverUpsert(proxier::EventSink& sink, const DecodedObject& obj);
// Hands a delete of kind/key to the sink; kinds other than the three are ignored.
void deliverDelete(proxier::EventSink& sink, std::string_view kind, const proxier::ObjectKey& key);

}  // namespace sliceproxy::slicewatch
