#pragma once
// The `reason` tokens a Rejection can carry. They become metric labels, so the set is closed and
// every token is spelled once, here.

#include <string_view>

namespace sliceproxy::slicewatch::reason {

inline constexpr std::string_view kMalformedJson = "malformed_json";
inline constexpr std::string_view kMalformedYaml = "malformed_yaml";
inline constexpr std::string_view kReadError = "read_error";  // transient: retried
// Too large for --manifest-max-file-bytes, not a regular file, a dangling symlink or a loop:
// read again only when it changes.
inline constexpr std::string_view kFileRefused = "file_refused";
inline constexpr std::string_view kUnknownKind = "unknown_kind";
inline constexpr std::string_view kMissingField = "missing_field";
inline constexpr std::string_view kWrongType = "wrong_type";
inline constexpr std::string_view kInvalidValue =
    "invalid_value";  // unknown enum value, empty name
inline constexpr std::string_view kInvalidIp = "invalid_ip";
inline constexpr std::string_view kInvalidCidr = "invalid_cidr";
inline constexpr std::string_view kPortOutOfRange = "port_out_of_range";
inline constexpr std::string_view kValueOutOfRange = "value_out_of_range";
inline constexpr std::string_view kAddressFamilyMismatch = "address_family_mismatch";
inline constexpr std::string_view kDuplicateIpFamily = "duplicate_ip_family";
inline constexpr std::string_view kTooManyAddresses = "too_many_addresses";
inline constexpr std::string_view kTooManyEndpoints = "too_many_endpoints";
inline constexpr std::string_view kTooManyPorts = "too_many_ports";
inline constexpr std::string_view kDuplicateObject = "duplicate_object";

// A document-level failure means nothing after the failure point was read, so a consumer must not
// treat the objects it did get as the complete content of the document.
inline bool isDocumentLevel(std::string_view r) {
  return r == kMalformedJson || r == kMalformedYaml || r == kReadError || r == kFileRefused;
}

}  // namespace sliceproxy::slicewatch::reason
