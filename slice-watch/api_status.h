#pragma once
// The API server's Status object (the body of an error answer, or an ERROR watch event), and
// what a watch makes of it: whether the resourceVersion it asked for cannot be served, so that
// only a new list helps.

#include <string>
#include <string_view>
#include <vector>

namespace sliceproxy::slicewatch {

struct ApiStatus {
  int code = 0;  // Status.code, else the HTTP status
  std::string reason, message;
  std::vector<std::string> causes;  // details.causes[].reason
};

// A body that is not a Status gives `httpStatus` and a one-line excerpt of the body as message.
ApiStatus parseStatusBody(int httpStatus, const std::string& body);

// 410 Gone / reason Expired or Gone: the resourceVersion was compacted away.
bool isExpired(const ApiStatus& s);
// 504 "Too large resource version" (client-go's isTooLargeResourceVersionError): the server
// has not reached our resourceVersion (restored etcd, a lagging replica) and may never.
bool isTooLargeResourceVersion(const ApiStatus& s);
// Resuming the watch from our resourceVersion cannot work: expired, too large, or refused as a
// bad request (the only thing a watch request carries besides selectors the list accepted is
// the resourceVersion). A list, which reads without one, is what helps.
bool needsRelist(const ApiStatus& s);

}  // namespace sliceproxy::slicewatch
