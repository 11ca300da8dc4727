// The ChangeTracker records and marks dirty; it never merges.

#include <atomic>
#include <thread>

#include "proxier_fixture.h"

namespace sliceproxy::testing {
namespace {

TEST(TrackerTest, KeepsOnlyNewestObjectPerName) {
  ChangeTracker t("node-a", {});
  t.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
  t.upsertSlice(slice("a", "svc", {{"10.244.1.2"}}));
  t.upsertSlice(slice("b", "svc", {{"10.244.1.3"}}));
  auto c = t.take();
  ASSERT_EQ(c.services.size(), 1u);
  ASSERT_EQ(c.services[0].slices.size(), 2u);
  EXPECT_FALSE(c.services[0].serviceChanged);
  EXPECT_EQ(c.sliceEvents, 3u);
  for (auto& [name, s] : c.services[0].slices) {
    if (name == "a") {
      EXPECT_EQ(s->endpoints[0].addresses[0], ip("10.244.1.2"));
    }
  }
  EXPECT_TRUE(t.take().empty());
}

TEST(TrackerTest, DuplicatePortNameIsReportedAndTheFirstPortKept) {
  ChangeTracker t("node-a", {});
  SvcSpec spec;
  spec.ports = {{"http", Protocol::TCP, 80, 0, {8080, ""}},
                {"http", Protocol::UDP, 80, 0, {8080, ""}},   // another protocol: its own port
                {"http", Protocol::TCP, 81, 0, {8081, ""}}};  // the duplicate
  t.upsertService(service(spec));
  EXPECT_EQ(t.rejectionsByReason(), (std::map<std::string, uint64_t>{{"duplicate_port_name", 1}}));
  auto infos = buildServicePortInfos(*service(spec));
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0]->port, 80);
  SvcSpec fine;
  t.upsertService(service(fine));
  EXPECT_EQ(t.rejectionsByReason().at("duplicate_port_name"), 1u);
}

TEST(TrackerTest, DeleteOfUnknownSliceIsIgnored) {
  ChangeTracker t("node-a", {});
  t.deleteSlice({"default", "nope"});
  EXPECT_TRUE(t.take().empty());
}

TEST(TrackerTest, WaitsForEverySourceBeforeSyncing) {
  ChangeTracker t("node-a", {}, 2);
  EXPECT_FALSE(t.allSourcesSynced());
  t.synced();
  EXPECT_FALSE(t.allSourcesSynced());
  t.synced();
  EXPECT_TRUE(t.allSourcesSynced());
}

TEST(TrackerTest, BatchNotifiesOnceAtTheEnd) {
  ChangeTracker t("node-a", {});
  std::atomic<int> wakeups{0};
  t.setOnChange([&] { ++wakeups; });
  {
    BatchGuard batch(t);
    t.upsertService(service({}));
    t.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
    EXPECT_EQ(wakeups.load(), 0);
  }
  EXPECT_EQ(wakeups.load(), 1);
  t.upsertSlice(slice("b", "svc", {{"10.244.1.2"}}));
  EXPECT_EQ(wakeups.load(), 2);
}

TEST(TrackerTest, TakeNeverSplitsABatch) {
  ChangeTracker t("node-a", {});
  std::atomic<bool> taken{false};
  PendingChanges c;
  t.beginBatch();
  t.upsertService(service({}));
  std::thread syncer([&] {
    c = t.take();
    taken = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(taken.load());
  t.upsertSlice(slice("a", "svc", {{"10.244.1.1"}}));
  t.endBatch();
  syncer.join();
  ASSERT_EQ(c.services.size(), 1u);
  EXPECT_TRUE(c.services[0].serviceChanged);
  EXPECT_EQ(c.services[0].slices.size(), 1u);
}

}  // namespace
}  // namespace sliceproxy::testing
