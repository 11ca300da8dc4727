#pragma once
// The three API resources sliceproxy watches and the request targets for listing and watching
// them, with the selectors kube-proxy uses.

#include <chrono>
#include <string>
#include <string_view>

namespace sliceproxy::slicewatch {

struct ResourceSpec {
  std::string kind;        // Service, EndpointSlice, Node
  std::string path;        // /api/v1/services, without query
  bool namespaced = true;  // Node is cluster-scoped
  std::string labelSelector;
  std::string fieldSelector;
};

// kube-proxy's label selector: `!service.kubernetes.io/headless,!service.kubernetes.io/
// service-proxy-name`, or `!service.kubernetes.io/headless,service.kubernetes.io/
// service-proxy-name=NAME` with --service-proxy-name.
std::string proxyLabelSelector(const std::string& serviceProxyName);

ResourceSpec servicesResource(const std::string& serviceProxyName);
ResourceSpec endpointSlicesResource(const std::string& serviceProxyName);
// This node's Node object only (field selector metadata.name=NODE).
ResourceSpec nodeResource(const std::string& nodeName);

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string urlEncode(std::string_view text);

// GET target of one list page: limit, and the continue token of the previous page if any.
std::string listTarget(const ResourceSpec& r, size_t limit, const std::string& continueToken);
// GET target of a watch from `resourceVersion`, with bookmarks, ending after `timeout`.
std::string watchTarget(const ResourceSpec& r, const std::string& resourceVersion,
                        std::chrono::seconds timeout);

}  // namespace sliceproxy::slicewatch
