#include "slice-watch/api_config.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "proxier/config/bounded_file.h"

namespace sliceproxy::slicewatch {

std::string ServerUrl::str() const {
  return fmt::format("{}://{}{}", tls ? "https" : "http", hostHeader(), basePath);
}

std::string ServerUrl::hostHeader() const {
  bool v6 = host.find(':') != std::string::npos;
  return v6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

std::string redactUrl(std::string_view url) {
  // The user info ends at the last '@' of the authority, which ends at the first '/'.
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::string_view authority = url.substr(start, url.find('/', start) - start);
  const size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  const size_t colon = authority.substr(0, at).find(':');
  if (colon == std::string_view::npos) return std::string(url);
  return fmt::format("{}xxxxx{}", url.substr(0, start + colon + 1), url.substr(start + at));
}

std::optional<ServerUrl> parseServerUrl(std::string_view original, std::string& error) {
  // Only the redacted text goes into errors; parsing reads `original`.
  const std::string text = redactUrl(original);
  ServerUrl url;
  std::string_view rest = original;
  if (auto p = rest.find("://"); p != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, p);
    if (scheme == "https") {
      url.tls = true;
    } else if (scheme == "http") {
      url.tls = false;
    } else {
      error = fmt::format("server URL \"{}\": scheme must be https or http", text);
      return std::nullopt;
    }
    rest.remove_prefix(p + 3);
  }
  std::string_view authority = rest.substr(0, rest.find('/'));
  std::string_view path = rest.substr(authority.size());
  if (authority.find('@') != std::string_view::npos ||
      authority.find('?') != std::string_view::npos) {
    error = fmt::format("server URL \"{}\": user info and queries are not supported", text);
    return std::nullopt;
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = fmt::format("server URL \"{}\": unterminated IPv6 address", text);
      return std::nullopt;
    }
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        error = fmt::format("server URL \"{}\": unexpected text after the address", text);
        return std::nullopt;
      }
      port = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) {
    error = fmt::format("server URL \"{}\" has no host", text);
    return std::nullopt;
  }
  if (port.empty()) {
    url.port = url.tls ? "443" : "80";
  } else {
    unsigned long n = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || (n = n * 10 + static_cast<unsigned>(c - '0')) > 65535) {
        error = fmt::format("server URL \"{}\": bad port \"{}\"", text, port);
        return std::nullopt;
      }
    }
    if (n == 0) {
      error = fmt::format("server URL \"{}\": bad port \"{}\"", text, port);
      return std::nullopt;
    }
    url.port = std::string(port);
  }
  while (path.ends_with('/')) path.remove_suffix(1);
  url.basePath = std::string(path);
  return url;
}

std::string readFileOrThrow(const std::string& path, std::string_view what) {
  // Tokens, certificates and kubeconfigs are KiB; a bound keeps a wrong path (/dev/zero, a
  // FIFO) from hanging or exhausting the daemon.
  constexpr uint64_t kMaxCredentialFileBytes = 16u << 20;
  auto read = proxier::readBoundedFile(path, kMaxCredentialFileBytes);
  if (!read.text) {
    throw std::runtime_error(fmt::format("cannot read {} {}: {}", what, path, read.error));
  }
  return std::move(*read.text);
}

}  // namespace sliceproxy::slicewatch
