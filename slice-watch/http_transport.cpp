#include "slice-watch/http_transport.h"

namespace sliceproxy::slicewatch {

std::string readAll(HttpResponse& response) {
  std::string body;
  while (response.read(body)) {
  }
  return body;
}

}  // namespace sliceproxy::slicewatch
