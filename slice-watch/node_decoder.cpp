#include "slice-watch/node_decoder.h"

#include <fmt/format.h>

#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch::detail {

void NodeDecoder::field(Field& f) {
  if (f.is("spec")) {
    spec(f.value);
  } else if (f.is("status")) {
    r_.forEachField(f.value, [&](Field& s) {
      if (s.is("addresses")) r_.forEachElement(s.value, [&](size_t, od::value& e) { address(e); });
    });
  }
}

void NodeDecoder::spec(od::value& v) {
  proxier::Node& n = *node_;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("podCIDR")) {
      if (r_.isNull(f.value)) return;
      std::string_view text = r_.string(f.value);
      if (text.empty()) return;
      podCIDR_ = cidrOrSkip(text);
    } else if (f.is("podCIDRs")) {
      r_.forEachElement(f.value, [&](size_t, od::value& e) {
        havePodCIDRs_ = true;
        if (auto c = cidrOrSkip(r_.string(e))) n.podCIDRs.push_back(*c);
      });
    } else if (f.is("taints")) {
      r_.forEachElement(f.value, [&](size_t, od::value& e) {
        proxier::Taint& t = n.taints.emplace_back();
        r_.forEachField(e, [&](Field& tf) {
          if (tf.is("key")) {
            t.key = r_.optString(tf.value).value_or("");
          } else if (tf.is("value")) {
            t.value = r_.optString(tf.value).value_or("");
          } else if (tf.is("effect")) {
            t.effect = r_.optString(tf.value).value_or("");
          }
        });
      });
    }
  });
}

void NodeDecoder::address(od::value& v) {
  proxier::NodeAddress& a = node_->addresses.emplace_back();
  bool haveText = false;
  r_.forEachField(v, [&](Field& f) {
    if (f.is("type")) {
      a.type = r_.optString(f.value).value_or("");
    } else if (f.is("address")) {
      a.text = r_.optString(f.value).value_or("");
      haveText = true;
    }
  });
  if (!haveText) {
    r_.path.push("address");
    node_->skipped.push_back({r_.path.str(), std::string(reason::kMissingField),
                              "address left out: a node address needs an address"});
    r_.path.pop();
    node_->addresses.pop_back();
    return;
  }
  // InternalIP and ExternalIP carry addresses; Hostname and InternalDNS carry names. The API
  // server does not check them, so one that does not parse is left out, not the Node.
  if (a.type.ends_with("IP")) {
    a.ip = proxier::IpAddr::parse(a.text);
    if (!a.ip) {
      r_.path.push("address");
      node_->skipped.push_back(
          {r_.path.str(), std::string(reason::kInvalidIp),
           fmt::format("address left out: {} is not a valid IP address", inQuotes(a.text))});
      r_.path.pop();
      node_->addresses.pop_back();
    }
  }
}

// A pod CIDR that does not parse is left out, with why; the Node's other fields still count.
std::optional<proxier::Cidr> NodeDecoder::cidrOrSkip(std::string_view text) {
  auto c = proxier::Cidr::parse(text);
  if (!c) {
    node_->skipped.push_back(
        {r_.path.str(), std::string(reason::kInvalidCidr),
         fmt::format("pod CIDR left out: {} is not a valid CIDR", inQuotes(text))});
  }
  return c;
}

proxier::NodePtr NodeDecoder::finish(ObjectMeta&& meta) {
  proxier::Node& n = *node_;
  if (!havePodCIDRs_ && podCIDR_) n.podCIDRs.push_back(*podCIDR_);
  n.key = {"", std::move(meta.name)};  // cluster-scoped: a namespace in the manifest means nothing
  n.resourceVersion = std::move(meta.resourceVersion);
  n.labels = std::move(meta.labels);
  n.beingDeleted = meta.deletionTimestampSet;
  return std::move(node_);
}

}  // namespace sliceproxy::slicewatch::detail
