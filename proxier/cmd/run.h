#pragma once
// The whole sliceproxy command line: flags, configuration file, subcommands and the daemon.
// main.cpp runs it as is; a test build (tests/support/) runs it with extensions.

#include <functional>
#include <memory>

#include "proxier/core/backend.h"

namespace CLI {
class App;
}

namespace sliceproxy::proxier::cmd {

// What a test build adds to the product's composition; the product adds nothing.
struct Extensions {
  // Registers extra, hidden flags.
  std::function<void(CLI::App&)> addFlags;
  // Wraps the backend the daemon syncs through (fault injection); returning null keeps it.
  std::function<std::unique_ptr<Backend>(Backend&)> wrapBackend;
  // True: start without checking the backend's Linux capabilities, so a test can see what the
  // kernel itself refuses without one of them.
  std::function<bool()> skipCapabilityCheck;
};

int run(int argc, char** argv, const Extensions& ext = {});

}  // namespace sliceproxy::proxier::cmd
