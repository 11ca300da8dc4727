#pragma once
// --config FILE: kube-proxy's KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1), and
// --write-config-to FILE: the effective configuration in the same format. sliceproxy-only
// settings live in a `sliceproxy:` block. Flags given on the command line override the file.

#include <functional>
#include <string>
#include <vector>

#include "proxier/config/config.h"

namespace sliceproxy::proxier {

inline constexpr const char* kKubeProxyConfigAPIVersion = "kubeproxy.config.k8s.io/v1alpha1";

struct ConfigFileResult {
  std::string error;                  // "" when the file was applied
  std::vector<std::string> warnings;  // unknown fields, ignored settings
};

// Applies the file to cfg, skipping every setting whose flag flagGiven("--flag") reports as set
// on the command line. minSyncText/syncText are main()'s duration flag texts. Every value is
// validated here; the error names the file and the field.
ConfigFileResult applyConfigFile(const std::string& path, Config& cfg, std::string& minSyncText,
                                 std::string& syncText,
                                 const std::function<bool(const std::string&)>& flagGiven);
// The same from text (tests); `origin` names the source in messages.
ConfigFileResult applyConfigText(const std::string& text, const std::string& origin, Config& cfg,
                                 std::string& minSyncText, std::string& syncText,
                                 const std::function<bool(const std::string&)>& flagGiven);

// The effective configuration as a KubeProxyConfiguration document.
std::string renderConfig(const Config& cfg);

}  // namespace sliceproxy::proxier
