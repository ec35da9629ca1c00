// routerd's durable queue of Event invocations: what was accepted and not finished is
// pending again after a restart, in order, with its payload byte for byte; a torn
// tail is dropped.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/io.h"
#include "route/event_queue.h"

using namespace kindling;
using namespace kindling::route;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-eventq.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("event queue: pending events survive a restart, finished ones do not") {
    TempDir t;
    std::string dir = t.path + "/q";
    std::string binary("a\nb\0c\n", 6);
    {
        EventQueue q(dir);
        CHECK(q.durable());
        CHECK(q.take_pending().empty());
        q.append({"e1", "hello", "$LATEST", "{\"n\":1}"});
        q.append({"e2", "hello", "3", binary});
        q.append({"e3", "other", "$LATEST", ""});
        q.done("e1");
    }
    std::vector<QueuedEvent> pending;
    {
        EventQueue q(dir);
        pending = q.take_pending();
        REQUIRE(pending.size() == 2);
        CHECK(pending[0].id == "e2");
        CHECK(pending[0].function == "hello");
        CHECK(pending[0].version == "3");
        CHECK(pending[0].payload == binary);
        CHECK(pending[1].id == "e3");
        CHECK(pending[1].payload.empty());
        q.done("e2");
    }
    EventQueue q(dir);
    pending = q.take_pending();
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].id == "e3");
}

TEST_CASE("event queue: a record torn by a crash mid-append is dropped") {
    TempDir t;
    std::string dir = t.path + "/q";
    {
        EventQueue q(dir);
        q.append({"e1", "hello", "$LATEST", "one"});
    }
    {
        // What a kill between write and fsync may leave: a record cut short.
        UniqueFd fd = open_file(dir + "/events.log", O_WRONLY | O_APPEND | O_CLOEXEC);
        std::string torn = "E e2 hello $LATEST 100\npartial";
        write_full(fd.get(), torn.data(), torn.size(), "events.log");
    }
    EventQueue q(dir);
    auto pending = q.take_pending();
    REQUIRE(pending.size() == 1);
    CHECK(pending[0].id == "e1");
    CHECK(pending[0].payload == "one");
    // The file was rewritten without the torn record: appends after it parse.
    q.append({"e3", "hello", "$LATEST", "three"});
    EventQueue again(dir);
    CHECK(again.take_pending().size() == 2);
}

TEST_CASE("event queue: without a directory it is in memory only") {
    EventQueue q("");
    CHECK_FALSE(q.durable());
    q.append({"e1", "hello", "$LATEST", "x"});  // accepted, not persisted
    q.done("e1");
    CHECK(q.take_pending().empty());
}
