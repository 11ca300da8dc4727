#pragma once
// JSON renderings of the node-local model, shared by the dry-run backend and debug endpoints.

#include <boost/json.hpp>
#include <string>

#include "proxier/core/backend.h"
#include "proxier/core/backend_registry.h"
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
// {"backend": name, "supported": [...], "unsupported": [...], "kernel": {...}}, feature names
// as featureName(); "kernel" says whether this host can run it and, if not, what is missing.
std::string capabilitiesJson(const BackendInfo& backend);
// `sliceproxy backends`: every registry entry with its mode, cleaner and kernel support.
std::string backendsJson(BackendRegistry registry);

}  // namespace sliceproxy::proxier
