#include <spdlog/spdlog.h>

#include "slice-watch/api_source.h"
#include "slice-watch/kubeconfig.h"
#include "slice-watch/manifest_dir_source.h"
#include "slice-watch/source.h"

namespace sliceproxy::slicewatch {

namespace {

class ManifestSourceAdapter : public Source {
 public:
  ManifestSourceAdapter(std::string dir, uint64_t maxFileBytes, proxier::EventSink& sink)
      : dir_(dir), source_(dir, sink, maxFileBytes) {}
  void start() override { source_.start(); }
  void stop() override { source_.stop(); }
  std::string describe() const override { return "manifest directory " + dir_; }

 private:
  std::string dir_;
  ManifestDirSource source_;
};

// client-go's rules: --kubeconfig (with --master overriding its server), else --master alone
// (no credentials), else the in-cluster service account.
ApiConfig apiConfig(const SourceOptions& opts) {
  if (!opts.kubeconfig.empty()) return loadKubeconfig(opts.kubeconfig, opts.master);
  if (!opts.master.empty()) {
    std::string error;
    auto url = parseServerUrl(opts.master, error);
    if (!url) throw std::runtime_error("--master: " + error);
    ApiConfig cfg;
    cfg.server = *url;
    cfg.origin = "--master " + opts.master;
    return cfg;
  }
  return inClusterConfig();
}

}  // namespace

std::unique_ptr<Source> makeSource(const SourceOptions& opts, proxier::EventSink& sink,
                                   std::string& error) {
  if (!opts.sourceDir.empty()) {
    return std::make_unique<ManifestSourceAdapter>(opts.sourceDir, opts.manifestMaxFileBytes, sink);
  }
  try {
    ApiSourceOptions apiOpts;
    apiOpts.nodeName = opts.nodeName;
    apiOpts.serviceProxyName = opts.serviceProxyName;
    return std::make_unique<ApiSource>(apiConfig(opts), std::move(apiOpts), sink);
  } catch (const std::exception& e) {
    error = e.what();
    return nullptr;
  }
}

}  // namespace sliceproxy::slicewatch
