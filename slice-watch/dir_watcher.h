#pragma once
// inotify on one directory (not recursive), reporting which names changed in coalesced batches,
// with a wake-up another thread can trigger to make the watching thread stop.

#include <chrono>
#include <filesystem>
#include <set>
#include <string>

namespace sliceproxy::slicewatch {

class DirWatcher {
 public:
  struct Batch {
    std::set<std::string> names;  // entries created, written, moved in or out, or deleted
    bool rescanAll = false;       // the kernel queue overflowed, or a ..data link flipped
    bool watchLost = false;       // the directory itself was deleted or moved away
    bool stopped = false;         // wake() was called
  };

  // Throws std::system_error when the directory cannot be watched.
  explicit DirWatcher(const std::filesystem::path& dir);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  // Blocks until something happens, then keeps collecting until the directory has been quiet
  // for `settle` (at most `maxWait` in all): an editor's save is several events (write a temp
  // file, rename it over, or rename the original away and write anew), and the files should
  // be read once, after it.
  Batch wait(std::chrono::milliseconds settle = std::chrono::milliseconds(30),
             std::chrono::milliseconds maxWait = std::chrono::milliseconds(300));

  // Thread-safe; the current or next wait() returns with stopped set.
  void wake();

 private:
  // Reads every queued event into batch; false when nothing was queued.
  bool drain(Batch& batch);

  int inotifyFd_ = -1;
  int wakeFd_ = -1;
  int watch_ = -1;
};

}  // namespace sliceproxy::slicewatch
