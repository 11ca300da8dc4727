#include <fmt/format.h>

#include "proxier/core/events.h"

namespace sliceproxy::proxier {

std::string Rejection::describe() const {
  std::string out;
  if (!origin.empty()) out += origin + ": ";
  if (!kind.empty()) out += kind + " ";
  if (!object.empty()) out += object + " ";
  if (!field.empty()) out += "field " + field + ": ";
  out += message;
  return out;
}

}  // namespace sliceproxy::proxier
