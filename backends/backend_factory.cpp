#include "backends/backend_factory.h"

#include <iostream>

#include "backends/dryrun/dry_run_backend.h"

namespace sliceproxy::backends {

std::vector<std::string> backendNames() {
  return {"dry-run"};
}

std::unique_ptr<proxier::Backend> makeBackend(const std::string& name,
                                              const proxier::NetworkConfig& /*net*/,
                                              std::string& error) {
  if (name == "dry-run") return std::make_unique<DryRunBackend>(std::cout);
  error = "unknown backend \"" + name + "\"; available: dry-run";
  return nullptr;
}

}  // namespace sliceproxy::backends
