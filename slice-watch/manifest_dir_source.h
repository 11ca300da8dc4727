#pragma once
// A source that serves the Services, EndpointSlices and Nodes described by the *.yaml, *.yml
// and *.json files of one directory (not recursive), and follows edits to them with inotify.
// For standalone nodes, demos and benchmarks.
//
// Semantics:
// - A file's objects are upserted when they appear or their content changes, and deleted when
//   they leave the file or the file is removed. Content is compared as decoded (sameContent):
//   reformatting a file, reordering fields or touching fields the model does not keep produces
//   no event. Events follow the order of the objects in the file.
// - An object defined in two files belongs to the file read first (files are read in name
//   order at start); the other definition is rejected (duplicate_object) and takes over only
//   if the owner stops defining it.
// - Bad input costs only itself, and costs the last good state nothing: an object that fails
//   to decode is rejected and its previous version from the same file stays in effect, and a
//   file that cannot be read or parsed at all is rejected once while everything it defined
//   before stays in effect. Every Rejection has origin = the file's path.
// - Rejections are reported each time the file holding them is read.
// - The first read is one sink batch (beginBatch/endBatch) followed by synced(); after that,
//   each burst of changes (every file touched within the watcher's settle window) is one batch.

#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxier/core/events.h"
#include "slice-watch/decoded_object.h"
#include "slice-watch/dir_watcher.h"

namespace sliceproxy::slicewatch {

class ManifestDirSource {
 public:
  ManifestDirSource(std::filesystem::path dir, proxier::EventSink& sink);
  ~ManifestDirSource();  // stops
  ManifestDirSource(const ManifestDirSource&) = delete;
  ManifestDirSource& operator=(const ManifestDirSource&) = delete;

  // Reads every manifest, delivers the upserts and synced() on the calling thread, then follows
  // changes on a thread of its own. Throws std::system_error if the directory cannot be
  // watched, std::logic_error if called twice.
  void start();
  // Idempotent; returns once the watching thread has exited.
  void stop();

 private:
  // What one file defines, by object id (see idOf), whether or not it owns each object.
  using FileObjects = std::map<std::string, DecodedObject>;

  void run();
  void rescanAll();
  void processFile(const std::string& name);
  // Applies one object defined by file `name`; `previous` is what that file defined before.
  void apply(const std::string& name, const std::string& id, const DecodedObject& obj,
             const FileObjects& previous);
  void release(const std::string& id, const DecodedObject& was, const std::string& fromFile);

  std::filesystem::path dir_;
  proxier::EventSink& sink_;
  std::unique_ptr<DirWatcher> watcher_;
  std::thread thread_;
  // Touched only by start() before the thread exists, then only by the thread.
  std::map<std::string, FileObjects> files_;  // by file name; ordered: the takeover order
  std::unordered_map<std::string, std::string> owners_;  // object id -> file name
};

}  // namespace sliceproxy::slicewatch
