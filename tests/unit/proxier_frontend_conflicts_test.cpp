// Two Services claiming one frontend: the older keeps it, deterministically, whatever order
// the events arrive in, and the other gets it back when the conflict ends.

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

class ConflictTest : public ProxierFixture {
 protected:
  ServicePtr at(SvcSpec spec, int secondsAfterEpoch) {
    auto s = service(spec);
    std::const_pointer_cast<Service>(s)->created =
        std::chrono::system_clock::time_point(std::chrono::seconds(secondsAfterEpoch));
    return s;
  }
  const ServicePortInfo* info(const std::string& name) {
    for (const auto* v : state.state().ports) {
      if (v->key().service.name == name) return v->info().get();
    }
    return nullptr;
  }
};

TEST_F(ConflictTest, ExternalIPOfAnotherServicesClusterIPGoesToTheOlder) {
  // The newer Service arrives first: arrival order must not decide.
  tracker.upsertService(
      at({.name = "thief", .clusterIPs = {"10.96.0.2"}, .externalIPs = {"10.96.0.1"}}, 200));
  tracker.upsertService(at({.name = "owner", .clusterIPs = {"10.96.0.1"}}, 100));
  sync();
  ASSERT_NE(info("owner"), nullptr);
  ASSERT_NE(info("thief"), nullptr);
  EXPECT_TRUE(info("thief")->externalIPs.empty());  // lost that address only
  EXPECT_EQ(state.conflicts().lost(), 1u);
  EXPECT_EQ(state.conflicts().losersOf({ip("10.96.0.1"), 80, Protocol::TCP, false}),
            (std::vector<ObjectKey>{{"default", "thief"}}));

  tracker.deleteService({"default", "owner"});
  Diff d = sync();
  ASSERT_NE(info("thief"), nullptr);
  EXPECT_EQ(info("thief")->externalIPs, std::vector<IpAddr>{ip("10.96.0.1")});
  EXPECT_EQ(state.conflicts().lost(), 0u);
  bool thiefUpdated = false;
  for (const auto& u : d.upserts) thiefUpdated |= u.view->key().service.name == "thief";
  EXPECT_TRUE(thiefUpdated) << "the freed frontend must reach the backend";
}

TEST_F(ConflictTest, SameClusterIPPortLosesTheWholePortAndSameNodePortOnlyTheNodePort) {
  tracker.upsertService(at({.name = "b", .clusterIPs = {"10.96.0.1"}}, 100));
  tracker.upsertService(at({.name = "a", .clusterIPs = {"10.96.0.1"}}, 100));  // same age
  SvcSpec np1{.name = "np1", .type = ServiceType::NodePort, .clusterIPs = {"10.96.0.5"}};
  np1.ports[0].nodePort = 30080;
  SvcSpec np2 = np1;
  np2.name = "np2";
  np2.clusterIPs = {"10.96.0.6"};
  tracker.upsertService(at(np2, 50));
  tracker.upsertService(at(np1, 60));
  sync();
  // Same age: namespace/name decides.
  EXPECT_NE(info("a"), nullptr);
  EXPECT_EQ(info("b"), nullptr);
  ASSERT_NE(info("np1"), nullptr);
  EXPECT_EQ(info("np1")->nodePort, 0);
  EXPECT_EQ(info("np2")->nodePort, 30080);
  EXPECT_EQ(state.conflicts().lost(), 2u);
}

TEST_F(ConflictTest, AServiceNamingItsOwnClusterIPAsExternalIPIsNoConflict) {
  tracker.upsertService(
      at({.name = "self", .clusterIPs = {"10.96.0.1"}, .externalIPs = {"10.96.0.1"}}, 1));
  sync();
  ASSERT_NE(info("self"), nullptr);
  EXPECT_EQ(state.conflicts().lost(), 0u);
}

}  // namespace
}  // namespace sliceproxy::testing
