#include "slice-watch/api_status.h"

#include <simdjson.h>

namespace sliceproxy::slicewatch {

ApiStatus parseStatusBody(int httpStatus, const std::string& body) {
  ApiStatus s;
  s.code = httpStatus;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(body).get(doc) == simdjson::SUCCESS && doc.is_object()) {
    std::string_view text;
    int64_t code = 0;
    if (doc["message"].get(text) == simdjson::SUCCESS) s.message = text;
    if (doc["reason"].get(text) == simdjson::SUCCESS) s.reason = text;
    if (doc["code"].get(code) == simdjson::SUCCESS && code > 0) s.code = static_cast<int>(code);
    simdjson::dom::array causes;
    if (doc["details"]["causes"].get(causes) == simdjson::SUCCESS) {
      for (auto cause : causes) {
        if (cause["reason"].get(text) == simdjson::SUCCESS) s.causes.emplace_back(text);
      }
    }
    if (!s.message.empty() || !s.reason.empty()) return s;
  }
  s.message = body.substr(0, 200);
  for (char& c : s.message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

bool isExpired(const ApiStatus& s) {
  return s.code == 410 || s.reason == "Expired" || s.reason == "Gone";
}

bool isTooLargeResourceVersion(const ApiStatus& s) {
  for (const auto& c : s.causes) {
    if (c == "ResourceVersionTooLarge") return true;
  }
  // Servers before the cause existed said it only in the message.
  return (s.code == 504 || s.reason == "Timeout") &&
         s.message.find("Too large resource version") != std::string::npos;
}

bool needsRelist(const ApiStatus& s) {
  return isExpired(s) || isTooLargeResourceVersion(s) || s.code == 400;
}

}  // namespace sliceproxy::slicewatch
