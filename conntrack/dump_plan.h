#pragma once
// Which kernel-filtered walks of the conntrack table find every flow a set of selectors names.
// A walk costs O(every entry of every namespace) in the kernel, whatever the filter, while the
// filter decides how many flows come back; so the plan minimises walks first: one per removed
// endpoint (filtered by the reply source) or one per frontend (filtered by the original
// destination), whichever needs fewer, and past `maxWalks`, one per protocol and family.

#include <span>
#include <vector>

#include "conntrack/ctnetlink.h"
#include "conntrack/selector.h"

namespace sliceproxy::conntrack {

std::vector<DumpFilter> planDumps(std::span<const FlowSelector> selectors, size_t maxWalks);

}  // namespace sliceproxy::conntrack
