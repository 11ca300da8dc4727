// ManifestDirSource with real files in a temporary directory and real inotify.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "slice-watch/manifest_dir_source.h"
#include "slice-watch/reasons.h"

namespace sliceproxy::slicewatch {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Long enough for the watcher's settle window and a loaded CI machine; only reached on failure.
constexpr auto kDirTimeout = 5s;
// How long "nothing more happens" is watched for: past the watcher's 300 ms batch limit.
constexpr auto kQuiet = 400ms;

class DirSink : public proxier::EventSink {
 public:
  void upsertService(proxier::ServicePtr svc) override {
    std::lock_guard lock(mu_);
    services_[svc->key.str()] = svc;
    add("upsert Service " + svc->key.str());
  }
  void deleteService(const proxier::ObjectKey& key) override {
    std::lock_guard lock(mu_);
    services_.erase(key.str());
    add("delete Service " + key.str());
  }
  void upsertSlice(proxier::SlicePtr slice) override {
    std::lock_guard lock(mu_);
    add("upsert EndpointSlice " + slice->key.str());
  }
  void deleteSlice(const proxier::ObjectKey& key) override {
    std::lock_guard lock(mu_);
    add("delete EndpointSlice " + key.str());
  }
  void upsertNode(proxier::NodePtr node) override {
    std::lock_guard lock(mu_);
    add("upsert Node " + node->key.str());
  }
  void deleteNode(const proxier::ObjectKey& key) override {
    std::lock_guard lock(mu_);
    add("delete Node " + key.str());
  }
  void rejected(const proxier::Rejection& r) override {
    std::lock_guard lock(mu_);
    rejections_.push_back(r);
    add("rejected " + r.reason + (r.object.empty() ? "" : " " + r.kind + " " + r.object));
  }
  void synced() override {
    std::lock_guard lock(mu_);
    add("synced");
  }
  void beginBatch() override {
    std::lock_guard lock(mu_);
    ++depth_;
  }
  void endBatch() override {
    std::lock_guard lock(mu_);
    --depth_;
  }

  // Waits until at least n events were recorded since the last take(), then returns them all
  // after making sure no further event follows within kQuiet.
  std::vector<std::string> take(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kDirTimeout, [&] { return events_.size() >= n; });
    cv_.wait_for(lock, kQuiet, [&] { return events_.size() > n; });
    std::vector<std::string> out;
    out.swap(events_);
    return out;
  }

  std::vector<proxier::Rejection> rejections() {
    std::lock_guard lock(mu_);
    return rejections_;
  }
  std::vector<std::string> outOfBatch() {
    std::lock_guard lock(mu_);
    return outOfBatch_;
  }
  int openBatches() {
    std::lock_guard lock(mu_);
    return depth_;
  }
  proxier::ServicePtr service(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = services_.find(key);
    return it == services_.end() ? nullptr : it->second;
  }

 private:
  void add(std::string e) {
    // Everything but synced() belongs to a batch, so a sync never sees half a file.
    if ((depth_ == 0) != (e == "synced")) outOfBatch_.push_back(e);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<proxier::Rejection> rejections_;
  std::map<std::string, proxier::ServicePtr> services_;
  std::vector<std::string> outOfBatch_;
  int depth_ = 0;
};

std::string serviceYaml(std::string_view name, int port, std::string_view clusterIP = "") {
  std::string s = "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + std::string(name) +
                  "\n  namespace: default\nspec:\n";
  if (!clusterIP.empty()) s += "  clusterIP: " + std::string(clusterIP) + "\n";
  return s + "  ports:\n  - port: " + std::to_string(port) + "\n";
}

std::string sliceYaml(std::string_view name, std::string_view service, std::string_view ip) {
  return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: " +
         std::string(name) + "\n  namespace: default\n  labels:\n    kubernetes.io/service-name: " +
         std::string(service) + "\naddressType: IPv4\nendpoints:\n- addresses: [\"" +
         std::string(ip) + "\"]\nports:\n- port: 8080\n";
}

class SlicewatchManifestDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "slicewatch-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    source_.reset();
    EXPECT_EQ(sink_.outOfBatch(), std::vector<std::string>{});
    EXPECT_EQ(sink_.openBatches(), 0);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary | std::ios::trunc) << text;
  }
  // How editors save: write a temporary file, then rename it over the original in one step.
  void renameOver(const std::string& name, const std::string& text) {
    write("." + name + ".swp", text);
    fs::rename(dir_ / ("." + name + ".swp"), dir_ / name);
  }
  void start() {
    source_ = std::make_unique<ManifestDirSource>(dir_, sink_);
    source_->start();
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
  DirSink sink_;
  std::unique_ptr<ManifestDirSource> source_;
};

using Events = std::vector<std::string>;

TEST_F(SlicewatchManifestDir, InitialReadThenSyncedIgnoringNonManifests) {
  write("web.yaml", serviceYaml("web", 80) + "---\n" + sliceYaml("web-1", "web", "10.244.1.5"));
  write("node.json", R"({"kind":"Node","metadata":{"name":"node-a"}})");
  write("notes.md", "# not a manifest\n");
  write(".hidden.yaml", serviceYaml("hidden", 80));
  write("web.yaml~", serviceYaml("backup", 80));
  fs::create_directory(dir_ / "sub.yaml");
  write("sub.yaml/inner.yaml", serviceYaml("inner", 80));
  start();
  // Files are read in name order, objects in file order, and synced comes last.
  EXPECT_EQ(sink_.take(4), (Events{"upsert Node node-a", "upsert Service default/web",
                                   "upsert EndpointSlice default/web-1", "synced"}));
}

TEST_F(SlicewatchManifestDir, StartFailsForAMissingDirectory) {
  ManifestDirSource src(dir_ / "missing", sink_);
  EXPECT_THROW(src.start(), std::system_error);
}

TEST_F(SlicewatchManifestDir, EditingOneObjectOfManyGivesOneUpsert) {
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81) + "---\n" +
                        sliceYaml("a-1", "a", "10.244.1.5"));
  start();
  EXPECT_EQ(sink_.take(4).size(), 4u);
  // b changes; a and the slice are rewritten in another YAML style but mean the same.
  write("app.yaml",
        "kind: Service\napiVersion: v1\nmetadata: {name: a, namespace: default}\n"
        "spec: {ports: [{port: 80}]}\n---\n" +
            serviceYaml("b", 82) + "---\n" + sliceYaml("a-1", "a", "10.244.1.5"));
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/b"});
  EXPECT_EQ(sink_.service("default/b")->ports[0].port, 82);
}

TEST_F(SlicewatchManifestDir, RemovingAnObjectFromAFileGivesOneDelete) {
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81));
  start();
  EXPECT_EQ(sink_.take(3).size(), 3u);
  write("app.yaml", serviceYaml("a", 80));
  EXPECT_EQ(sink_.take(1), Events{"delete Service default/b"});
}

TEST_F(SlicewatchManifestDir, DeletingAFileDeletesItsObjects) {
  write("app.yaml", serviceYaml("a", 80) + "---\n" + sliceYaml("a-1", "a", "10.244.1.5"));
  write("keep.json", R"({"kind":"Node","metadata":{"name":"node-a"}})");
  start();
  EXPECT_EQ(sink_.take(4).size(), 4u);
  fs::remove(dir_ / "app.yaml");
  EXPECT_EQ(sink_.take(2),
            (Events{"delete EndpointSlice default/a-1", "delete Service default/a"}));
}

TEST_F(SlicewatchManifestDir, NewFileAndRenameOverSave) {
  start();
  EXPECT_EQ(sink_.take(1), Events{"synced"});
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81));
  EXPECT_EQ(sink_.take(2), (Events{"upsert Service default/a", "upsert Service default/b"}));
  renameOver("app.yaml", serviceYaml("b", 81) + "---\n" + serviceYaml("c", 82, "10.96.0.3") +
                             "---\n" + serviceYaml("a", 8080));
  EXPECT_EQ(sink_.take(2), (Events{"upsert Service default/c", "upsert Service default/a"}));
  EXPECT_EQ(sink_.service("default/a")->ports[0].port, 8080);
  renameOver("app.yaml", serviceYaml("c", 82, "10.96.0.3"));
  EXPECT_EQ(sink_.take(2), (Events{"delete Service default/a", "delete Service default/b"}));
}

TEST_F(SlicewatchManifestDir, VimStyleSaveMovesTheOriginalAwayFirst) {
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81));
  start();
  EXPECT_EQ(sink_.take(3).size(), 3u);
  // The original becomes the backup, then a new file is written under the old name.
  fs::rename(dir_ / "app.yaml", dir_ / "app.yaml~");
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 91));
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/b"});
}

TEST_F(SlicewatchManifestDir, MovingAFileOutOfTheDirectoryDeletes) {
  write("app.yaml", serviceYaml("a", 80));
  start();
  EXPECT_EQ(sink_.take(2).size(), 2u);
  fs::rename(dir_ / "app.yaml", dir_ / "app.yaml.disabled");
  EXPECT_EQ(sink_.take(1), Events{"delete Service default/a"});
  fs::rename(dir_ / "app.yaml.disabled", dir_ / "app.yaml");
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/a"});
}

// A ConfigMap volume: every visible file is a symlink through ..data, and an update swaps ..data
// in one rename, with no event for the visible names.
TEST_F(SlicewatchManifestDir, ConfigMapVolumeUpdate) {
  fs::create_directory(dir_ / "..v1");
  write("..v1/app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81));
  fs::create_directory_symlink("..v1", dir_ / "..data");
  fs::create_symlink("..data/app.yaml", dir_ / "app.yaml");
  start();
  EXPECT_EQ(sink_.take(3),
            (Events{"upsert Service default/a", "upsert Service default/b", "synced"}));
  fs::create_directory(dir_ / "..v2");
  write("..v2/app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 82));
  fs::create_directory_symlink("..v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/b"});
  EXPECT_EQ(sink_.service("default/b")->ports[0].port, 82);
}

TEST_F(SlicewatchManifestDir, BadFileIsOneRejectionAndOthersKeepWorking) {
  write("bad.yaml", "kind: Service\nmetadata:\n  name: [oops\n");
  write("good.yaml", serviceYaml("a", 80));
  start();
  EXPECT_EQ(sink_.take(3),
            (Events{"rejected malformed_yaml", "upsert Service default/a", "synced"}));
  auto rej = sink_.rejections();
  ASSERT_EQ(rej.size(), 1u);
  EXPECT_EQ(rej[0].origin, path("bad.yaml"));
  EXPECT_NE(rej[0].message.find("malformed YAML at line 4"), std::string::npos) << rej[0].message;

  write("good.yaml", serviceYaml("a", 81));
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/a"});

  // Breaking a file that worked keeps what it defined; fixing it applies only the difference.
  write("good.yaml", serviceYaml("a", 81) + "---\n{{{\n");
  EXPECT_EQ(sink_.take(1), Events{"rejected malformed_yaml"});
  EXPECT_EQ(sink_.service("default/a")->ports[0].port, 81);
  write("good.yaml", serviceYaml("a", 81) + "---\n" + serviceYaml("b", 80));
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/b"});

  write("broken.json", R"({"kind":"Node","metadata":{"name":"n"})");
  EXPECT_EQ(sink_.take(1), Events{"rejected malformed_json"});
  EXPECT_EQ(sink_.rejections().back().origin, path("broken.json"));
}

TEST_F(SlicewatchManifestDir, BadObjectKeepsItsLastGoodVersion) {
  write("app.yaml", serviceYaml("a", 80) + "---\n" + serviceYaml("b", 81));
  start();
  EXPECT_EQ(sink_.take(3).size(), 3u);
  write("app.yaml", serviceYaml("a", 70000) + "---\n" + serviceYaml("b", 82));
  EXPECT_EQ(sink_.take(2),
            (Events{"rejected port_out_of_range Service default/a", "upsert Service default/b"}));
  auto rej = sink_.rejections().back();
  EXPECT_EQ(rej.field, "spec.ports[0].port");
  EXPECT_EQ(rej.origin, path("app.yaml"));
  EXPECT_EQ(sink_.service("default/a")->ports[0].port, 80);
  // Fixed: the new version replaces the kept one.
  write("app.yaml", serviceYaml("a", 83) + "---\n" + serviceYaml("b", 82));
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/a"});
}

TEST_F(SlicewatchManifestDir, DuplicateObjectAcrossFiles) {
  write("a.yaml", serviceYaml("web", 80));
  write("b.yaml", serviceYaml("web", 90) + "---\n" + serviceYaml("other", 81));
  start();
  EXPECT_EQ(sink_.take(4),
            (Events{"upsert Service default/web", "rejected duplicate_object Service default/web",
                    "upsert Service default/other", "synced"}));
  EXPECT_EQ(sink_.rejections().back().origin, path("b.yaml"));
  EXPECT_EQ(sink_.service("default/web")->ports[0].port, 80);

  // The non-owner changing or dropping its copy never touches the owner's object.
  write("b.yaml", serviceYaml("web", 91) + "---\n" + serviceYaml("other", 81));
  EXPECT_EQ(sink_.take(1), Events{"rejected duplicate_object Service default/web"});
  write("b.yaml", serviceYaml("other", 81) + "---\n" + serviceYaml("web", 91));
  EXPECT_EQ(sink_.take(1), Events{"rejected duplicate_object Service default/web"});
  EXPECT_EQ(sink_.service("default/web")->ports[0].port, 80);

  // When the owner lets go, the other definition takes over: an upsert, not a delete.
  fs::remove(dir_ / "a.yaml");
  EXPECT_EQ(sink_.take(1), Events{"upsert Service default/web"});
  EXPECT_EQ(sink_.service("default/web")->ports[0].port, 91);
  write("b.yaml", serviceYaml("other", 81));
  EXPECT_EQ(sink_.take(1), Events{"delete Service default/web"});
}

TEST_F(SlicewatchManifestDir, DuplicateWithinOneFile) {
  write("a.yaml", serviceYaml("web", 80) + "---\n" + serviceYaml("web", 90));
  start();
  EXPECT_EQ(sink_.take(3), (Events{"upsert Service default/web",
                                   "rejected duplicate_object Service default/web", "synced"}));
  EXPECT_EQ(sink_.service("default/web")->ports[0].port, 80);
}

TEST_F(SlicewatchManifestDir, StopIsPromptAndIdempotent) {
  start();
  EXPECT_EQ(sink_.take(1), Events{"synced"});
  auto t0 = std::chrono::steady_clock::now();
  source_->stop();
  source_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  write("late.yaml", serviceYaml("late", 80));
  EXPECT_TRUE(sink_.take(0).empty());
}

}  // namespace
}  // namespace sliceproxy::slicewatch
