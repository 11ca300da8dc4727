#include "slice-watch/kubeconfig.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "slice-watch/base64.h"

namespace sliceproxy::slicewatch {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw std::runtime_error(fmt::format("kubeconfig {}: {}", path, msg));
}

std::string str(const YAML::Node& n, const char* key) {
  const YAML::Node v = n[key];
  if (!v || v.IsNull()) return "";
  if (!v.IsScalar()) throw YAML::Exception(v.Mark(), std::string(key) + " must be a string");
  return v.as<std::string>();
}

// The entry of a named list (clusters, users, contexts) whose name is `name`.
YAML::Node findNamed(const YAML::Node& root, const char* list, const char* field,
                     const std::string& name, const std::string& path) {
  const YAML::Node entries = root[list];
  if (entries && entries.IsSequence()) {
    for (const auto& e : entries) {
      if (str(e, "name") == name) {
        YAML::Node inner = e[field];
        if (!inner || !inner.IsMap())
          fail(path, fmt::format("{} \"{}\" has no {}", list, name, field));
        return inner;
      }
    }
  }
  fail(path, fmt::format("no entry named \"{}\" in {}", name, list));
}

std::string resolve(const std::string& file, const fs::path& base) {
  fs::path p(file);
  return p.is_absolute() ? file : (base / p).string();
}

// The PEM from `dataKey` (base64) or else from the file named by `fileKey`.
std::string pemFrom(const YAML::Node& n, const char* dataKey, const char* fileKey,
                    const fs::path& base, const std::string& path) {
  std::string data = str(n, dataKey);
  if (!data.empty()) {
    auto decoded = decodeBase64(data);
    if (!decoded) fail(path, fmt::format("{} is not valid base64", dataKey));
    return *decoded;
  }
  std::string file = str(n, fileKey);
  if (file.empty()) return "";
  return readFileOrThrow(resolve(file, base), fmt::format("{} of kubeconfig {}", fileKey, path));
}

}  // namespace

ApiConfig loadKubeconfig(const std::string& path, const std::string& master) {
  YAML::Node root;
  try {
    root = YAML::Load(readFileOrThrow(path, "kubeconfig"));
  } catch (const YAML::Exception& e) {
    fail(path, e.what());
  }
  if (!root.IsMap()) fail(path, "not a kubeconfig (expected a YAML mapping)");
  const fs::path base = fs::absolute(fs::path(path)).parent_path();
  ApiConfig cfg;
  try {
    std::string contextName = str(root, "current-context");
    if (contextName.empty()) fail(path, "current-context is not set");
    YAML::Node context = findNamed(root, "contexts", "context", contextName, path);
    std::string clusterName = str(context, "cluster");
    std::string userName = str(context, "user");
    if (clusterName.empty())
      fail(path, fmt::format("context \"{}\" names no cluster", contextName));
    cfg.origin = fmt::format("kubeconfig {} (context {})", path, contextName);

    YAML::Node cluster = findNamed(root, "clusters", "cluster", clusterName, path);
    std::string server = master.empty() ? str(cluster, "server") : master;
    if (server.empty()) fail(path, fmt::format("cluster \"{}\" has no server", clusterName));
    std::string error;
    auto url = parseServerUrl(server, error);
    if (!url) fail(path, error);
    cfg.server = *url;
    cfg.caPem = pemFrom(cluster, "certificate-authority-data", "certificate-authority", base, path);
    if (YAML::Node v = cluster["insecure-skip-tls-verify"]; v && v.IsScalar()) {
      cfg.insecureSkipTlsVerify = v.as<bool>();
    }
    cfg.tlsServerName = str(cluster, "tls-server-name");

    if (!userName.empty()) {
      YAML::Node user = findNamed(root, "users", "user", userName, path);
      cfg.token = str(user, "token");
      if (std::string f = str(user, "tokenFile"); !f.empty()) cfg.tokenFile = resolve(f, base);
      cfg.clientCertPem =
          pemFrom(user, "client-certificate-data", "client-certificate", base, path);
      cfg.clientKeyPem = pemFrom(user, "client-key-data", "client-key", base, path);
      if (cfg.clientCertPem.empty() != cfg.clientKeyPem.empty()) {
        fail(path, fmt::format("user \"{}\" has a client certificate without its key, or a key "
                               "without its certificate",
                               userName));
      }
      if (!cfg.hasCredentials()) {
        if (user["exec"] || user["auth-provider"]) {
          fail(path, fmt::format("user \"{}\" uses a credential plugin (exec or auth-provider), "
                                 "which sliceproxy does not support; give it a token, tokenFile "
                                 "or client certificate",
                                 userName));
        }
        if (!str(user, "username").empty()) {
          fail(path, fmt::format("user \"{}\" uses basic authentication, which sliceproxy does "
                                 "not support; give it a token, tokenFile or client certificate",
                                 userName));
        }
      }
    }
  } catch (const YAML::Exception& e) {
    fail(path, e.what());
  }
  return cfg;
}

ApiConfig inClusterConfig(const std::string& master, const std::string& dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  ApiConfig cfg;
  std::string error;
  if (!master.empty()) {
    auto url = parseServerUrl(master, error);
    if (!url) throw std::runtime_error("--master: " + error);
    cfg.server = *url;
  } else {
    if (!host || !*host || !port || !*port) {
      throw std::runtime_error(
          "not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not "
          "set): pass --kubeconfig FILE, --master URL or --source-dir DIR");
    }
    std::string h(host);
    bool v6 = h.find(':') != std::string::npos;
    auto url = parseServerUrl(
        v6 ? fmt::format("https://[{}]:{}", h, port) : fmt::format("https://{}:{}", h, port),
        error);
    if (!url) throw std::runtime_error("in-cluster configuration: " + error);
    cfg.server = *url;
  }
  cfg.origin = fmt::format("in-cluster configuration ({})", dir);
  cfg.tokenFile = dir + "/token";
  cfg.caPem = readFileOrThrow(dir + "/ca.crt", "the service account CA certificate");
  return cfg;
}

}  // namespace sliceproxy::slicewatch
