#include "proxier/config/kube_proxy_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "proxier/config/bounded_file.h"
#include "proxier/config/duration.h"
#include "proxier/config/network_config.h"
#include "proxier/model/ip.h"
#include "proxier/ops/http_server.h"

namespace sliceproxy::proxier {

namespace {

// Fields each mode reads from its own section, as kube-proxy does.
const std::string kPerModeFields[] = {"masqueradeAll", "masqueradeBit", "minSyncPeriod",
                                      "syncPeriod"};

// The section `mode` reads a per-mode field from: iptables.* for iptables; for ipvs, ipvs.* for
// the sync periods and iptables.* for masquerading; nftables.* otherwise. Reading and writing
// (--write-config-to) both go through it, so what is written reads back the same.
std::string modeSection(const std::string& mode, const std::string& field) {
  const bool sync = field == "minSyncPeriod" || field == "syncPeriod";
  if (mode == "iptables") return "iptables";
  if (mode == "ipvs") return sync ? "ipvs" : "iptables";
  return "nftables";
}

struct Invalid {
  std::string message;
};

class Reader {
 public:
  Reader(std::string origin, ConfigFileResult& out,
         const std::function<bool(const std::string&)>& flagGiven)
      : origin_(std::move(origin)), out_(out), flagGiven_(flagGiven) {}

  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw Invalid{fmt::format("{}: {}: {}", origin_, field, why)};
  }
  void warn(const std::string& what) { out_.warnings.push_back(origin_ + ": " + what); }
  const std::string& origin() const { return origin_; }
  bool overridden(const char* flag) const { return flag && flagGiven_ && flagGiven_(flag); }

  std::string str(const YAML::Node& n, const std::string& field) const {
    if (n.IsNull()) return "";
    if (!n.IsScalar()) fail(field, "must be a string");
    return n.Scalar();
  }
  bool boolean(const YAML::Node& n, const std::string& field) const {
    bool b = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, b)) fail(field, "must be true or false");
    return b;
  }
  int64_t integer(const YAML::Node& n, const std::string& field, int64_t lo, int64_t hi) const {
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) fail(field, "must be an integer");
    if (v < lo || v > hi) fail(field, fmt::format("{} is out of range {}..{}", v, lo, hi));
    return v;
  }
  std::chrono::nanoseconds duration(const YAML::Node& n, const std::string& field) const {
    auto text = str(n, field);
    auto d = parseDuration(text);
    if (!d || d->count() < 0) {
      fail(field, fmt::format("\"{}\" is not a duration (examples: 500ms, 1s, 1m30s)", text));
    }
    return *d;
  }
  std::vector<std::string> list(const YAML::Node& n, const std::string& field) const {
    std::vector<std::string> out;
    if (n.IsNull()) return out;
    if (!n.IsSequence()) fail(field, "must be a list of strings");
    for (const auto& e : n) out.push_back(str(e, field));
    return out;
  }
  void cidr(const std::string& text, const std::string& field) const {
    if (!Cidr::parse(text)) fail(field, fmt::format("\"{}\" is not a CIDR", text));
  }

 private:
  std::string origin_;
  ConfigFileResult& out_;
  const std::function<bool(const std::string&)>& flagGiven_;
};

std::vector<std::string> splitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) {
    auto b = part.find_first_not_of(" \t"), e = part.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(part.substr(b, e - b + 1));
  }
  return out;
}

// kube-proxy reads masquerading and sync settings from the section of its mode: iptables.* in
// iptables mode (and for masquerading in ipvs mode), ipvs.* for ipvs sync, nftables.* in
// nftables mode. sliceproxy does the same for the mode the file names; with no mode (which
// means nftables here, iptables in kube-proxy) nftables.* applies, and iptables.* fills what
// nftables.* leaves unset, so a kube-proxy file keeps its meaning. A non-zero value in a
// section that does not apply is reported, never silently dropped.
void applySections(Reader& r, Config& cfg,
                   std::map<std::string, std::map<std::string, YAML::Node>>& sections,
                   std::string& minSyncText, std::string& syncText) {
  const std::string& mode = cfg.mode;
  auto isSet = [&](const std::string& section, const std::string& k) {
    auto s = sections.find(section);
    if (s == sections.end()) return false;
    auto f = s->second.find(k);
    if (f == s->second.end() || f->second.IsNull()) return false;
    const std::string field = section + "." + k;
    // Validate whatever section it is in: a typo is an error everywhere.
    if (k == "masqueradeAll") return r.boolean(f->second, field);
    if (k == "masqueradeBit") return r.integer(f->second, field, 0, 31) >= 0;
    return r.duration(f->second, field).count() > 0;
  };
  for (const std::string& k : kPerModeFields) {
    const std::string primary = modeSection(mode, k);
    std::string from;
    if (isSet(primary, k)) {
      from = primary;
    } else if (mode.empty() && isSet("iptables", k)) {
      from = "iptables";
      r.warn(
          fmt::format("iptables.{} applied: no mode is set (kube-proxy's default was "
                      "iptables) and nftables.{} is not; set it there to silence this",
                      k, k));
    }
    for (const std::string other : {"iptables", "ipvs", "nftables"}) {
      if (other != from && isSet(other, k)) {
        r.warn(fmt::format("{}.{} ignored: mode {} reads {}.{}", other, k,
                           mode.empty() ? "\"\" (nftables)" : mode, primary, k));
      }
    }
    if (from.empty()) continue;
    const YAML::Node& n = sections[from][k];
    const std::string field = from + "." + k;
    if (k == "masqueradeAll") {
      bool b = r.boolean(n, field);
      if (!r.overridden("--masquerade-all")) cfg.network.masqueradeAll = b;
    } else if (k == "masqueradeBit") {
      int bit = static_cast<int>(r.integer(n, field, 0, 31));
      if (!r.overridden("--masquerade-bit")) cfg.masqueradeBit = bit;
    } else {
      const char* flag = k == "syncPeriod" ? "--sync-period" : "--min-sync-period";
      std::string& text = k == "syncPeriod" ? syncText : minSyncText;
      if (!r.overridden(flag)) text = formatDuration(r.duration(n, field));
    }
  }
}

void apply(const YAML::Node& root, Reader& r, Config& cfg, std::string& minSyncText,
           std::string& syncText) {
  if (!root.IsMap()) r.fail("document", "must be a KubeProxyConfiguration object");
  const auto apiVersion = r.str(root["apiVersion"], "apiVersion");
  if (apiVersion != kKubeProxyConfigAPIVersion) {
    r.fail("apiVersion", fmt::format("\"{}\" is not supported (want {})", apiVersion,
                                     kKubeProxyConfigAPIVersion));
  }
  if (auto kind = r.str(root["kind"], "kind"); kind != "KubeProxyConfiguration") {
    r.fail("kind", fmt::format("\"{}\" is not KubeProxyConfiguration", kind));
  }
  // Fields kube-proxy has and sliceproxy does not need.
  static const std::set<std::string> ignored = {"configSyncPeriod",
                                                "enableProfiling",
                                                "oomScoreAdj",
                                                "portRange",
                                                "showHiddenMetricsForVersion",
                                                "logging",
                                                "winkernel",
                                                "windowsRunAsService",
                                                "udpIdleTimeout",
                                                "nodePortAddressesPrimary"};

  auto setString = [&](const char* flag, std::string& target, const YAML::Node& n,
                       const std::string& field) {
    auto v = r.str(n, field);
    if (!r.overridden(flag)) target = v;
  };
  auto setDuration = [&](const char* flag, std::string& text, const YAML::Node& n,
                         const std::string& field) {
    auto d = r.duration(n, field);
    // 0s is how generated files (kubeadm) say "unset": the default stays, as in kube-proxy.
    if (!r.overridden(flag) && !n.IsNull() && d.count() > 0) text = formatDuration(d);
  };
  auto bindAddr = [&](const char* flag, std::string& target, const YAML::Node& n,
                      const std::string& field) {
    auto v = r.str(n, field);
    std::string err;
    if (!v.empty() && !parseHostPort(v, err)) r.fail(field, err);
    if (!r.overridden(flag)) target = v;
  };

  // The per-mode sections (iptables, ipvs, nftables) each hold masquerade and sync settings;
  // which one applies depends on the mode, known only once the whole file is read.
  static const std::set<std::string> kSectionFields = {"masqueradeAll", "masqueradeBit",
                                                       "minSyncPeriod", "syncPeriod"};
  std::map<std::string, std::map<std::string, YAML::Node>> sectionValues;
  std::optional<YAML::Node> topSync, topMinSync;

  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (key == "apiVersion" || key == "kind") continue;
    if (key == "mode") {
      // Which backend serves it is the registry's answer (chooseBackend), checked even when
      // --backend overrides it, so that a typo never passes unnoticed.
      cfg.mode = r.str(v, key);
      cfg.modeOrigin = r.origin();
    } else if (key == "clusterCIDR") {
      auto cidrs = splitComma(r.str(v, key));
      for (auto& c : cidrs) r.cidr(c, key);
      if (!r.overridden("--cluster-cidr")) cfg.clusterCIDRs = cidrs;
    } else if (key == "hostnameOverride") {
      setString("--hostname-override", cfg.hostnameOverride, v, key);
    } else if (key == "bindAddress") {
      auto a = r.str(v, key);
      if (!a.empty() && !IpAddr::parse(a))
        r.fail(key, fmt::format("\"{}\" is not an IP address", a));
      if (!r.overridden("--bind-address")) cfg.bindAddress = a;
    } else if (key == "healthzBindAddress") {
      bindAddr("--healthz-bind-address", cfg.healthzBindAddress, v, key);
    } else if (key == "metricsBindAddress") {
      bindAddr("--metrics-bind-address", cfg.metricsBindAddress, v, key);
    } else if (key == "nodePortAddresses") {
      auto addrs = r.list(v, key);
      for (auto& a : addrs) {
        if (a != "primary") r.cidr(a, key);
      }
      if (!r.overridden("--nodeport-addresses")) cfg.nodePortAddresses = addrs;
    } else if (key == "detectLocalMode") {
      auto m = r.str(v, key);
      if (!m.empty() && !parseLocalDetectMode(m)) {
        r.fail(key, fmt::format("\"{}\" is not one of ClusterCIDR, NodeCIDR, "
                                "InterfaceNamePrefix, BridgeInterface",
                                m));
      }
      if (!r.overridden("--detect-local-mode")) cfg.detectLocalMode = m;
    } else if (key == "detectLocal") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      for (const auto& d : v) {
        auto k = d.first.as<std::string>(), field = key + "." + k;
        if (k == "bridgeInterface") {
          setString("--pod-bridge-interface", cfg.network.podBridgeInterface, d.second, field);
        } else if (k == "interfaceNamePrefix") {
          setString("--pod-interface-name-prefix", cfg.network.podInterfacePrefix, d.second, field);
        } else {
          r.warn("unknown field " + field);
        }
      }
    } else if (key == "syncPeriod") {
      topSync.emplace(v);
    } else if (key == "minSyncPeriod") {
      topMinSync.emplace(v);
    } else if (key == "nftables" || key == "iptables") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      for (const auto& d : v) {
        auto k = d.first.as<std::string>(), field = key + "." + k;
        if (kSectionFields.contains(k)) {
          sectionValues[key].emplace(k, d.second);
        } else if (key == "iptables" && k == "localhostNodePorts") {
          if (!d.second.IsNull() && r.boolean(d.second, field)) {
            r.warn(field +
                   ": NodePorts are not served on 127.0.0.1 (as kube-proxy's nftables "
                   "mode); reach them on a node address");
          }
        } else {
          r.warn("unknown field " + field);
        }
      }
    } else if (key == "conntrack") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      auto& c = cfg.conntrack;
      for (const auto& d : v) {
        auto k = d.first.as<std::string>(), field = key + "." + k;
        const auto& n = d.second;
        if (n.IsNull()) continue;
        // Each is applied to the kernel at start (conntrack/sysctl_settings.h); the flag of the
        // same name wins over the file.
        auto set = [&](const char* flag, auto& target, auto value) {
          if (!r.overridden(flag)) target = value;
        };
        if (k == "maxPerCore") {
          set("--conntrack-max-per-core", c.maxPerCore,
              static_cast<int32_t>(r.integer(n, field, 0, INT32_MAX)));
        } else if (k == "min") {
          set("--conntrack-min", c.min, static_cast<int32_t>(r.integer(n, field, 0, INT32_MAX)));
        } else if (k == "tcpEstablishedTimeout") {
          set("--conntrack-tcp-timeout-established", c.tcpEstablishedTimeout, r.duration(n, field));
        } else if (k == "tcpCloseWaitTimeout") {
          set("--conntrack-tcp-timeout-close-wait", c.tcpCloseWaitTimeout, r.duration(n, field));
        } else if (k == "tcpBeLiberal") {
          set("--conntrack-tcp-be-liberal", c.tcpBeLiberal, r.boolean(n, field));
        } else if (k == "udpTimeout") {
          set("--conntrack-udp-timeout", c.udpTimeout, r.duration(n, field));
        } else if (k == "udpStreamTimeout") {
          set("--conntrack-udp-timeout-stream", c.udpStreamTimeout, r.duration(n, field));
        } else {
          r.warn("unknown field " + field);
        }
      }
    } else if (key == "ipvs") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      auto& i = cfg.ipvs;
      for (const auto& d : v) {
        auto k = d.first.as<std::string>(), field = key + "." + k;
        const auto& n = d.second;
        if (n.IsNull()) continue;
        if (k == "scheduler")
          i.scheduler = r.str(n, field);
        else if (k == "excludeCIDRs") {
          i.excludeCIDRs = r.list(n, field);
          for (auto& c : i.excludeCIDRs) r.cidr(c, field);
        } else if (k == "strictARP")
          i.strictARP = r.boolean(n, field);
        else if (k == "tcpTimeout")
          i.tcpTimeout = r.duration(n, field);
        else if (k == "tcpFinTimeout")
          i.tcpFinTimeout = r.duration(n, field);
        else if (k == "udpTimeout")
          i.udpTimeout = r.duration(n, field);
        else if (k == "syncPeriod" || k == "minSyncPeriod")
          sectionValues[key][k] = n;
        else
          r.warn("unknown field " + field);
      }
    } else if (key == "featureGates") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be a map of gate names to booleans");
      std::vector<std::string> gates;
      for (const auto& g : v) gates.push_back(g.first.as<std::string>());
      if (!gates.empty())
        r.warn("featureGates accepted and ignored: " + fmt::format("{}", fmt::join(gates, ", ")));
    } else if (key == "clientConnection") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      if (v["kubeconfig"])
        setString("--kubeconfig", cfg.kubeconfig, v["kubeconfig"], key + ".kubeconfig");
    } else if (key == "sliceproxy") {
      if (v.IsNull()) continue;
      if (!v.IsMap()) r.fail(key, "must be an object");
      for (const auto& d : v) {
        auto k = d.first.as<std::string>(), field = key + "." + k;
        const auto& n = d.second;
        if (k == "backend") {
          setString("--backend", cfg.backend, n, field);
          cfg.backendNamed = true;
        } else if (k == "sourceDir")
          setString("--source-dir", cfg.sourceDir, n, field);
        else if (k == "manifestMaxFileBytes") {
          auto b = static_cast<uint64_t>(r.integer(n, field, 1, INT64_MAX));
          if (!r.overridden("--manifest-max-file-bytes")) cfg.manifestMaxFileBytes = b;
        } else if (k == "master")
          setString("--master", cfg.master, n, field);
        else if (k == "serviceProxyName")
          setString("--service-proxy-name", cfg.serviceProxyName, n, field);
        else if (k == "snatAddresses") {
          auto a = r.list(n, field);
          for (auto& s : a) {
            if (!IpAddr::parse(s)) r.fail(field, fmt::format("\"{}\" is not an IP address", s));
          }
          if (!r.overridden("--snat-address")) cfg.snatAddresses = a;
        } else if (k == "flowRecordMax") {
          auto m = static_cast<uint32_t>(r.integer(n, field, 0, UINT32_MAX));
          if (!r.overridden("--flow-record-max")) cfg.network.flowRecordMax = m;
        } else if (k == "sockmapShortcut") {
          bool b = r.boolean(n, field);
          if (!r.overridden("--sockmap-shortcut")) cfg.network.sockmapShortcut = b;
        } else if (k == "enableDSR") {
          bool b = r.boolean(n, field);
          if (!r.overridden("--enable-dsr")) cfg.network.directServerReturn = b;
        } else if (k == "debugPort") {
          int p = static_cast<int>(r.integer(n, field, 0, 65535));
          if (!r.overridden("--debug-port")) cfg.debugPort = p;
        } else {
          r.warn("unknown field " + field);
        }
      }
    } else if (ignored.contains(key)) {
      continue;
    } else {
      r.warn("unknown field " + key);
    }
  }
  applySections(r, cfg, sectionValues, minSyncText, syncText);
  // kube-proxy 1.31's top-level fields win over the deprecated per-mode ones.
  if (topSync) setDuration("--sync-period", syncText, *topSync, "syncPeriod");
  if (topMinSync) setDuration("--min-sync-period", minSyncText, *topMinSync, "minSyncPeriod");
}

}  // namespace

ConfigFileResult applyConfigText(const std::string& text, const std::string& origin, Config& cfg,
                                 std::string& minSyncText, std::string& syncText,
                                 const std::function<bool(const std::string&)>& flagGiven) {
  ConfigFileResult out;
  Reader r(origin, out, flagGiven);
  try {
    // Work on a copy: an invalid file leaves cfg as it was.
    Config next = cfg;
    std::string minSync = minSyncText, sync = syncText;
    apply(YAML::Load(text), r, next, minSync, sync);
    cfg = std::move(next);
    minSyncText = minSync;
    syncText = sync;
  } catch (const Invalid& e) {
    out.error = e.message;
  } catch (const YAML::Exception& e) {
    out.error = fmt::format("{}: not valid YAML: {}", origin, e.what());
  }
  return out;
}

ConfigFileResult applyConfigFile(const std::string& path, Config& cfg, std::string& minSyncText,
                                 std::string& syncText,
                                 const std::function<bool(const std::string&)>& flagGiven) {
  // A KubeProxyConfiguration is a few KiB; the limit only stops /dev/zero and its kind.
  constexpr uint64_t kMaxConfigBytes = 4u << 20;
  auto read = readBoundedFile(path, kMaxConfigBytes);
  if (!read.text) return {fmt::format("--config: cannot read {}: {}", path, read.error), {}};
  return applyConfigText(*read.text, path, cfg, minSyncText, syncText, flagGiven);
}

std::string renderConfig(const Config& cfg) {
  auto join = [](const std::vector<std::string>& v) {
    return fmt::format("{}", fmt::join(v, ","));
  };
  YAML::Emitter e;
  e << YAML::BeginMap;
  e << YAML::Key << "apiVersion" << YAML::Value << kKubeProxyConfigAPIVersion;
  e << YAML::Key << "kind" << YAML::Value << "KubeProxyConfiguration";
  e << YAML::Key << "mode" << YAML::Value << cfg.mode;
  e << YAML::Key << "bindAddress" << YAML::Value << cfg.bindAddress;
  e << YAML::Key << "clusterCIDR" << YAML::Value << join(cfg.clusterCIDRs);
  e << YAML::Key << "hostnameOverride" << YAML::Value << cfg.hostnameOverride;
  e << YAML::Key << "healthzBindAddress" << YAML::Value << cfg.healthzBindAddress;
  e << YAML::Key << "metricsBindAddress" << YAML::Value << cfg.metricsBindAddress;
  e << YAML::Key << "nodePortAddresses" << YAML::Value << YAML::Flow << cfg.nodePortAddresses;
  e << YAML::Key << "detectLocalMode" << YAML::Value << cfg.detectLocalMode;
  e << YAML::Key << "detectLocal" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "bridgeInterface" << YAML::Value << cfg.network.podBridgeInterface;
  e << YAML::Key << "interfaceNamePrefix" << YAML::Value << cfg.network.podInterfacePrefix;
  e << YAML::EndMap;
  e << YAML::Key << "clientConnection" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "kubeconfig" << YAML::Value << cfg.kubeconfig;
  e << YAML::EndMap;
  const auto& c = cfg.conntrack;
  e << YAML::Key << "conntrack" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "maxPerCore" << YAML::Value << c.maxPerCore;
  e << YAML::Key << "min" << YAML::Value << c.min;
  e << YAML::Key << "tcpEstablishedTimeout" << YAML::Value
    << formatDuration(c.tcpEstablishedTimeout);
  e << YAML::Key << "tcpCloseWaitTimeout" << YAML::Value << formatDuration(c.tcpCloseWaitTimeout);
  e << YAML::Key << "tcpBeLiberal" << YAML::Value << c.tcpBeLiberal;
  e << YAML::Key << "udpTimeout" << YAML::Value << formatDuration(c.udpTimeout);
  e << YAML::Key << "udpStreamTimeout" << YAML::Value << formatDuration(c.udpStreamTimeout);
  e << YAML::EndMap;
  // The per-mode fields go where cfg.mode reads them back (an ipvs configuration written with
  // them under nftables: lost its masqueradeBit and sync periods when read again).
  auto perMode = [&](const std::string& section) {
    for (const std::string& k : kPerModeFields) {
      if (modeSection(cfg.mode, k) != section) continue;
      e << YAML::Key << k << YAML::Value;
      if (k == "masqueradeAll") e << cfg.network.masqueradeAll;
      if (k == "masqueradeBit") e << cfg.masqueradeBit;
      if (k == "minSyncPeriod") e << formatDuration(cfg.minSyncPeriod);
      if (k == "syncPeriod") e << formatDuration(cfg.syncPeriod);
    }
  };
  for (const std::string section : {"iptables", "nftables"}) {
    if (std::none_of(std::begin(kPerModeFields), std::end(kPerModeFields),
                     [&](const std::string& k) { return modeSection(cfg.mode, k) == section; })) {
      continue;
    }
    e << YAML::Key << section << YAML::Value << YAML::BeginMap;
    perMode(section);
    e << YAML::EndMap;
  }
  const auto& i = cfg.ipvs;
  e << YAML::Key << "ipvs" << YAML::Value << YAML::BeginMap;
  perMode("ipvs");
  e << YAML::Key << "scheduler" << YAML::Value << i.scheduler;
  e << YAML::Key << "excludeCIDRs" << YAML::Value << YAML::Flow << i.excludeCIDRs;
  e << YAML::Key << "strictARP" << YAML::Value << i.strictARP;
  e << YAML::Key << "tcpTimeout" << YAML::Value << formatDuration(i.tcpTimeout);
  e << YAML::Key << "tcpFinTimeout" << YAML::Value << formatDuration(i.tcpFinTimeout);
  e << YAML::Key << "udpTimeout" << YAML::Value << formatDuration(i.udpTimeout);
  e << YAML::EndMap;
  e << YAML::Key << "sliceproxy" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "backend" << YAML::Value << cfg.backend;
  e << YAML::Key << "sourceDir" << YAML::Value << cfg.sourceDir;
  e << YAML::Key << "manifestMaxFileBytes" << YAML::Value << cfg.manifestMaxFileBytes;
  e << YAML::Key << "master" << YAML::Value << cfg.master;
  e << YAML::Key << "serviceProxyName" << YAML::Value << cfg.serviceProxyName;
  e << YAML::Key << "snatAddresses" << YAML::Value << YAML::Flow << cfg.snatAddresses;
  e << YAML::Key << "debugPort" << YAML::Value << cfg.debugPort;
  e << YAML::Key << "flowRecordMax" << YAML::Value << cfg.network.flowRecordMax;
  e << YAML::Key << "sockmapShortcut" << YAML::Value << cfg.network.sockmapShortcut;
  e << YAML::Key << "enableDSR" << YAML::Value << cfg.network.directServerReturn;
  e << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace sliceproxy::proxier
