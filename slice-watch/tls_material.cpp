#include "slice-watch/tls_material.h"

#include <spdlog/spdlog.h>

namespace sliceproxy::slicewatch {

namespace {

bool sameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size &&
         a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
         a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

}  // namespace

TlsMaterialSource::TlsMaterialSource(const ApiConfig& cfg,
                                     std::shared_ptr<ExecCredentialSource> exec,
                                     Clock::duration refresh)
    : exec_(std::move(exec)), refresh_(refresh) {
  m_ = {cfg.caPem, cfg.clientCertPem, cfg.clientKeyPem};
  files_[0] = {cfg.caFile, &m_.caPem};
  files_[1] = {cfg.clientCertFile, &m_.certPem};
  files_[2] = {cfg.clientKeyFile, &m_.keyPem};
  // The files were read when the configuration was loaded: remember them as they are now.
  for (File& f : files_) {
    if (!f.path.empty()) ::stat(f.path.c_str(), &f.seen);
  }
  checkedAt_ = Clock::now();
}

void TlsMaterialSource::check(File& f) {
  if (f.path.empty()) return;
  struct stat now {};
  if (::stat(f.path.c_str(), &now) != 0 || sameFile(now, f.seen)) return;
  try {
    std::string text = readFileOrThrow(f.path, "TLS file");
    if (text != *f.into) spdlog::info("{}: changed; new connections use the new contents", f.path);
    *f.into = std::move(text);
    f.seen = now;
  } catch (const std::exception& e) {
    spdlog::warn("{}; keeping what was read before", e.what());
  }
}

TlsMaterial TlsMaterialSource::current() {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  if (stale_ || now - checkedAt_ >= refresh_) {
    for (File& f : files_) check(f);
    checkedAt_ = now;
    stale_ = false;
  }
  TlsMaterial out = m_;
  if (exec_) {
    try {
      ExecCredential c = exec_->get();
      if (!c.certPem.empty()) {
        execCert_ = std::move(c.certPem);
        execKey_ = std::move(c.keyPem);
      }
    } catch (const std::exception& e) {
      // BearerToken reports the same failure; the last certificate stays in use meanwhile.
      spdlog::debug("{}", e.what());
    }
    if (!execCert_.empty()) {
      out.certPem = execCert_;
      out.keyPem = execKey_;
    }
  }
  return out;
}

void TlsMaterialSource::stale() {
  std::lock_guard lock(mu_);
  stale_ = true;
}

}  // namespace sliceproxy::slicewatch
