// lib/store layer_io: the chunker over real files (boundaries, holes, zero chunks,
// repeats), put/get round trips, verify, and failures that leave nothing behind.
// Uses an in-memory Store so the tests are about the chunker, not the directory store.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include "base/error.h"
#include "base/io.h"
#include "chunk/chunk_codec.h"
#include "store/layer_io.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

class MemStore : public Store {
public:
    const std::string& uri() const override { return uri_; }
    bool has(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu_);
        return objs_.count(id) > 0;
    }
    std::optional<std::vector<uint8_t>> get(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu_);
        auto it = objs_.find(id);
        if (it == objs_.end()) return std::nullopt;
        return it->second;
    }
    bool put(const Digest& id, std::span<const uint8_t> d) override {
        std::lock_guard<std::mutex> g(mu_);
        return objs_.emplace(id, std::vector<uint8_t>(d.begin(), d.end())).second;
    }
    std::vector<Digest> list() override {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<Digest> v;
        for (auto& [k, _] : objs_) v.push_back(k);
        return v;
    }
    bool remove(const Digest& id) override {
        std::lock_guard<std::mutex> g(mu_);
        return objs_.erase(id) > 0;
    }
    std::map<Digest, std::vector<uint8_t>> objs_;

private:
    std::string uri_ = "mem:";
    std::mutex mu_;
};

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/kindling-layer-test.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng());
    return v;
}

void write_at(const std::string& path, uint64_t off, const std::vector<uint8_t>& d) {
    UniqueFd fd = open_file(path, O_WRONLY | O_CREAT, 0644);
    pwrite_full(fd.get(), d.data(), d.size(), static_cast<off_t>(off), path);
}

void set_size(const std::string& path, uint64_t size) {
    UniqueFd fd = open_file(path, O_WRONLY | O_CREAT, 0644);
    REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
}

// A snapshot-like directory: snapshot.json, vmstate, a sparse 8 MiB mem with random,
// repeated, written-zero and hole regions, and files on the chunk boundaries.
void make_snapshot(const std::string& dir) {
    fs::create_directories(dir + "/disks");
    write_file_atomic(dir + "/snapshot.json", "{\"version\":1}\n");
    write_at(dir + "/vmstate", 0, random_bytes(5000, 1));
    std::string mem = dir + "/mem";
    set_size(mem, 8u << 20);
    write_at(mem, 0, random_bytes(kChunkSize + 4096, 2));                 // chunks 0, 1
    auto rep = random_bytes(kChunkSize, 3);
    write_at(mem, 4 * uint64_t{kChunkSize}, rep);                         // chunk 4
    write_at(mem, 5 * uint64_t{kChunkSize}, rep);                         // chunk 5 = 4
    write_at(mem, 7 * uint64_t{kChunkSize}, std::vector<uint8_t>(kChunkSize, 0));  // written zeros
    write_at(dir + "/disks/exact", 0, random_bytes(kChunkSize, 4));
    write_at(dir + "/disks/plus1", 0, random_bytes(kChunkSize + 1, 5));
    write_file_atomic(dir + "/empty", "");
    ::chmod((dir + "/vmstate").c_str(), 0600);
}

void require_same_tree(const std::string& a, const std::string& b) {
    for (auto& e : fs::recursive_directory_iterator(a)) {
        std::string rel = fs::relative(e.path(), a);
        CAPTURE(rel);
        REQUIRE(fs::exists(b + "/" + rel));
        if (e.is_regular_file()) {
            CHECK(read_file_bytes(e.path()) == read_file_bytes(b + "/" + rel));
            CHECK(fs::status(e.path()).permissions() == fs::status(b + "/" + rel).permissions());
        }
    }
}

Secret secret_of(uint8_t fill) { return Secret(std::vector<uint8_t>(32, fill)); }

}  // namespace

TEST_CASE("put + get: byte-exact, sparse, modes kept; chunk counts follow the layout") {
    TempDir t;
    make_snapshot(t.path + "/snap");
    MemStore store;
    Secret s = secret_of(1);
    LayerKeys keys(LayerKind::kRuntime, s.bytes());
    PutOptions o;
    o.kind = LayerKind::kRuntime;
    o.threads = 3;
    PutResult r = put_layer(t.path + "/snap", store, keys, o);

    // mem: 16 chunks, of which 0, 1, 4, 5 have data (5 repeats 4); disks: 1 + 2;
    // snapshot.json, vmstate: 1 each; empty: 0.
    CHECK(r.stats.chunks == 16 + 3 + 2);
    CHECK(r.stats.zero_chunks == 12);
    CHECK(r.stats.unique_chunks == 8);
    CHECK(r.new_chunks == 8);
    CHECK(store.objs_.size() == 9);  // + the manifest
    CHECK(object_matches(r.manifest_id, store.objs_.at(r.manifest_id)));

    Manifest m = decode_manifest(*store.get(r.manifest_id), keys);
    GetOptions g;
    g.threads = 2;
    get_layer(store, m, t.path + "/out", g);
    require_same_tree(t.path + "/snap", t.path + "/out");
    struct stat st {};
    REQUIRE(::stat((t.path + "/out/mem").c_str(), &st) == 0);
    CHECK(st.st_size == 8 << 20);
    // Only the four data chunks (2 MiB + a little) are allocated; the rest are holes.
    CHECK(uint64_t(st.st_blocks) * 512 <= 2 * uint64_t{kChunkSize} * 2 + 65536);

    CHECK(verify_layer(store, m, 2, {}).empty());

    // Putting the same directory again stores nothing new and gives the same id.
    PutResult again = put_layer(t.path + "/snap", store, keys, o);
    CHECK(again.manifest_id == r.manifest_id);
    CHECK(again.new_chunks == 0);
}

TEST_CASE("get into an existing non-empty directory fails; into an empty one works") {
    TempDir t;
    make_snapshot(t.path + "/snap");
    MemStore store;
    Secret s = secret_of(2);
    LayerKeys keys(LayerKind::kBase, s.bytes());
    PutResult r = put_layer(t.path + "/snap", store, keys, {});
    Manifest m = decode_manifest(*store.get(r.manifest_id), keys);
    fs::create_directories(t.path + "/full");
    write_file_atomic(t.path + "/full/x", "x");
    CHECK_THROWS_AS(get_layer(store, m, t.path + "/full", {}), SysError);
    fs::create_directories(t.path + "/empty");
    get_layer(store, m, t.path + "/empty", {});
    require_same_tree(t.path + "/snap", t.path + "/empty");
}

TEST_CASE("a corrupt or missing chunk: get fails naming file, chunk and offset, leaves nothing; verify lists it") {
    TempDir t;
    make_snapshot(t.path + "/snap");
    MemStore store;
    Secret s = secret_of(3);
    LayerKeys keys(LayerKind::kFunction, s.bytes());
    PutOptions o;
    o.kind = LayerKind::kFunction;
    PutResult r = put_layer(t.path + "/snap", store, keys, o);
    Manifest m = decode_manifest(*store.get(r.manifest_id), keys);
    auto mem = std::find_if(m.entries.begin(), m.entries.end(), [](auto& e) { return e.path == "mem"; });
    REQUIRE(mem != m.entries.end());
    const ManifestChunk& c4 = m.chunks[mem->first_chunk + 4];
    REQUIRE(c4.offset == 4 * uint64_t{kChunkSize});
    store.objs_[c4.id][10] ^= 1;

    try {
        get_layer(store, m, t.path + "/out", {});
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(e.exit_code() == kExitDataErr);
        CHECK(std::string(e.what()).find("mem: chunk 4 at offset 2097152: chunk " + c4.id.hex()) == 0);
    }
    CHECK_FALSE(fs::exists(t.path + "/out"));
    for (auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename() == "snap");

    auto probs = verify_layer(store, m, 2, {});
    REQUIRE(probs.size() == 1);
    CHECK(probs[0].path == "mem");
    CHECK(probs[0].chunk == 4);
    CHECK(probs[0].offset == 4 * uint64_t{kChunkSize});
    CHECK(probs[0].message().find("used 2 times") != std::string::npos);

    store.objs_.erase(c4.id);
    try {
        get_layer(store, m, t.path + "/out", {});
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(e.exit_code() == kExitNoInput);
    }
    CHECK_FALSE(fs::exists(t.path + "/out"));
}

TEST_CASE("put refuses what a snapshot cannot hold, and a parent that is not in the store") {
    TempDir t;
    make_snapshot(t.path + "/snap");
    MemStore store;
    Secret s = secret_of(4);
    LayerKeys keys(LayerKind::kBase, s.bytes());
    PutOptions o;
    o.parent = sha256(std::vector<uint8_t>{9});
    CHECK_THROWS_AS(put_layer(t.path + "/snap", store, keys, o), Error);
    CHECK(store.objs_.empty());
    ::symlink("mem", (t.path + "/snap/link").c_str());
    CHECK_THROWS_AS(put_layer(t.path + "/snap", store, keys, {}), DataError);
    CHECK_THROWS_AS(put_layer(t.path + "/nosuch", store, keys, {}), SysError);
}
