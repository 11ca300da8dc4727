#pragma once
// The TLS material a new API connection uses: the trusted CA and the client certificate and
// key, from a kubeconfig's *-data fields, from files (re-read when they change, so a rotated
// certificate needs no restart), or from an exec credential plugin. Shared by every transport;
// thread-safe.

#include <sys/stat.h>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "slice-watch/api_config.h"
#include "slice-watch/exec_credential.h"

namespace sliceproxy::slicewatch {

struct TlsMaterial {
  std::string caPem;
  std::string certPem;
  std::string keyPem;
  friend bool operator==(const TlsMaterial&, const TlsMaterial&) = default;
};

class TlsMaterialSource {
 public:
  using Clock = std::chrono::steady_clock;

  TlsMaterialSource(const ApiConfig& cfg, std::shared_ptr<ExecCredentialSource> exec,
                    Clock::duration refresh = std::chrono::seconds(10));

  // What the next connection should use. Files are checked (stat) at most every `refresh`, or
  // at once after stale(); one that changed is read again. A file that cannot be read keeps
  // what was read before, with a warning.
  TlsMaterial current();
  // A handshake failed: check the files before the next connection.
  void stale();

 private:
  struct File {
    std::string path;
    std::string* into;
    struct stat seen {};
  };
  void check(File& f);

  std::shared_ptr<ExecCredentialSource> exec_;
  const Clock::duration refresh_;
  std::mutex mu_;
  TlsMaterial m_;
  std::string execCert_, execKey_;  // the plugin's last certificate, kept while it fails
  File files_[3];
  Clock::time_point checkedAt_{};
  bool stale_ = false;
};

}  // namespace sliceproxy::slicewatch
