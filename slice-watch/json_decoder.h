#pragma once
// JSON decoding of Service (v1), EndpointSlice (discovery.k8s.io/v1) and Node (v1) into the
// typed model, with simdjson's on-demand API: one pass over the text, no DOM, every IP and CIDR
// string parsed once into binary form.
//
// Rules (shared by every source, so a manifest file and an API watch event behave the same):
// - Unknown fields are ignored; the API adds fields all the time. Unknown kinds are rejected.
// - null means unset, as in Go. Absent or empty enum strings take the API default (Service type
//   ClusterIP, protocol TCP, traffic policies Cluster, sessionAffinity None, ipMode VIP).
// - Endpoint conditions keep nil as std::nullopt. An EndpointSlice port with a nil port number is
//   dropped, as kube-proxy does. A Service port without targetPort gets targetPort = port, as the
//   API server would have defaulted it. spec.clusterIPs wins over spec.clusterIP, spec.podCIDRs
//   over spec.podCIDR; clusterIP "None" makes the Service headless.
// - metadata.namespace defaults to "default" (and is dropped for Nodes); metadata.name is
//   required.
// - Each object that breaks a rule becomes one Rejection carrying the first problem found: the
//   field path relative to the object (spec.ports[1].port, endpoints[3].addresses[0]), a reason
//   token from reasons.h, and a message. The object's namespace/name is filled whenever the
//   metadata could be read, even if the problem comes before it in the text.
// - Malformed JSON is one malformed_json Rejection for the whole document (decodeJsonDocument
//   checks the syntax of the whole text before decoding any of it).

#include <simdjson.h>

#include <string_view>
#include <vector>

#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

// Decodes one object from a stream the caller is iterating (an API list item, a watch event's
// "object"). kindHint names the kind when the object may not carry one (items of a ServiceList
// have no "kind"); when both exist they must agree. An empty hint means "read it from the
// object". Never throws: malformed JSON comes back as a malformed_json Rejection, after which the
// caller's iterator is unusable.
DecodeResult decodeObject(simdjson::ondemand::object obj, std::string_view kindHint,
                          const DecodeOptions& opts);

// Decodes a whole JSON document: a single object, a "List" (items carry their kind), or a typed
// list such as "ServiceList" (items take the kind from the list). Blank text holds no objects.
// For a list item that cannot be named, the field path is prefixed with items[i] so it can still
// be found. Thread-safe (one parser per thread).
std::vector<DecodeResult> decodeJsonDocument(std::string_view text, const DecodeOptions& opts);

}  // namespace sliceproxy::slicewatch
