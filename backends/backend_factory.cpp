#include "backends/backend_factory.h"

#include <iostream>

#include "backends/dryrun/dry_run_backend.h"
#include "backends/nftables/nftables_backend.h"

namespace sliceproxy::backends {

std::vector<std::string> backendNames() {
  return {"nftables", "dry-run"};
}

std::unique_ptr<proxier::Backend> makeBackend(const std::string& name,
                                              const proxier::NetworkConfig& net,
                                              std::string& error) {
  if (name == "dry-run") return std::make_unique<DryRunBackend>(std::cout);
  if (name == "nftables") {
    try {
      return std::make_unique<nft::NftablesBackend>(net);
    } catch (const std::exception& e) {
      error = std::string("nftables backend: ") + e.what();
      return nullptr;
    }
  }
  error = "unknown backend \"" + name + "\"; available: nftables, dry-run";
  return nullptr;
}

}  // namespace sliceproxy::backends
