#include "slice-watch/manifest_dir_source.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <set>
#include <stdexcept>
#include <system_error>

#include "slice-watch/manifest_file.h"
#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch {

namespace fs = std::filesystem;

namespace {

// Events of one batch reach the sink together, so a sync never sees half of them (a Service
// saved without its slices yet, or a file's old objects deleted before its new ones arrive).
class SinkBatch {
 public:
  explicit SinkBatch(proxier::EventSink& sink) : sink_(sink) { sink_.beginBatch(); }
  ~SinkBatch() { sink_.endBatch(); }
  SinkBatch(const SinkBatch&) = delete;
  SinkBatch& operator=(const SinkBatch&) = delete;

 private:
  proxier::EventSink& sink_;
};

// Built from the same parts a Rejection carries (kind, object), so a rejected object can be
// matched to the version it would have replaced.
std::string idOf(std::string_view kind, const std::string& object) {
  return fmt::format("{} {}", kind, object);
}

}  // namespace

ManifestDirSource::ManifestDirSource(fs::path dir, proxier::EventSink& sink)
    : dir_(std::move(dir)), sink_(sink) {}

ManifestDirSource::~ManifestDirSource() {
  stop();
}

void ManifestDirSource::start() {
  if (watcher_) throw std::logic_error("ManifestDirSource::start called twice");
  // Watch before reading: a change made during the first read is then seen, not lost.
  watcher_ = std::make_unique<DirWatcher>(dir_);
  std::error_code ec;
  fs::directory_iterator probe(dir_, ec);
  if (ec) throw std::system_error(ec, "cannot list " + dir_.string());
  {
    SinkBatch batch(sink_);
    rescanAll();
  }
  sink_.synced();
  thread_ = std::thread([this] { run(); });
}

void ManifestDirSource::stop() {
  if (watcher_) watcher_->wake();
  if (thread_.joinable()) thread_.join();
}

void ManifestDirSource::run() {
  for (;;) {
    DirWatcher::Batch batch;
    try {
      batch = watcher_->wait();
    } catch (const std::exception& e) {
      spdlog::error("manifest directory {}: stopped watching: {}", dir_.string(), e.what());
      return;
    }
    if (batch.stopped) return;
    try {
      SinkBatch together(sink_);
      if (batch.rescanAll) {
        rescanAll();
      } else {
        for (const auto& name : batch.names) {
          if (manifestFormat(name)) processFile(name);
        }
      }
    } catch (const std::exception& e) {
      // Nothing here should throw but allocation; the next change gets a fresh attempt.
      spdlog::error("manifest directory {}: {}", dir_.string(), e.what());
    }
    if (batch.watchLost) {
      spdlog::error("manifest directory {} was removed or moved; keeping the last state",
                    dir_.string());
      return;
    }
  }
}

void ManifestDirSource::rescanAll() {
  std::set<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (manifestFormat(name)) names.insert(std::move(name));
  }
  if (ec) {
    // Not the same as an empty directory: deleting everything on a transient error would be
    // the one outcome worse than doing nothing.
    spdlog::error("manifest directory {}: cannot list: {}", dir_.string(), ec.message());
    return;
  }
  for (const auto& [name, objs] : files_) names.insert(name);  // vanished files
  for (const auto& name : names) processFile(name);
}

void ManifestDirSource::processFile(const std::string& name) {
  fs::path path = dir_ / name;
  std::error_code ec;
  std::vector<DecodeResult> results;
  if (fs::is_regular_file(path, ec)) {  // follows symlinks
    results = decodeManifestFile(path, DecodeOptions{path.string()});
    for (auto& r : results) {
      auto* rej = std::get_if<proxier::Rejection>(&r);
      if (rej && reason::isDocumentLevel(rej->reason)) {
        if (files_.contains(name)) {
          rej->message += "; everything the file defined before stays in effect";
        }
        sink_.rejected(*rej);
        return;
      }
    }
  }

  FileObjects previous;
  if (auto it = files_.find(name); it != files_.end()) previous = std::move(it->second);

  FileObjects fresh;
  for (auto& r : results) {
    if (auto* rej = std::get_if<proxier::Rejection>(&r)) {
      if (!rej->object.empty()) {
        std::string id = idOf(rej->kind, rej->object);
        auto old = previous.find(id);
        if (old != previous.end() && !fresh.contains(id)) {
          fresh.emplace(id, old->second);
          rej->message += "; the previous version stays in effect";
        }
      }
      sink_.rejected(*rej);
      continue;
    }
    auto& obj = std::get<DecodedObject>(r);
    std::string object = obj.key.str();
    std::string id = idOf(obj.kind, object);
    if (fresh.contains(id)) {
      sink_.rejected({path.string(), obj.kind, object, "", std::string(reason::kDuplicateObject),
                      "defined more than once in this file; the first definition is used"});
      continue;
    }
    apply(name, id, obj, previous);
    fresh.emplace(std::move(id), std::move(obj));
  }

  const FileObjects* now = nullptr;
  if (fresh.empty()) {
    files_.erase(name);
  } else {
    now = &(files_[name] = std::move(fresh));
  }
  for (const auto& [id, obj] : previous) {
    if (now && now->contains(id)) continue;
    auto own = owners_.find(id);
    if (own != owners_.end() && own->second == name) release(id, obj, name);
  }
}

void ManifestDirSource::apply(const std::string& name, const std::string& id,
                              const DecodedObject& obj, const FileObjects& previous) {
  auto own = owners_.find(id);
  if (own == owners_.end()) {
    owners_.emplace(id, name);
    deliverUpsert(sink_, obj);
  } else if (own->second == name) {
    auto old = previous.find(id);
    if (old == previous.end() || !sameContent(old->second.object, obj.object)) {
      deliverUpsert(sink_, obj);
    }
  } else {
    sink_.rejected({(dir_ / name).string(), obj.kind, obj.key.str(), "",
                    std::string(reason::kDuplicateObject),
                    fmt::format("already defined in {}; this definition is ignored while that one "
                                "exists",
                                (dir_ / own->second).string())});
  }
}

void ManifestDirSource::release(const std::string& id, const DecodedObject& was,
                                const std::string& fromFile) {
  // Files are ordered by name, the same order the first read used to pick owners.
  for (const auto& [file, objs] : files_) {
    if (file == fromFile) continue;
    auto it = objs.find(id);
    if (it == objs.end()) continue;
    owners_[id] = file;
    if (!sameContent(was.object, it->second.object)) deliverUpsert(sink_, it->second);
    return;
  }
  owners_.erase(id);
  deliverDelete(sink_, was.kind, was.key);
}

}  // namespace sliceproxy::slicewatch
