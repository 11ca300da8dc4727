#pragma once

#include "proxier/cmd/run.h"
#include "proxier/config/config.h"

namespace sliceproxy::proxier::cmd {

// The daemon: source -> change tracker -> sync runner -> proxier -> backend, with operations
// and conntrack cleanup beside it, until SIGTERM or SIGINT.
int runDaemon(const Config& cfg, const Extensions& ext);

}  // namespace sliceproxy::proxier::cmd
