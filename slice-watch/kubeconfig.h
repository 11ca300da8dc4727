#pragma once
// API access from a kubeconfig file (the subset a node agent needs) or from the in-cluster
// service account, the way client-go reads them.
//
// kubeconfig: the current-context names a cluster and a user. Cluster: server,
// certificate-authority / certificate-authority-data, insecure-skip-tls-verify, tls-server-name.
// User: token, tokenFile, client-certificate(-data), client-key(-data). File paths are relative
// to the kubeconfig's directory. *-data fields win over their file counterparts.

#include <string>

#include "slice-watch/api_config.h"

namespace sliceproxy::slicewatch {

inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

// Throws std::runtime_error with a message naming the file and the field at fault. A non-empty
// `master` replaces the cluster's server.
ApiConfig loadKubeconfig(const std::string& path, const std::string& master = "");

// KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT, `dir`/token (re-read periodically) and
// `dir`/ca.crt. A non-empty `master` replaces the server. Throws std::runtime_error when not
// running in a cluster or when the service account files cannot be read.
ApiConfig inClusterConfig(const std::string& master = "",
                          const std::string& dir = kServiceAccountDir);

}  // namespace sliceproxy::slicewatch
