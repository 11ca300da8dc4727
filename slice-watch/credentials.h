#pragma once
// The bearer token sent with every API request. A token file (the in-cluster service account
// token, a kubeconfig tokenFile) is re-read at most every `refresh` and at once after the server
// answered 401, so a rotated token is picked up without a restart. With an exec credential
// plugin, the plugin's token (renewed when it expires or is rejected). Thread-safe: the three
// watches share one.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "slice-watch/exec_credential.h"

namespace sliceproxy::slicewatch {

class BearerToken {
 public:
  using Clock = std::chrono::steady_clock;

  BearerToken(std::string fixedToken, std::string tokenFile,
              Clock::duration refresh = std::chrono::minutes(1),
              std::shared_ptr<ExecCredentialSource> exec = nullptr);

  // Reads the token file (or runs the plugin) now. Throws std::runtime_error naming the file
  // or plugin when that fails: at start-up that is a configuration error worth stopping for.
  void load();
  // The token to send ("" for none). Re-reads the file when due; if that fails, keeps the last
  // good token and logs a warning.
  std::string get();
  // The server rejected the token: read the file again before the next request.
  void invalidate();
  bool fromFile() const { return !file_.empty(); }
  const std::string& file() const { return file_; }

 private:
  std::string readFile() const;

  const std::string fixed_;
  const std::string file_;
  const Clock::duration refresh_;
  const std::shared_ptr<ExecCredentialSource> exec_;
  std::mutex mu_;
  std::string token_;
  Clock::time_point readAt_{};
  bool stale_ = true;
};

}  // namespace sliceproxy::slicewatch
