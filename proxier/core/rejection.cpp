#include <fmt/format.h>

#include "proxier/core/events.h"
#include "proxier/core/log_text.h"

namespace sliceproxy::proxier {

std::string Rejection::describe() const {
  std::string out;
  if (!origin.empty()) out += origin + ": ";
  if (!kind.empty()) out += kind + " ";
  if (!object.empty()) out += object + " ";
  if (!field.empty()) out += "field " + field + ": ";
  out += message;
  // Every part may come from the input: a file name, an object name, a quoted bad value.
  return printable(out);
}

}  // namespace sliceproxy::proxier
