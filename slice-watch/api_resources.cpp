#include "slice-watch/api_resources.h"

#include <fmt/format.h>

namespace sliceproxy::slicewatch {

std::string proxyLabelSelector(const std::string& serviceProxyName) {
  if (serviceProxyName.empty()) {
    return "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";
  }
  return "!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=" +
         serviceProxyName;
}

ResourceSpec servicesResource(const std::string& serviceProxyName) {
  return {"Service", "/api/v1/services", true, proxyLabelSelector(serviceProxyName), ""};
}

ResourceSpec endpointSlicesResource(const std::string& serviceProxyName) {
  return {"EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices", true,
          proxyLabelSelector(serviceProxyName), ""};
}

ResourceSpec nodeResource(const std::string& nodeName) {
  return {"Node", "/api/v1/nodes", false, "", "metadata.name=" + nodeName};
}

std::string urlEncode(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

namespace {

std::string selectors(const ResourceSpec& r) {
  std::string q;
  if (!r.labelSelector.empty()) q += "&labelSelector=" + urlEncode(r.labelSelector);
  if (!r.fieldSelector.empty()) q += "&fieldSelector=" + urlEncode(r.fieldSelector);
  return q;
}

}  // namespace

std::string listTarget(const ResourceSpec& r, size_t limit, const std::string& continueToken) {
  std::string t = fmt::format("{}?limit={}{}", r.path, limit, selectors(r));
  if (!continueToken.empty()) t += "&continue=" + urlEncode(continueToken);
  return t;
}

std::string watchTarget(const ResourceSpec& r, const std::string& resourceVersion,
                        std::chrono::seconds timeout) {
  return fmt::format(
      "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}{}", r.path,
      urlEncode(resourceVersion), timeout.count(), selectors(r));
}

}  // namespace sliceproxy::slicewatch
