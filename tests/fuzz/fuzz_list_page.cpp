// One page of a list response (ServiceList, EndpointSliceList, NodeList); the first byte picks
// the kind.
#include "slice-watch/list_page.h"
#include "tests/fuzz/kind_byte.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto in = sliceproxy::fuzz::splitKind(data, size);
  sliceproxy::slicewatch::DecodeOptions opts{"fuzz list"};
  auto page = sliceproxy::slicewatch::decodeListPage(in.rest, in.kind, opts);
  (void)page;
  return 0;
}
