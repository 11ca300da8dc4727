#include "slice-watch/decoded_object.h"

namespace sliceproxy::slicewatch {

namespace {
template <class... F>
struct Overload : F... {
  using F::operator()...;
};
template <class... F>
Overload(F...) -> Overload<F...>;
}  // namespace

bool sameContent(const ObjectPtr& a, const ObjectPtr& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& pa) {
        const auto& pb = std::get<std::decay_t<decltype(pa)>>(b);
        return pa == pb || (pa && pb && *pa == *pb);
      },
      a);
}

void deliverUpsert(proxier::EventSink& sink, const DecodedObject& obj) {
  std::visit(Overload{[&](const proxier::ServicePtr& p) { sink.upsertService(p); },
                      [&](const proxier::SlicePtr& p) { sink.upsertSlice(p); },
                      [&](const proxier::NodePtr& p) { sink.upsertNode(p); }},
             obj.object);
}

void deliverDelete(proxier::EventSink& sink, std::string_view kind, const proxier::ObjectKey& key) {
  if (kind == kKindService) {
    sink.deleteService(key);
  } else if (kind == kKindEndpointSlice) {
    sink.deleteSlice(key);
  } else if (kind == kKindNode) {
    sink.deleteNode(key);
  }
}

}  // namespace sliceproxy::slicewatch
