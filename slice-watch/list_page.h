#pragma once
// One page of an API list response (ServiceList, EndpointSliceList, NodeList) decoded with
// simdjson on-demand: the list's resourceVersion and continue token, and every item as a typed
// object or a Rejection. One bad item costs only itself; text that is not JSON, or JSON that is
// not a list, makes the whole page unusable (error set).

#include <string>
#include <string_view>
#include <vector>

#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

struct ListPage {
  std::string resourceVersion;
  std::string continueToken;
  std::vector<DecodeResult> items;
  std::string error;  // non-empty: the page could not be read as a list
};

// `body` is the whole response body; it may be grown (simdjson needs padding after the text),
// its content is left unchanged. `kind` is the kind of the items (Service, EndpointSlice, Node).
ListPage decodeListPage(std::string& body, std::string_view kind, const DecodeOptions& opts);

}  // namespace sliceproxy::slicewatch
