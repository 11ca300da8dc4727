// The body of an API error answer (a Status, or whatever a proxy in front of the server sent),
// and an exec credential plugin's output: both end up in log lines and decisions.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "slice-watch/api_status.h"
#include "slice-watch/exec_credential.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  auto status = sliceproxy::slicewatch::parseStatusBody(410, body);
  (void)sliceproxy::slicewatch::needsRelist(status);
  try {
    auto cred =
        sliceproxy::slicewatch::parseExecCredential(body, "client.authentication.k8s.io/v1");
    (void)cred;
  } catch (const std::runtime_error&) {
  }
  return 0;
}
