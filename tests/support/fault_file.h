#pragma once
// Arms injected kernel faults (proxier/core/injected_faults.h) from a file a test writes while
// the daemon runs: re-read whenever it changes (polled every 50 ms), its content replaces what
// is armed. For --testing-fault-file of sliceproxy-testing.

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "proxier/core/injected_faults.h"

namespace sliceproxy::proxier {

class FaultFile {
 public:
  explicit FaultFile(std::string path) : path_(std::move(path)) {
    poll();  // armed before the first sync
    thread_ = std::thread([this] {
      while (!stop_) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        poll();
      }
    });
  }
  ~FaultFile() {
    stop_ = true;
    thread_.join();
  }

 private:
  void poll() {
    struct stat st {};
    std::string stamp = "absent";
    if (stat(path_.c_str(), &st) == 0) {
      stamp = std::to_string(st.st_ino) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
              std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_size);
    }
    if (stamp == stamp_) return;
    stamp_ = stamp;
    std::stringstream text;
    if (std::ifstream in(path_); in) text << in.rdbuf();
    if (auto err = armFaults(text.str()); !err.empty()) {
      spdlog::error("testing: {}: {}", path_, err);
      return;
    }
    spdlog::warn("testing: faults armed: {}", describeArmedFaults());
  }

  std::string path_;
  std::string stamp_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace sliceproxy::proxier
