#include <doctest/doctest.h>

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "assign/journal.h"
#include "assign/sandbox_table.h"
#include "base/clock.h"
#include "base/log.h"

using namespace kindling;

TEST_CASE("sandbox table: transitions, idle lists, concurrency counts, leases, rebuild") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    char tmpl[] = "/tmp/kindling-table.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    {
        FileJournal j(dir + "/j");
        SandboxTable t(j);
        Sandbox& a = t.create("f", "1", "/run");
        CHECK(a.id == "sb-1");
        CHECK(a.vsock == "/run/sb-1.sock");
        CHECK(t.active("f") == 1);  // creating counts against the limit
        t.set_pid("sb-1", 101);
        t.to_busy(a);
        std::string lease = a.lease;
        CHECK(t.find_lease(lease) == &a);
        CHECK(t.take_idle("f", "1") == nullptr);
        t.to_idle(a);
        CHECK(t.find_lease(lease) == nullptr);  // a lease ends with its release
        CHECK(t.active("f") == 0);
        Sandbox& b = t.create("f", "2", "/run");
        t.set_pid(b.id, 102);
        t.to_busy(b);
        CHECK(t.take_idle("f", "2") == nullptr);  // versions don't share sandboxes
        Sandbox* w = t.take_idle("f", "1");
        REQUIRE(w == &a);
        CHECK(a.state == SandboxState::kBusy);
        CHECK(a.lease != lease);
        CHECK(t.active("f") == 2);
        std::string dead_lease = b.lease;
        t.to_dead(b);
        CHECK(t.find_lease(dead_lease) == nullptr);
        CHECK(t.live() == 1);
        Sandbox& c = t.create("g", "1", "/run");
        t.set_pid(c.id, 103);
        t.to_busy(c);
        t.to_idle(c);
        std::string c_id = c.id;  // destroy() frees c
        t.destroy(c_id);
        CHECK(t.find(c_id) == nullptr);
        j.sync(j.append_nowait(JournalRecord{SandboxEvent::kIdle, "sb-1"}));
    }
    FileJournal j(dir + "/j");
    SandboxTable t(j);
    t.rebuild();
    REQUIRE(t.all().size() == 2);
    CHECK(t.find("sb-1")->pid == 101);
    CHECK(t.find("sb-1")->state == SandboxState::kIdle);
    CHECK(t.find("sb-2")->state == SandboxState::kDead);
    CHECK(t.find("sb-3") == nullptr);
    // Replayed idle sandboxes join the idle list once the owner confirms them.
    CHECK(t.take_idle("f", "1") == nullptr);
    t.to_idle(*t.find("sb-1"));
    CHECK(t.take_idle("f", "1") == t.find("sb-1"));
    CHECK(t.create("f", "1", "/run").id == "sb-4");  // ids are never reused
    std::filesystem::remove_all(dir);
}

TEST_CASE("sandbox table: a journal compacted to state_records() rebuilds the same table and next id") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    char tmpl[] = "/tmp/kindling-table.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    {
        FileJournal j(dir + "/j");
        SandboxTable t(j);
        for (int i = 1; i <= 5; i++) t.set_pid(t.create("f", "1", "/run").id, 100 + i);
        for (int round = 0; round < 50; round++) {  // invokes: busy/idle pairs
            t.to_busy(*t.find("sb-1"));
            t.to_idle(*t.find("sb-1"));
        }
        t.to_idle(*t.find("sb-2"));
        t.to_busy(*t.find("sb-3"));
        t.to_dead(*t.find("sb-4"));
        t.destroy("sb-5");  // the highest id is gone: it must still not come back
        t.create("f", "1", "/run");  // sb-6, creating, no pid: not journaled
        j.sync(j.append_nowait(JournalRecord{SandboxEvent::kIdle, "sb-2"}));
        uint64_t before = j.stats().bytes;
        j.compact(t.state_records());
        j.sync(j.append_nowait(JournalRecord{SandboxEvent::kIdle, "sb-3"}));
        CHECK(j.stats().bytes < before);
    }
    FileJournal j(dir + "/j");
    SandboxTable t(j);
    t.rebuild();
    REQUIRE(t.all().size() == 4);
    CHECK(t.find("sb-1")->state == SandboxState::kIdle);
    CHECK(t.find("sb-1")->pid == 101);
    CHECK(t.find("sb-2")->state == SandboxState::kIdle);
    CHECK(t.find("sb-3")->state == SandboxState::kIdle);  // the record after the compaction
    CHECK(t.find("sb-4")->state == SandboxState::kDead);
    CHECK(t.find("sb-5") == nullptr);
    CHECK(t.create("f", "1", "/run").id == "sb-7");
    std::filesystem::remove_all(dir);
}

TEST_CASE("sandbox table: idle_longer_than decides on the table's clock, least recently used first") {
    ScopedLogLevel quiet(LogLevel::kQuiet);
    char tmpl[] = "/tmp/kindling-table.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    {
        ManualClock clock;
        FileJournal j(dir + "/j");
        SandboxTable t(j, clock);
        Sandbox& a = t.create("f", "1", "/run");
        t.set_pid(a.id, 101);
        t.to_idle(a);
        clock.advance(std::chrono::seconds(1));
        Sandbox& b = t.create("g", "1", "/run");
        t.set_pid(b.id, 102);
        t.to_idle(b);
        Sandbox& c = t.create("h", "1", "/run");
        t.set_pid(c.id, 103);
        t.to_busy(c);  // busy: never counted, however old
        CHECK(t.idle_longer_than(std::chrono::seconds(2)).empty());
        clock.advance(std::chrono::seconds(1));
        auto old = t.idle_longer_than(std::chrono::seconds(2));
        REQUIRE(old.size() == 1);
        CHECK(old[0] == &a);
        clock.advance(std::chrono::seconds(1));
        old = t.idle_longer_than(std::chrono::seconds(2));
        REQUIRE(old.size() == 2);
        CHECK(old[0] == &a);
        CHECK(old[1] == &b);
        t.to_busy(a);  // used again: its idle time starts over on release
        t.to_idle(a);
        old = t.idle_longer_than(std::chrono::seconds(2));
        REQUIRE(old.size() == 1);
        CHECK(old[0] == &b);
        j.close();
    }
    std::filesystem::remove_all(dir);
}
