#include "slice-watch/kubeconfig.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>

#include <cerrno>
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

// The PEM from `dataKey` (base64) or else from the file named by `fileKey` (its path in
// `*file`).
std::string pemFrom(const YAML::Node& n, const char* dataKey, const char* fileKey,
                    const fs::path& base, const std::string& path, std::string* file = nullptr) {
  std::string data = str(n, dataKey);
  if (!data.empty()) {
    auto decoded = decodeBase64(data);
    if (!decoded) fail(path, fmt::format("{} is not valid base64", dataKey));
    return *decoded;
  }
  std::string name = str(n, fileKey);
  if (name.empty()) return "";
  if (file) *file = resolve(name, base);
  return readFileOrThrow(resolve(name, base), fmt::format("{} of kubeconfig {}", fileKey, path));
}

// A kubeconfig extension as JSON. yaml-cpp keeps no scalar types, so plain scalars are read
// the way YAML 1.2's core schema reads them.
boost::json::value toJson(const YAML::Node& n) {
  if (!n || n.IsNull()) return nullptr;
  if (n.IsMap()) {
    boost::json::object o;
    for (const auto& kv : n) o[kv.first.as<std::string>()] = toJson(kv.second);
    return o;
  }
  if (n.IsSequence()) {
    boost::json::array a;
    for (const auto& x : n) a.push_back(toJson(x));
    return a;
  }
  const std::string& text = n.Scalar();
  if (n.Tag() != "!") {  // not quoted
    if (text == "true" || text == "false") return text == "true";
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(text.c_str(), &end, 10);
    if (!text.empty() && *end == '\0' && errno == 0) return i;
  }
  return boost::json::value(boost::json::string_view(text));
}

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// users[].user.exec, read as client-go reads it (its ExecConfig and the Cluster it passes to
// the plugin when provideClusterInfo is set).
ExecConfig execConfig(const YAML::Node& exec, const YAML::Node& cluster, const ApiConfig& cfg,
                      const fs::path& base, const std::string& path, const std::string& user) {
  if (!exec.IsMap()) fail(path, fmt::format("user \"{}\": exec must be a mapping", user));
  ExecConfig e;
  e.origin = fmt::format("kubeconfig {} (user {})", path, user);
  e.command = str(exec, "command");
  if (e.command.empty()) fail(path, fmt::format("user \"{}\": exec.command is not set", user));
  // client-go: a command with a path separator is relative to the kubeconfig's directory;
  // a bare name is looked up in PATH.
  if (e.command.find('/') != std::string::npos) e.command = resolve(e.command, base);
  if (YAML::Node a = exec["args"]; a && a.IsSequence()) {
    for (const auto& x : a) e.args.push_back(x.as<std::string>());
  }
  if (YAML::Node env = exec["env"]; env && env.IsSequence()) {
    for (const auto& x : env) e.env.emplace_back(str(x, "name"), str(x, "value"));
  }
  e.apiVersion = str(exec, "apiVersion");
  if (e.apiVersion != "client.authentication.k8s.io/v1" &&
      e.apiVersion != "client.authentication.k8s.io/v1beta1") {
    fail(path, fmt::format("user \"{}\": exec.apiVersion \"{}\" is not supported (use "
                           "client.authentication.k8s.io/v1 or v1beta1)",
                           user, e.apiVersion));
  }
  std::string mode = str(exec, "interactiveMode");
  if (mode.empty() && e.apiVersion.ends_with("/v1")) {
    fail(path,
         fmt::format("user \"{}\": exec.interactiveMode must be set for {}", user, e.apiVersion));
  }
  if (mode == "Always") {
    fail(path, fmt::format("user \"{}\": exec.interactiveMode is Always, but sliceproxy runs "
                           "without a terminal; use a plugin that can run with IfAvailable or "
                           "Never",
                           user));
  }
  if (!mode.empty() && mode != "Never" && mode != "IfAvailable") {
    fail(path, fmt::format("user \"{}\": exec.interactiveMode \"{}\" is not Never, "
                           "IfAvailable or Always",
                           user, mode));
  }
  e.installHint = str(exec, "installHint");
  if (YAML::Node p = exec["provideClusterInfo"]; p && p.IsScalar() && p.as<bool>()) {
    boost::json::object c;
    c["server"] = cfg.server.str();
    if (!cfg.tlsServerName.empty()) c["tls-server-name"] = cfg.tlsServerName;
    if (cfg.insecureSkipTlsVerify) c["insecure-skip-tls-verify"] = true;
    if (!cfg.caPem.empty()) c["certificate-authority-data"] = base64(cfg.caPem);
    // The cluster's extension for this plugin, as client-go passes it (spec.cluster.config).
    if (YAML::Node ext = cluster["extensions"]; ext && ext.IsSequence()) {
      for (const auto& x : ext) {
        if (str(x, "name") != "client.authentication.k8s.io/exec") continue;
        c["config"] = toJson(x["extension"]);
      }
    }
    e.clusterJson = boost::json::serialize(c);
  }
  return e;
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
    cfg.caPem = pemFrom(cluster, "certificate-authority-data", "certificate-authority", base, path,
                        &cfg.caFile);
    if (YAML::Node v = cluster["insecure-skip-tls-verify"]; v && v.IsScalar()) {
      cfg.insecureSkipTlsVerify = v.as<bool>();
    }
    cfg.tlsServerName = str(cluster, "tls-server-name");

    if (!userName.empty()) {
      YAML::Node user = findNamed(root, "users", "user", userName, path);
      cfg.token = str(user, "token");
      if (std::string f = str(user, "tokenFile"); !f.empty()) cfg.tokenFile = resolve(f, base);
      cfg.clientCertPem = pemFrom(user, "client-certificate-data", "client-certificate", base, path,
                                  &cfg.clientCertFile);
      cfg.clientKeyPem =
          pemFrom(user, "client-key-data", "client-key", base, path, &cfg.clientKeyFile);
      if (YAML::Node exec = user["exec"]; exec && !cfg.hasCredentials()) {
        cfg.exec = execConfig(exec, cluster, cfg, base, path, userName);
      }
      if (cfg.clientCertPem.empty() != cfg.clientKeyPem.empty()) {
        fail(path, fmt::format("user \"{}\" has a client certificate without its key, or a key "
                               "without its certificate",
                               userName));
      }
      if (!cfg.hasCredentials()) {
        if (user["auth-provider"]) {
          fail(path, fmt::format("user \"{}\" uses an auth-provider plugin, which client-go "
                                 "itself has removed; use an exec plugin, a token, tokenFile or "
                                 "client certificate",
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
  cfg.caFile = dir + "/ca.crt";
  cfg.caPem = readFileOrThrow(cfg.caFile, "the service account CA certificate");
  return cfg;
}

}  // namespace sliceproxy::slicewatch
