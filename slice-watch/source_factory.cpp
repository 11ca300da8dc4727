#include "slice-watch/manifest_dir_source.h"
#include "slice-watch/source.h"

namespace sliceproxy::slicewatch {

namespace {

class ManifestSourceAdapter : public Source {
 public:
  ManifestSourceAdapter(std::string dir, proxier::EventSink& sink)
      : dir_(dir), source_(dir, sink) {}
  void start() override { source_.start(); }
  void stop() override { source_.stop(); }
  std::string describe() const override { return "manifest directory " + dir_; }

 private:
  std::string dir_;
  ManifestDirSource source_;
};

}  // namespace

std::unique_ptr<Source> makeSource(const SourceOptions& opts, proxier::EventSink& sink,
                                   std::string& error) {
  if (!opts.sourceDir.empty()) return std::make_unique<ManifestSourceAdapter>(opts.sourceDir, sink);
  error = "no source: pass --source-dir DIR (the Kubernetes API source is not built yet)";
  return nullptr;
}

}  // namespace sliceproxy::slicewatch
