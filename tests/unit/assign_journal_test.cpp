#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "assign/journal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "eventually.h"

using namespace kindling;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-journal.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

JournalRecord rec(int i) {
    JournalRecord r;
    r.sandbox = "sb-" + std::to_string(i);
    r.time_ms = 1700000000000 + i;
    if (i % 3 == 0) {
        r.event = SandboxEvent::kCreated;
        r.function = "hello";
        r.version = "v\"" + std::to_string(i);
        r.pid = 1000 + i;
        r.vsock = "/run/k/sb-" + std::to_string(i) + ".sock";
    } else {
        r.event = i % 3 == 1 ? SandboxEvent::kBusy : SandboxEvent::kIdle;
    }
    return r;
}

std::vector<JournalRecord> read_all(Journal& j) {
    std::vector<JournalRecord> out;
    j.replay([&](const JournalRecord& r) { out.push_back(r); });
    return out;
}

uint64_t file_size(const std::string& p) { return std::filesystem::file_size(p); }

void flip_byte(const std::string& p, uint64_t off) {
    UniqueFd fd = open_file(p, O_RDWR);
    uint8_t b;
    pread_full(fd.get(), &b, 1, off, p);
    b ^= 0x5a;
    pwrite_full(fd.get(), &b, 1, off, p);
}

}  // namespace

TEST_CASE("journal: records round-trip through the file and a reopen") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    {
        FileJournal j(p);
        for (int i = 0; i < 20; i++) j.append(rec(i));
        auto got = read_all(j);
        REQUIRE(got.size() == 20);
        for (int i = 0; i < 20; i++) CHECK(got[i] == rec(i));
    }
    FileJournal j(p);
    CHECK(j.truncated_bytes() == 0);
    auto got = read_all(j);
    REQUIRE(got.size() == 20);
    for (int i = 0; i < 20; i++) CHECK(got[i] == rec(i));
    j.append(rec(20));
    CHECK(read_all(j).size() == 21);
}

TEST_CASE("journal: a torn last record is truncated at every byte offset") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    uint64_t before_last;
    {
        FileJournal j(p);
        for (int i = 0; i < 5; i++) j.append(rec(i));
        before_last = file_size(p);
        j.append(rec(6));  // a created record: the longest kind
    }
    uint64_t full = file_size(p);
    std::string pristine = read_file(p);
    for (uint64_t n = before_last; n < full; n++) {
        write_file_atomic(p, pristine.substr(0, n));
        FileJournal j(p);
        CHECK(j.truncated_bytes() == n - before_last);
        auto got = read_all(j);
        REQUIRE(got.size() == 5);
        CHECK(got[4] == rec(4));
        CHECK(file_size(p) == before_last);
        j.append(rec(7));  // appending after a repair lands after record 5
        auto again = read_all(j);
        REQUIRE(again.size() == 6);
        CHECK(again[5] == rec(7));
    }
    // A bad byte anywhere in the last record (length, CRC or payload): truncated too.
    for (uint64_t off = before_last; off < full; off++) {
        write_file_atomic(p, pristine);
        flip_byte(p, off);
        FileJournal j(p);
        CHECK(read_all(j).size() == 5);
    }
    // Zeros after the last record (the file grew but the data never landed).
    write_file_atomic(p, pristine + std::string(4096, '\0'));
    FileJournal j(p);
    CHECK(read_all(j).size() == 6);
    CHECK(file_size(p) == full);
}

TEST_CASE("journal: corruption in the middle is a DataError, and the file is left alone") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    uint64_t second;
    {
        FileJournal j(p);
        j.append(rec(0));
        second = file_size(p);
        for (int i = 1; i < 5; i++) j.append(rec(i));
    }
    std::string pristine = read_file(p);
    for (uint64_t off : {second, second + 3, second + 5, second + 8, second + 12}) {
        write_file_atomic(p, pristine);
        flip_byte(p, off);
        CHECK_THROWS_AS(FileJournal{p}, DataError);
        CHECK(file_size(p) == pristine.size());
    }
    write_file_atomic(p, "not a journal at all");
    CHECK_THROWS_AS(FileJournal{p}, DataError);
}

TEST_CASE("journal: group commit covers concurrent appends with fewer fsyncs") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    FileJournal j(p);
    constexpr int kThreads = 16, kEach = 50;
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++)
        ts.emplace_back([&, t] {
            for (int i = 0; i < kEach; i++) j.append(rec(t * 1000 + i));
        });
    for (auto& t : ts) t.join();
    JournalStats s = j.stats();
    CHECK(s.appends == kThreads * kEach);
    CHECK(s.syncs < s.appends);
    MESSAGE("group commit: " << s.appends << " appends, " << s.syncs << " fdatasyncs");
    CHECK(read_all(j).size() == kThreads * kEach);
    // Each append returned only once durable: all are in the file when reopened.
    j.close();
    FileJournal again(p);
    CHECK(read_all(again).size() == kThreads * kEach);
}

TEST_CASE("journal: the leader lock keeps a second writer out until the first closes") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    auto first = open_journal("file:" + p);
    try {
        FileJournal second(p);
        FAIL("second writer opened a locked journal");
    } catch (const JournalLockedError& e) {
        CHECK(e.exit_code() == kExitTempFail);
        CHECK(std::string(e.what()).find("locked") != std::string::npos);
    }
    first->close();
    FileJournal second(p);
    CHECK_THROWS_AS(open_journal("etcd://x"), ConfigError);
}

TEST_CASE("journal: lazy appends wake no one, reach the file after kLazyFlush, and sync() hurries them") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    ManualClock clock;
    FileJournal j(p, clock);
    uint64_t before = file_size(p);
    for (int i = 1; i <= 100; i++) j.append_lazy(rec(3 * i + 1));
    // The window is open as long as the clock stands still: nothing written yet.
    CHECK(j.stats().syncs == 0);
    CHECK(file_size(p) == before);
    clock.advance(FileJournal::kLazyFlush - std::chrono::milliseconds(1));
    CHECK(j.stats().syncs == 0);
    // Once the window has passed, one batch: the first lazy record opened it, the
    // rest rode along.
    clock.advance(std::chrono::milliseconds(1));
    CHECK(eventually([&] { return j.stats().syncs == 1; }));
    CHECK(file_size(p) > before);
    // A lazy record someone waits for is written now, with the clock standing still.
    auto waiter = std::async(std::launch::async, [&] { j.sync(j.append_lazy(rec(4))); });
    bool hurried = waiter.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    CHECK(hurried);
    j.close();  // releases the waiter if it was not
    waiter.get();
    CHECK(j.stats().syncs == 2);
    FileJournal again(p);
    CHECK(read_all(again).size() == 101);
}

TEST_CASE("journal: compaction keeps the state and every record queued after it, and the lock") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    TempDir d;
    std::string p = d.path + "/j";
    std::vector<JournalRecord> state = {rec(3), rec(4), rec(6)};
    {
        FileJournal j(p);
        for (int i = 0; i < 300; i++) j.append_lazy(rec(3 * (i % 5) + 1));
        j.compact(state);             // covers the 300 above, written or not
        uint64_t after = j.append_nowait(rec(5));  // follows the state
        j.sync(after);
        CHECK(j.stats().compactions == 1);
        // rec(5) rode with the compaction or followed it in a write of its own.
        uint64_t tail = 8 + encode_record(rec(5)).size();
        uint64_t compacted = j.stats().compacted_bytes;
        CHECK((compacted == file_size(p) || compacted == file_size(p) - tail));
        auto got = read_all(j);
        REQUIRE(got.size() == 4);
        CHECK(got[0] == rec(3));
        CHECK(got[2] == rec(6));
        CHECK(got[3] == rec(5));
        CHECK(!std::filesystem::exists(p + ".compact"));
        // The renamed file carries the leader lock.
        CHECK_THROWS_AS(FileJournal{p}, JournalLockedError);
        j.append(rec(7));
    }
    FileJournal again(p);
    auto got = read_all(again);
    REQUIRE(got.size() == 5);
    CHECK(got[4] == rec(7));
}
