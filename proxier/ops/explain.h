#pragma once
// `sliceproxy explain ADDRESS:PORT[/tcp|udp] [--from SOURCE]`: what a packet to that address
// would meet on this node, answered by the running daemon from its node-local view.

#include <boost/json.hpp>
#include <optional>
#include <string>

#include "proxier/core/backend.h"
#include "proxier/config/network_config.h"
#include "proxier/core/node_state.h"

namespace sliceproxy::proxier {

struct ExplainQuery {
  IpAddr address;
  uint16_t port = 0;
  Protocol protocol = Protocol::TCP;
  std::optional<IpAddr> from;
};

// ADDRESS:PORT[/tcp|udp|sctp], [v6]:PORT too; error set on failure.
std::optional<ExplainQuery> parseExplainTarget(const std::string& target, const std::string& from,
                                               std::string& error);

// Call with the proxier's state lock held.
boost::json::object explain(const ExplainQuery& q, const NodeState& state, const Backend& backend,
                            const NetworkConfig& net);

// The human-readable rendering of explain()'s JSON.
std::string explainText(const boost::json::object& e);

}  // namespace sliceproxy::proxier
