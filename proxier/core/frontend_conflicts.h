#pragma once
// Two Services can claim one frontend: the same clusterIP and port (two manifests), the same
// nodePort, or an externalIP that is another Service's address (the API server's allocators
// stop the first two in a cluster, nothing stops the third: the CVE-2020-8554 class). Without
// a rule, whichever Service was programmed last silently takes the traffic. The rule: the
// older Service (metadata.creationTimestamp, then namespace/name) keeps the frontend; the other
// loses only that frontend (a lost clusterIP port loses the whole service port, a lost
// externalIP, load-balancer IP or nodePort only that address), is logged once when it loses it,
// and is counted until the conflict ends.

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxier/core/object_events.h"
#include "proxier/core/service_port.h"
#include "proxier/model/service.h"

namespace sliceproxy::proxier {

struct Frontend {
  IpAddr addr;  // unset (all zero) for a nodePort
  uint16_t port = 0;
  Protocol protocol = Protocol::TCP;
  bool nodePort = false;
  friend auto operator<=>(const Frontend&, const Frontend&) = default;
  std::string str() const;
};

class FrontendConflicts {
 public:
  // Records what the Service `key` claims now: the frontends of its service ports `infos`
  // (empty: it was deleted). Every other Service sharing a frontend it claimed before or claims
  // now goes into `affected`: its share may have changed.
  void update(const ObjectKey& key, std::chrono::system_clock::time_point created,
              const std::vector<ServicePortInfoPtr>& infos, std::set<ObjectKey>& affected);

  // Takes out of `infos` (built from `key`'s Service) the frontends it lost, logging a loss
  // the first time it is seen.
  void filter(const ObjectKey& key, std::vector<ServicePortInfoPtr>& infos);

  // Where losses are also reported as Warning events on the losing Service (may be null).
  void setEvents(ObjectEvents* events) { events_ = events; }

  // (Service, frontend) pairs lost right now: the gauge sliceproxy_service_frontend_conflicts.
  size_t lost() const;
  // The Services that claim `f` and lost it to its owner, for explain.
  std::vector<ObjectKey> losersOf(const Frontend& f) const;
  // Who serves `f`; null when nobody claims it.
  const ObjectKey* ownerOf(const Frontend& f) const;

 private:
  struct Claimant {
    std::chrono::system_clock::time_point created;
    ObjectKey key;
    friend auto operator<=>(const Claimant&, const Claimant&) = default;
  };
  struct Claims {
    std::chrono::system_clock::time_point created;
    std::vector<Frontend> frontends;
  };

  bool owns(const ObjectKey& key, const Frontend& f) const;

  std::map<Frontend, std::set<Claimant>> claimants_;
  std::unordered_map<ObjectKey, Claims, ObjectKeyHash> claims_;
  std::unordered_map<ObjectKey, std::set<Frontend>, ObjectKeyHash> reported_;  // losses logged
  ObjectEvents* events_ = nullptr;
};

}  // namespace sliceproxy::proxier
