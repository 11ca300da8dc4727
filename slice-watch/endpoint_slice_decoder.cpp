#include "slice-watch/endpoint_slice_decoder.h"

#include <fmt/format.h>

#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch::detail {

namespace {

constexpr size_t kMaxAddressesPerEndpoint = 100;  // the API server's own limit

const char* addressTypeName(proxier::AddressType t) {
  switch (t) {
    case proxier::AddressType::IPv4:
      return "IPv4";
    case proxier::AddressType::IPv6:
      return "IPv6";
    case proxier::AddressType::FQDN:
      return "FQDN";
  }
  return "?";
}

proxier::IpFamily familyOf(proxier::AddressType t) {
  return t == proxier::AddressType::IPv6 ? proxier::IpFamily::V6 : proxier::IpFamily::V4;
}

void names(Reader& r, od::value& v, std::vector<std::string>& out) {
  r.forEachElement(v, [&](size_t, od::value& e) {
    r.forEachField(e, [&](Field& f) {
      if (f.is("name")) out.emplace_back(r.optString(f.value).value_or(""));
    });
  });
}

}  // namespace

void EndpointSliceDecoder::field(Field& f) {
  if (f.is("addressType")) {
    std::string_view text = r_.string(f.value);
    addressType_ = proxier::parseAddressType(text);
    if (!addressType_) {
      r_.fail(reason::kInvalidValue,
              fmt::format("unknown value {}; expected IPv4, IPv6 or FQDN", inQuotes(text)));
    }
  } else if (f.is("endpoints")) {
    Reader::Limit limit{proxier::kMaxEndpointsPerSlice, reason::kTooManyEndpoints,
                        "endpoints in one slice"};
    r_.forEachElement(f.value, limit, [&](size_t i, od::value& e) {
      endpoint_ = i;
      endpoint(e, slice_->endpoints.emplace_back());
    });
  } else if (f.is("ports")) {
    Reader::Limit limit{proxier::kMaxPortsPerSlice, reason::kTooManyPorts, "ports in one slice"};
    r_.forEachElement(f.value, limit, [&](size_t, od::value& e) { port(e); });
  }
}

void EndpointSliceDecoder::endpoint(od::value& v, proxier::Endpoint& ep) {
  bool haveAddresses = false;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("addresses")) {
      Reader::Limit limit{kMaxAddressesPerEndpoint, reason::kTooManyAddresses,
                          "addresses in one endpoint"};
      size_t n = r_.forEachElement(f.value, limit, [&](size_t, od::value& e) { address(e, ep); });
      haveAddresses = n > 0;
    } else if (f.is("conditions")) {
      r_.forEachField(f.value, [&](Field& c) {
        if (c.is("ready")) {
          ep.conditions.ready = r_.optBool(c.value);
        } else if (c.is("serving")) {
          ep.conditions.serving = r_.optBool(c.value);
        } else if (c.is("terminating")) {
          ep.conditions.terminating = r_.optBool(c.value);
        }
      });
    } else if (f.is("nodeName")) {
      ep.nodeName = r_.optString(f.value).value_or("");
    } else if (f.is("zone")) {
      ep.zone = r_.optString(f.value).value_or("");
    } else if (f.is("hints")) {
      r_.forEachField(f.value, [&](Field& h) {
        if (h.is("forZones")) {
          names(r_, h.value, ep.zoneHints);
        } else if (h.is("forNodes")) {
          names(r_, h.value, ep.nodeHints);
        }
      });
    }
  });
  if (!haveAddresses) {
    r_.path.push("addresses");
    noAddress_.emplace_back(endpoint_, r_.path.str());
    r_.path.pop();
  }
}

void EndpointSliceDecoder::address(od::value& v, proxier::Endpoint& ep) {
  std::string_view text = r_.string(v);
  // FQDN slices carry host names; the proxier skips them, so there is nothing to parse.
  if (addressType_ == proxier::AddressType::FQDN) return;
  auto ip = proxier::IpAddr::parse(text);
  if (ip) {
    ep.addresses.push_back(*ip);
    return;
  }
  badAddresses_.push_back({endpoint_, r_.path.str(), std::string(text)});
}

void EndpointSliceDecoder::port(od::value& v) {
  proxier::EndpointPort p;
  bool havePort = false;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("name")) {
      p.name = r_.optString(f.value).value_or("");
    } else if (f.is("protocol")) {
      auto text = r_.optString(f.value);
      if (!text) return;
      auto proto = proxier::parseProtocol(*text);
      if (!proto) {
        r_.fail(reason::kInvalidValue,
                fmt::format("unknown value {}; expected TCP, UDP or SCTP", inQuotes(*text)));
      }
      p.protocol = *proto;
    } else if (f.is("port")) {
      if (r_.isNull(f.value)) return;
      p.port = r_.port(f.value, 1);
      havePort = true;
    }
  });
  // A nil port means "all ports" in the API, which a service proxy cannot program; kube-proxy
  // skips such entries and so do we.
  if (havePort) slice_->ports.push_back(std::move(p));
}

// Every endpoint with a bad address, none, or one of the other family is left out with its
// first reason; the others are served.
void EndpointSliceDecoder::skipUnusable(proxier::EndpointSlice& s) {
  std::vector<std::optional<proxier::SkippedValue>> why(s.endpoints.size());
  auto mark = [&](size_t i, std::string field, std::string_view reason, std::string message) {
    if (i < why.size() && !why[i]) {
      why[i] = proxier::SkippedValue{std::move(field), std::string(reason),
                                     "endpoint left out: " + message};
    }
  };
  for (auto& [i, field] : noAddress_) {
    mark(i, field, reason::kMissingField, "an endpoint needs at least one address");
  }
  for (auto& b : badAddresses_) {
    mark(b.endpoint, b.field, reason::kInvalidIp,
         fmt::format("{} is not a valid {} address", inQuotes(b.text),
                     addressTypeName(s.addressType)));
  }
  const proxier::IpFamily want = familyOf(s.addressType);
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    const auto& addrs = s.endpoints[i].addresses;
    for (size_t j = 0; j < addrs.size(); ++j) {
      if (addrs[j].family == want) continue;
      mark(i, fmt::format("endpoints[{}].addresses[{}]", i, j), reason::kAddressFamilyMismatch,
           fmt::format("{} is an {} address but the slice's addressType is {}",
                       inQuotes(addrs[j].str()), proxier::familyName(addrs[j].family),
                       addressTypeName(s.addressType)));
      break;
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    if (why[i]) {
      s.skipped.push_back(std::move(*why[i]));
    } else {
      if (kept != i) s.endpoints[kept] = std::move(s.endpoints[i]);
      ++kept;
    }
  }
  s.endpoints.resize(kept);
}

proxier::SlicePtr EndpointSliceDecoder::finish(ObjectMeta&& meta) {
  proxier::EndpointSlice& s = *slice_;
  if (!addressType_) r_.failAt("addressType", reason::kMissingField, "addressType is required");
  s.addressType = *addressType_;
  if (s.addressType == proxier::AddressType::FQDN) {
    for (auto& ep : s.endpoints) ep.addresses.clear();
  } else {
    skipUnusable(s);
  }
  s.key = {std::move(meta.ns), std::move(meta.name)};
  s.resourceVersion = std::move(meta.resourceVersion);
  s.labels = std::move(meta.labels);
  s.triggerTime = meta.lastChangeTriggerTime;
  if (auto* svc = s.labels.get(proxier::kLabelServiceName)) s.serviceName = *svc;
  return std::move(slice_);
}

}  // namespace sliceproxy::slicewatch::detail
