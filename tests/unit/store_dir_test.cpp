// lib/store dir: store: layout, read-only objects, misses, concurrent writers in
// several processes, LRU eviction under a size cap, stale temp files.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/io.h"
#include "store/dir_store.h"
#include "store/store.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/kindling-store-test.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<uint8_t> object(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed * 31 + i * 7 + (i >> 8));
    return v;
}

void pause_for_clock() { std::this_thread::sleep_for(std::chrono::milliseconds(15)); }

}  // namespace

TEST_CASE("dir store: put, get, has, list, remove; a miss is nullopt") {
    TempDir t;
    auto s = make_store("dir:" + t.path + "/s", {.create = true});
    auto a = object(1000, 1);
    Digest id = sha256(a);
    CHECK_FALSE(s->has(id));
    CHECK_FALSE(s->get(id).has_value());
    CHECK(s->put(id, a));
    CHECK_FALSE(s->put(id, a));  // idempotent
    s->flush();
    CHECK(s->has(id));
    CHECK(s->get(id) == a);
    auto l = s->list();
    REQUIRE(l.size() == 1);
    CHECK(l[0] == id);

    std::string h = id.hex();
    std::string p = t.path + "/s/" + h.substr(0, 2) + "/" + h.substr(2);
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0444);
    CHECK(fs::is_empty(t.path + "/s/tmp"));

    CHECK(s->remove(id));
    CHECK_FALSE(s->remove(id));
    CHECK_FALSE(s->has(id));
}

TEST_CASE("dir store: corrupt bytes come back as stored; object_matches catches them") {
    TempDir t;
    DirStore s(t.path, 0, {.create = true});
    auto a = object(4096, 2);
    Digest id = sha256(a);
    s.put(id, a);
    std::string p = s.object_path(id);
    ::chmod(p.c_str(), 0644);
    {
        UniqueFd fd = open_file(p, O_WRONLY);
        uint8_t x = a[100] ^ 0xff;
        pwrite_full(fd.get(), &x, 1, 100, p);
    }
    auto got = s.get(id);
    REQUIRE(got);
    CHECK_FALSE(object_matches(id, *got));
}

TEST_CASE("make_store: URIs and errors") {
    TempDir t;
    CHECK_THROWS_AS(make_store("nosuch:/x"), UsageError);
    CHECK_THROWS_AS(make_store("dir:"), UsageError);
    CHECK_THROWS_AS(make_store("dir:" + t.path + "/s?max=lots", {.create = true}), UsageError);
    CHECK_THROWS_AS(make_store("dir:" + t.path + "/s?colour=red", {.create = true}), UsageError);
    try {
        make_store("dir:" + t.path + "/missing");
        FAIL("no throw");
    } catch (const UnavailableError& e) {
        CHECK(e.exit_code() == kExitUnavailable);
    }
    // An existing directory that is not a store is not used, for reading or writing,
    // unless it is empty.
    CHECK_THROWS_AS(make_store("dir:" + t.path), UnavailableError);
    std::filesystem::create_directories(t.path + "/other");
    write_file_atomic(t.path + "/other/file", "x");
    CHECK_THROWS_AS(make_store("dir:" + t.path + "/other", {.create = true}), UnavailableError);
    std::filesystem::create_directories(t.path + "/empty");
    CHECK(make_store("dir:" + t.path + "/empty", {.create = true}));
    CHECK(make_store("dir:" + t.path + "/s?max=1M", {.create = true})->uri() == "dir:" + t.path + "/s");
    CHECK(parse_size("10G") == uint64_t{10} << 30);
    CHECK(parse_size("512K") == 512 * 1024);
    CHECK(parse_size("77") == 77);
    CHECK_FALSE(parse_size("1X"));
    CHECK_FALSE(parse_size(""));
}

TEST_CASE("dir store: processes creating and writing one store at once never expose a partial object") {
    TempDir t;
    std::string root = t.path + "/s";
    constexpr int kProcs = 4, kShared = 40, kOwn = 10;
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p) {
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int rc = 0;
            try {
                // All of them create the store too: it does not exist yet.
                DirStore s(root, 0, {.create = true});
                for (int i = 0; i < kShared; ++i) {
                    // All processes write the same objects, in different orders.
                    int k = (i * (p + 1) * 7) % kShared;
                    auto o = object(100000 + k, static_cast<uint8_t>(k));
                    s.put(sha256(o), o);
                    // And read what is there: whole or absent, never short.
                    int r = (k * 13) % kShared;
                    auto ro = object(100000 + r, static_cast<uint8_t>(r));
                    if (auto got = s.get(sha256(ro)); got && *got != ro) rc = 2;
                }
                for (int i = 0; i < kOwn; ++i) {
                    auto o = object(5000 + i, static_cast<uint8_t>(100 + p * kOwn + i));
                    s.put(sha256(o), o);
                }
                s.flush();
            } catch (...) {
                rc = 1;
            }
            ::_exit(rc);
        }
        kids.push_back(pid);
    }
    for (pid_t k : kids) {
        int status = 0;
        ::waitpid(k, &status, 0);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    DirStore s(root, 0, {});
    auto ids = s.list();
    CHECK(ids.size() == kShared + kProcs * kOwn);
    for (const auto& id : ids) {
        auto got = s.get(id);
        REQUIRE(got);
        CHECK(object_matches(id, *got));
    }
    CHECK(fs::is_empty(root + "/tmp"));
    // Each new object counted once although four processes wrote it.
    uint64_t bytes = 0;
    for (const auto& id : ids) bytes += s.get(id)->size();
    CHECK(s.usage() == bytes);
}

TEST_CASE("dir store: LRU eviction under a size cap keeps recently used objects") {
    TempDir t;
    constexpr size_t kObj = 100000;
    // Room for four and a half objects; eviction goes down to 90% of the cap (four).
    DirStore s(t.path + "/s", 4 * kObj + kObj / 2, {.create = true});
    std::vector<Digest> ids;
    std::vector<std::vector<uint8_t>> objs;
    for (int i = 0; i < 4; ++i) {
        objs.push_back(object(kObj, static_cast<uint8_t>(i)));
        ids.push_back(sha256(objs.back()));
        s.put(ids.back(), objs.back());
        pause_for_clock();
    }
    CHECK(s.list().size() == 4);
    // Use object 0 so that object 1 becomes the least recently used.
    CHECK(s.get(ids[0]).has_value());
    pause_for_clock();
    auto extra = object(kObj, 9);
    s.put(sha256(extra), extra);
    CHECK(s.usage() <= 4 * kObj + kObj / 2);
    CHECK(s.has(ids[0]));
    CHECK_FALSE(s.has(ids[1]));
    CHECK(s.has(ids[2]));
    CHECK(s.has(ids[3]));
    CHECK(s.has(sha256(extra)));
    CHECK(s.usage() == 4 * kObj);

    // Putting an object that is already there counts as a use too.
    pause_for_clock();
    s.put(ids[3], objs[3]);
    pause_for_clock();
    auto more = object(kObj, 10);
    s.put(sha256(more), more);
    auto more2 = object(kObj, 11);
    s.put(sha256(more2), more2);
    CHECK(s.has(ids[3]));
    CHECK(s.has(sha256(more2)));
    CHECK_FALSE(s.has(ids[2]));
    CHECK_FALSE(s.has(ids[0]));
    CHECK(s.list().size() == 4);
}

TEST_CASE("dir store: a dead writer's old temp file is removed, a live one's is not") {
    TempDir t;
    std::string root = t.path + "/s";
    { DirStore init(root, 0, {.create = true}); }
    std::string dead = root + "/tmp/deadbeef.1.0", live = root + "/tmp/cafe.2.0", young = root + "/tmp/young.3.0";
    write_file_atomic(dead, "partial");
    write_file_atomic(live, "partial");
    write_file_atomic(young, "partial");
    struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
    ::utimensat(AT_FDCWD, dead.c_str(), old, 0);
    ::utimensat(AT_FDCWD, live.c_str(), old, 0);
    UniqueFd holder = open_file(live, O_RDONLY);
    REQUIRE(::flock(holder.get(), LOCK_EX) == 0);
    DirStore s(root, 0, {});
    CHECK_FALSE(fs::exists(dead));
    CHECK(fs::exists(live));
    CHECK(fs::exists(young));
    CHECK(s.list().empty());
}
