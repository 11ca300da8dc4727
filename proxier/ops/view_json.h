#pragma once
// JSON renderings of the node-local model, shared by the dry-run backend and debug endpoints.

#include <boost/json.hpp>
#include <string>

#include "proxier/core/backend.h"
#include "proxier/core/diff.h"

namespace sliceproxy::proxier {

std::string endpointString(const EndpointKey& k);  // 10.0.0.1:80, [fd00::1]:80
boost::json::array setNames(uint8_t sets);
boost::json::object infoToJson(const ServicePortInfo& info);
// The port's frontends and policy plus its internal and external endpoint lists, sorted.
boost::json::object viewToJson(const ServicePortView& view);
boost::json::object upsertToJson(const ServicePortUpsert& u);
boost::json::object deleteToJson(const ServicePortDelete& d);
boost::json::object nodeToJson(const NodeContext& node);
// {"backend": name, "supported": [...], "unsupported": [...]}, feature names as featureName().
std::string capabilitiesJson(const Backend& backend);

}  // namespace sliceproxy::proxier
