#pragma once
// Standard base64 (RFC 4648, with or without padding, whitespace ignored): kubeconfig's
// certificate-authority-data, client-certificate-data and client-key-data.

#include <optional>
#include <string>
#include <string_view>

namespace sliceproxy::slicewatch {

// nullopt when the text is not base64.
std::optional<std::string> decodeBase64(std::string_view text);

}  // namespace sliceproxy::slicewatch
