// The list+watch loop against scripted API responses: paging, resume from the last
// resourceVersion, 410 relists that deliver only the difference, rejections, malformed streams,
// failures with backoff, and stop().

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "slice-watch/reflector.h"

namespace sliceproxy::slicewatch {
namespace {

using namespace std::chrono_literals;

constexpr auto kTimeout = 5s;

// One scripted HTTP response: a status, body pieces, then how the body ends.
struct Reply {
  int status = 200;
  std::vector<std::string> pieces;
  enum class End { Clean, Drop, Hang } end = End::Clean;
  int retryAfter = 0;  // the Retry-After header, seconds
};

class FakeTransport : public HttpTransport {
 public:
  void push(Reply r) {
    std::lock_guard lock(mu_);
    script_.push_back(std::move(r));
    cv_.notify_all();
  }
  // A connection failure instead of a response.
  void pushFailure() { push(Reply{-1, {}, Reply::End::Clean}); }
  // Makes the hanging watch (now or next) end cleanly, as timeoutSeconds would.
  void endHang() {
    std::lock_guard lock(mu_);
    ++hangsEnded_;
    cv_.notify_all();
  }

  std::unique_ptr<HttpResponse> get(const std::string& target, std::chrono::seconds) override {
    std::unique_lock lock(mu_);
    targets_.push_back(target);
    times_.push_back(std::chrono::steady_clock::now());
    cv_.notify_all();
    cv_.wait(lock, [&] { return cancelled_ || !script_.empty(); });
    if (cancelled_) throw Cancelled();
    Reply r = std::move(script_.front());
    script_.pop_front();
    if (r.status < 0) throw TransportError("connection refused");
    return std::make_unique<Response>(*this, std::move(r));
  }
  void cancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    cv_.notify_all();
  }
  void credentialsRejected() override {
    std::lock_guard lock(mu_);
    ++rejectedCredentials_;
  }

  // Waits until `n` requests were made; returns them all.
  std::vector<std::string> waitTargets(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kTimeout, [&] { return targets_.size() >= n; });
    return targets_;
  }
  // When the i-th request was made.
  std::chrono::steady_clock::time_point timeOf(size_t i) {
    std::lock_guard lock(mu_);
    return times_.at(i);
  }
  int rejectedCredentials() {
    std::lock_guard lock(mu_);
    return rejectedCredentials_;
  }

 private:
  class Response : public HttpResponse {
   public:
    Response(FakeTransport& t, Reply r) : t_(t), r_(std::move(r)) {
      status_ = r_.status;
      retryAfter_ = std::chrono::seconds(r_.retryAfter);
    }
    bool read(std::string& out) override {
      if (next_ < r_.pieces.size()) {
        out += r_.pieces[next_++];
        return true;
      }
      if (r_.end == Reply::End::Drop) throw TransportError("connection reset by peer");
      if (r_.end == Reply::End::Hang) {
        std::unique_lock lock(t_.mu_);
        t_.cv_.wait(lock, [&] { return t_.cancelled_ || t_.hangsEnded_ > 0; });
        if (t_.cancelled_) throw Cancelled();
        --t_.hangsEnded_;
      }
      return false;
    }

   private:
    FakeTransport& t_;
    Reply r_;
    size_t next_ = 0;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Reply> script_;
  std::vector<std::string> targets_;
  std::vector<std::chrono::steady_clock::time_point> times_;
  bool cancelled_ = false;
  int hangsEnded_ = 0;
  int rejectedCredentials_ = 0;
};

class RecordingSink : public proxier::EventSink {
 public:
  void upsertService(proxier::ServicePtr s) override { add("upsert Service " + s->key.str()); }
  void deleteService(const proxier::ObjectKey& k) override { add("delete Service " + k.str()); }
  void upsertSlice(proxier::SlicePtr s) override {
    add("upsert EndpointSlice " + s->key.str() + " " + s->endpoints.at(0).addresses.at(0).str());
  }
  void deleteSlice(const proxier::ObjectKey& k) override { add("delete EndpointSlice " + k.str()); }
  void upsertNode(proxier::NodePtr n) override { add("upsert Node " + n->key.str()); }
  void deleteNode(const proxier::ObjectKey& k) override { add("delete Node " + k.str()); }
  void rejected(const proxier::Rejection& r) override {
    add("rejected " + r.kind + " " + r.object + " " + r.field);
  }
  void synced() override { add("synced"); }
  void beginBatch() override { add("{"); }
  void endBatch() override { add("}"); }

  // Waits for n events and returns them, leaving any later ones for the next call.
  std::vector<std::string> take(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kTimeout, [&] { return events_.size() >= n; });
    size_t k = std::min(n, events_.size());
    std::vector<std::string> out(events_.begin(), events_.begin() + k);
    events_.erase(events_.begin(), events_.begin() + k);
    return out;
  }
  // Everything that arrives within `quiet`.
  std::vector<std::string> rest(std::chrono::milliseconds quiet = 150ms) {
    std::this_thread::sleep_for(quiet);
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    out.swap(events_);
    return out;
  }

 private:
  void add(std::string e) {
    std::lock_guard lock(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

std::string slice(const std::string& name, const std::string& ip, const std::string& rv,
                  int port = 8080) {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"ns","resourceVersion":")" + rv +
         R"(","labels":{"kubernetes.io/service-name":"svc"}},"addressType":"IPv4",)"
         R"("endpoints":[{"addresses":[")" +
         ip + R"("]}],"ports":[{"port":)" + std::to_string(port) + "}]}";
}

std::string page(const std::string& rv, const std::vector<std::string>& items,
                 const std::string& cont = "") {
  std::string s = R"({"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{)"
                  R"("resourceVersion":")" +
                  rv + "\"";
  if (!cont.empty()) s += R"(,"continue":")" + cont + "\"";
  s += R"(},"items":[)";
  for (size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + items[i];
  return s + "]}";
}

std::string event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}\n";
}

std::string bookmark(const std::string& rv) {
  return event("BOOKMARK",
               R"({"kind":"EndpointSlice","metadata":{"resourceVersion":")" + rv + "\"}}");
}

std::string gone() {
  return event("ERROR", R"({"kind":"Status","status":"Failure","reason":"Expired","code":410,)"
                        R"("message":"too old resource version"})");
}

class SlicewatchApiReflector : public ::testing::Test {
 protected:
  void start(size_t pageSize = 500, BackoffPolicy backoff = {1ms, 5ms, 2.0, 0.2}) {
    ReflectorOptions o;
    o.pageSize = pageSize;
    o.minWatchTimeout = 300s;
    o.maxWatchTimeout = 600s;
    o.backoff = backoff;
    o.origin = "https://api";
    reflector_ = std::make_unique<Reflector>(endpointSlicesResource(""), o, transport_, sink_,
                                             [this] { sink_.synced(); });
    thread_ = std::thread([this] { reflector_->run(); });
  }
  void TearDown() override {
    if (reflector_) reflector_->stop();
    if (thread_.joinable()) thread_.join();
  }
  static std::string param(const std::string& target, const std::string& name) {
    auto p = target.find(name + "=");
    if (p == std::string::npos) return "<none>";
    auto e = target.find('&', p);
    return target.substr(p + name.size() + 1, e == std::string::npos ? e : e - p - name.size() - 1);
  }

  FakeTransport transport_;
  RecordingSink sink_;
  std::unique_ptr<Reflector> reflector_;
  std::thread thread_;
};

TEST_F(SlicewatchApiReflector, PagedListThenWatchFromItsResourceVersion) {
  transport_.push(
      {200, {page("10", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.2", "6")}, "tok")}});
  transport_.push({200, {page("10", {slice("c", "10.0.0.3", "7")})}});
  transport_.push({200,
                   {event("ADDED", slice("d", "10.0.0.4", "11")),
                    event("MODIFIED", slice("a", "10.0.0.9", "12")),
                    // A replayed event with unchanged content changes nothing.
                    event("MODIFIED", slice("b", "10.0.0.2", "6")),
                    event("DELETED", slice("c", "10.0.0.3", "13")),
                    // A delete of something never seen changes nothing either.
                    event("DELETED", slice("zz", "10.0.0.3", "14")), bookmark("15")},
                   Reply::End::Hang});
  start(2);
  EXPECT_EQ(
      sink_.take(9),
      (std::vector<std::string>{
          "{", "upsert EndpointSlice ns/a 10.0.0.1", "upsert EndpointSlice ns/b 10.0.0.2",
          "upsert EndpointSlice ns/c 10.0.0.3", "}", "synced", "upsert EndpointSlice ns/d 10.0.0.4",
          "upsert EndpointSlice ns/a 10.0.0.9", "delete EndpointSlice ns/c"}));
  auto targets = transport_.waitTargets(3);
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_EQ(param(targets[0], "limit"), "2");
  EXPECT_EQ(param(targets[0], "continue"), "<none>");
  EXPECT_EQ(param(targets[1], "continue"), "tok");
  EXPECT_EQ(param(targets[2], "watch"), "true");
  EXPECT_EQ(param(targets[2], "allowWatchBookmarks"), "true");
  EXPECT_EQ(param(targets[2], "resourceVersion"), "10");
  int timeout = std::stoi(param(targets[2], "timeoutSeconds"));
  EXPECT_GE(timeout, 300);
  EXPECT_LE(timeout, 600);
  EXPECT_NE(param(targets[2], "labelSelector"), "<none>");

  // The watch ends (timeout): it resumes from the bookmark's resourceVersion, with no relist.
  transport_.push({200, {}, Reply::End::Hang});
  transport_.endHang();
  targets = transport_.waitTargets(4);
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_EQ(param(targets[3], "watch"), "true");
  EXPECT_EQ(param(targets[3], "resourceVersion"), "15");
  auto st = reflector_->status();
  EXPECT_TRUE(st.listed);
  EXPECT_EQ(st.lists, 1u);
  EXPECT_EQ(st.resourceVersion, "15");
}

TEST_F(SlicewatchApiReflector, ExpiredResourceVersionRelistsAndDeliversOnlyTheDifference) {
  transport_.push({200,
                   {page("10", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.2", "6"),
                                slice("c", "10.0.0.3", "7")})}});
  transport_.push({200, {gone()}});
  // The relist: a unchanged, b changed, c gone, d new.
  transport_.push({200,
                   {page("20", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.8", "16"),
                                slice("d", "10.0.0.4", "17")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(6).size(), 6u);  // the initial list and synced
  EXPECT_EQ(sink_.take(5), (std::vector<std::string>{"{", "upsert EndpointSlice ns/b 10.0.0.8",
                                                     "upsert EndpointSlice ns/d 10.0.0.4",
                                                     "delete EndpointSlice ns/c", "}"}));
  EXPECT_EQ(sink_.rest(), std::vector<std::string>{});
  auto targets = transport_.waitTargets(4);
  EXPECT_EQ(param(targets[3], "resourceVersion"), "20");
  EXPECT_EQ(reflector_->status().lists, 2u);
}

TEST_F(SlicewatchApiReflector, ExpiredAsHttpStatusAndRelistWithNoChangeIsSilent) {
  transport_.push({200, {page("10", {slice("a", "10.0.0.1", "5")})}});
  transport_.push({410, {R"({"kind":"Status","code":410,"reason":"Gone"})"}});
  transport_.push({200, {page("30", {slice("a", "10.0.0.1", "5")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(4).size(), 4u);
  EXPECT_EQ(sink_.take(2), (std::vector<std::string>{"{", "}"})) << "an empty batch, no event";
  EXPECT_EQ(sink_.rest(), std::vector<std::string>{});
  auto targets = transport_.waitTargets(4);
  EXPECT_EQ(param(targets[3], "resourceVersion"), "30");
}

TEST_F(SlicewatchApiReflector, FailuresBackOffAndNeverDelete) {
  transport_.pushFailure();
  transport_.push({503, {R"({"kind":"Status","message":"etcd is down"})"}});
  transport_.push({200, {page("10", {slice("a", "10.0.0.1", "5")})}});
  // The watch: refused twice, dropped mid-stream (after an event), refused, then resumed.
  transport_.pushFailure();
  transport_.pushFailure();
  transport_.push({200, {event("ADDED", slice("b", "10.0.0.2", "11"))}, Reply::End::Drop});
  transport_.pushFailure();
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(5),
            (std::vector<std::string>{"{", "upsert EndpointSlice ns/a 10.0.0.1", "}", "synced",
                                      "upsert EndpointSlice ns/b 10.0.0.2"}));
  auto targets = transport_.waitTargets(8);
  ASSERT_EQ(targets.size(), 8u);
  EXPECT_EQ(param(targets[1], "watch"), "<none>") << "the list is retried";
  EXPECT_EQ(param(targets[2], "watch"), "<none>");
  EXPECT_EQ(param(targets[3], "resourceVersion"), "10");
  EXPECT_EQ(param(targets[6], "resourceVersion"), "11") << "resumes after the last event";
  EXPECT_EQ(param(targets[7], "resourceVersion"), "11");
  EXPECT_EQ(sink_.rest(), std::vector<std::string>{});
}

// A 429 with Retry-After: the next request waits at least that long, whatever the backoff says,
// on a list as on a watch.
TEST_F(SlicewatchApiReflector, RetryAfterIsRespected) {
  const std::string slow = R"({"kind":"Status","message":"slow down"})";
  transport_.push({429, {slow}, Reply::End::Clean, 1});
  transport_.push({200, {page("10", {slice("a", "10.0.0.1", "5")})}});
  transport_.push({429, {slow}, Reply::End::Clean, 1});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  auto targets = transport_.waitTargets(4);
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_GE(transport_.timeOf(1) - transport_.timeOf(0), 1s) << "the list";
  EXPECT_GE(transport_.timeOf(3) - transport_.timeOf(2), 1s) << "the watch";
}

TEST_F(SlicewatchApiReflector, RejectedObjectsKeepTheirLastGoodVersion) {
  transport_.push({200, {page("10", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.2", "6")})}});
  transport_.push({200,
                   {event("MODIFIED", slice("a", "10.0.0.7", "11", 99999)),
                    event("ADDED", slice("c", "10.0.0.3", "12"))},
                   Reply::End::Clean});
  transport_.push({200, {gone()}});
  // After the relist a is still invalid and b is invalid too: neither is deleted.
  transport_.push({200,
                   {page("20", {slice("a", "10.0.0.7", "11", 99999),
                                slice("b", "10.0.0.2", "18", 0), slice("c", "10.0.0.3", "12")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(5).size(), 5u);
  EXPECT_EQ(sink_.take(6),
            (std::vector<std::string>{"rejected EndpointSlice ns/a ports[0].port",
                                      "upsert EndpointSlice ns/c 10.0.0.3", "{",
                                      "rejected EndpointSlice ns/a ports[0].port",
                                      "rejected EndpointSlice ns/b ports[0].port", "}"}));
  EXPECT_EQ(sink_.rest(), std::vector<std::string>{}) << "no delete for a and b";
}

TEST_F(SlicewatchApiReflector, MalformedStreamRestartsTheWatchFromTheLastResourceVersion) {
  transport_.push({200, {page("10", {})}});
  transport_.push({200,
                   {event("ADDED", slice("a", "10.0.0.1", "11")), "garbage, not JSON\n",
                    event("ADDED", slice("never", "10.0.0.2", "12"))},
                   Reply::End::Hang});
  transport_.push({200, {event("ADDED", slice("b", "10.0.0.2", "13"))}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(5),
            (std::vector<std::string>{"{", "}", "synced", "upsert EndpointSlice ns/a 10.0.0.1",
                                      "upsert EndpointSlice ns/b 10.0.0.2"}));
  auto targets = transport_.waitTargets(3);
  EXPECT_EQ(param(targets[2], "resourceVersion"), "11");
}

TEST_F(SlicewatchApiReflector, EventsSplitAcrossReadsAndUnauthorized) {
  transport_.push({401, {R"({"kind":"Status","message":"Unauthorized","code":401})"}});
  std::string e = event("ADDED", slice("a", "10.0.0.1", "11"));
  transport_.push({200, {page("10", {})}});
  transport_.push({200,
                   {e.substr(0, 10), e.substr(10, 30), e.substr(40) + bookmark("12").substr(0, 5),
                    bookmark("12").substr(5)},
                   Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(4),
            (std::vector<std::string>{"{", "}", "synced", "upsert EndpointSlice ns/a 10.0.0.1"}));
  EXPECT_EQ(transport_.rejectedCredentials(), 1);
}

TEST_F(SlicewatchApiReflector, ExpiredContinueTokenRestartsTheList) {
  transport_.push({200, {page("10", {slice("a", "10.0.0.1", "5")}, "tok")}});
  transport_.push({410, {R"({"kind":"Status","code":410,"reason":"Expired"})"}});
  transport_.push({200, {page("20", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.2", "19")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start(1);
  EXPECT_EQ(sink_.take(5),
            (std::vector<std::string>{"{", "upsert EndpointSlice ns/a 10.0.0.1",
                                      "upsert EndpointSlice ns/b 10.0.0.2", "}", "synced"}));
  auto targets = transport_.waitTargets(4);
  EXPECT_EQ(param(targets[2], "continue"), "<none>");
  EXPECT_EQ(param(targets[3], "resourceVersion"), "20");
}

TEST_F(SlicewatchApiReflector, StopInterruptsAHangingWatch) {
  transport_.push({200, {page("10", {})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(3).size(), 3u);
  auto deadline = std::chrono::steady_clock::now() + kTimeout;
  while (!reflector_->status().watching && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_TRUE(reflector_->status().watching);
  auto t0 = std::chrono::steady_clock::now();
  reflector_->stop();
  thread_.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_FALSE(reflector_->status().watching);
}

// k8s.io/apiserver's NewTooLargeResourceVersionError, as a watch request's answer.
const char* kTooLarge =
    R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"Too large resource )"
    R"(version: 40, current: 20","reason":"Timeout","details":{"causes":[{"reason":)"
    R"("ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},)"
    R"("code":504})";

bool isList(const std::string& target) {
  return target.find("watch=true") == std::string::npos;
}

TEST_F(SlicewatchApiReflector, TooLargeResourceVersionRelists) {
  transport_.push({200, {page("40", {slice("a", "10.0.0.1", "5"), slice("b", "10.0.0.2", "6")})}});
  transport_.push({504, {kTooLarge}});
  // The server was restored from an older backup: b is gone, the resourceVersion went back.
  transport_.push({200, {page("20", {slice("a", "10.0.0.1", "5")})}});
  transport_.push({200, {event("ADDED", slice("c", "10.0.0.3", "21"))}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(5).size(), 5u);
  EXPECT_EQ(sink_.take(4), (std::vector<std::string>{"{", "delete EndpointSlice ns/b", "}",
                                                     "upsert EndpointSlice ns/c 10.0.0.3"}));
  auto targets = transport_.waitTargets(4);
  ASSERT_EQ(targets.size(), 4u);
  EXPECT_TRUE(isList(targets[2])) << targets[2];
  EXPECT_EQ(param(targets[2], "resourceVersion"), "<none>") << "a consistent read from etcd";
  EXPECT_EQ(param(targets[3], "resourceVersion"), "20");
}

TEST_F(SlicewatchApiReflector, TooLargeAsAWatchErrorEventRelists) {
  transport_.push({200, {page("40", {})}});
  transport_.push({200, {event("ERROR", kTooLarge)}});
  transport_.push({200, {page("20", {slice("a", "10.0.0.1", "5")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(6), (std::vector<std::string>{"{", "}", "synced", "{",
                                                     "upsert EndpointSlice ns/a 10.0.0.1", "}"}));
  auto targets = transport_.waitTargets(3);
  EXPECT_TRUE(isList(targets[2])) << targets[2];
}

TEST_F(SlicewatchApiReflector, UnparseableResourceVersionRelists) {
  transport_.push({200, {page("10", {})}});
  transport_.push({200, {bookmark("not-a-number")}, Reply::End::Drop});
  transport_.push({400,
                   {R"({"kind":"Status","code":400,"reason":"BadRequest",)"
                    R"("message":"invalid resourceVersion 'not-a-number'"})"}});
  transport_.push({200, {page("12", {slice("a", "10.0.0.1", "11")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(6), (std::vector<std::string>{"{", "}", "synced", "{",
                                                     "upsert EndpointSlice ns/a 10.0.0.1", "}"}));
  auto targets = transport_.waitTargets(5);
  ASSERT_EQ(targets.size(), 5u);
  EXPECT_EQ(param(targets[2], "resourceVersion"), "not-a-number");
  EXPECT_TRUE(isList(targets[3])) << targets[3];
  EXPECT_EQ(param(targets[4], "resourceVersion"), "12");
}

TEST_F(SlicewatchApiReflector, RepeatedWatchErrorsRelistButRefusedConnectionsResume) {
  transport_.push({200, {page("10", {})}});
  // An unreachable server: the watch is retried from its resourceVersion, however long.
  for (int i = 0; i < 5; ++i) transport_.pushFailure();
  // A server that answers but cannot serve this watch: after three failures, a relist.
  for (int i = 0; i < 3; ++i) {
    transport_.push({500, {R"({"kind":"Status","code":500,"message":"watch cache broken"})"}});
  }
  transport_.push({200, {page("30", {slice("a", "10.0.0.1", "25")})}});
  transport_.push({200, {}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(6), (std::vector<std::string>{"{", "}", "synced", "{",
                                                     "upsert EndpointSlice ns/a 10.0.0.1", "}"}));
  auto targets = transport_.waitTargets(11);
  ASSERT_EQ(targets.size(), 11u);
  for (size_t i = 1; i <= 8; ++i) {
    EXPECT_EQ(param(targets[i], "resourceVersion"), "10") << i << " " << targets[i];
  }
  EXPECT_TRUE(isList(targets[9])) << targets[9];
  EXPECT_EQ(param(targets[10], "resourceVersion"), "30");
}

TEST_F(SlicewatchApiReflector, BackoffStartsOverAfterARelist) {
  // No jitter; 5 ms, 100 ms, 2 s, ...: a grown backoff is easy to tell from a fresh one.
  transport_.push({200, {page("10", {})}});
  transport_.push({200, {event("ADDED", slice("a", "10.0.0.1", "11"))}, Reply::End::Drop});
  // An outage: the backoff grows.
  transport_.pushFailure();
  transport_.pushFailure();
  // The server is back with its history compacted: relist, then the new watch drops at once.
  transport_.push({410, {R"({"kind":"Status","code":410,"reason":"Expired"})"}});
  transport_.push({200, {page("20", {slice("a", "10.0.0.1", "11")})}});
  transport_.push({200, {}, Reply::End::Drop});
  transport_.push({200, {}, Reply::End::Hang});
  start(500, BackoffPolicy{5ms, 10s, 20.0, 0.0});
  auto targets = transport_.waitTargets(8);
  ASSERT_EQ(targets.size(), 8u);
  EXPECT_TRUE(isList(targets[5])) << targets[5];
  auto retry = transport_.timeOf(7) - transport_.timeOf(6);
  EXPECT_LT(retry, 500ms) << "the relist was progress: the next failure waits the initial delay";
  EXPECT_EQ(param(targets[7], "resourceVersion"), "20");
}

TEST_F(SlicewatchApiReflector, ProgressIsAListAnEventOrAnEstablishedWatch) {
  const auto t0 = Reflector::Clock::now();
  transport_.push({200, {page("10", {})}});
  transport_.push({200, {bookmark("11")}, Reply::End::Hang});
  start();
  EXPECT_EQ(sink_.take(3).size(), 3u);
  auto deadline = Reflector::Clock::now() + kTimeout;
  while (reflector_->status().resourceVersion != "11" && Reflector::Clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  auto st = reflector_->status();
  EXPECT_GE(st.lastProgress, t0);
  EXPECT_EQ(st.resourceVersion, "11");
}

}  // namespace
}  // namespace sliceproxy::slicewatch
