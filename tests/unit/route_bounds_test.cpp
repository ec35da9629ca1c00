// routerd's bounds: the worker job queue, the Event queue, per-tenant concurrency,
// and the size of a sandbox's answer.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "route/event_retrier.h"
#include "route/sandbox_client.h"
#include "route/tenant_limiter.h"
#include "route/worker_pool.h"

using namespace kindling;
using namespace kindling::route;
using namespace std::chrono_literals;

namespace {

// Holds every worker in a job until released.
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::atomic<int> entered{0};
    void wait() {
        ++entered;
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return open; });
    }
    void release() {
        {
            std::lock_guard lk(mu);
            open = true;
        }
        cv.notify_all();
    }
};

bool eventually(const std::function<bool()>& pred) {
    for (int i = 0; i < 500; ++i) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

}  // namespace

TEST_CASE("worker pool: try_submit refuses past max_queued waiting jobs; submit always queues") {
    Gate gate;
    WorkerPool pool(2, 3);
    std::atomic<int> ran{0};
    for (int i = 0; i < 2; ++i) CHECK(pool.try_submit([&] { gate.wait(); ++ran; }));
    REQUIRE(eventually([&] { return gate.entered == 2; }));
    for (int i = 0; i < 3; ++i) CHECK(pool.try_submit([&] { ++ran; }));
    CHECK(pool.queued() == 3);
    CHECK_FALSE(pool.try_submit([&] { ++ran; }));
    pool.submit([&] { ++ran; });  // the router's own work is never refused
    CHECK(pool.queued() == 4);
    gate.release();
    CHECK(eventually([&] { return ran == 6; }));
    CHECK(pool.try_submit([&] { ++ran; }));
    CHECK(eventually([&] { return ran == 7; }));
}

TEST_CASE("event retrier: at most max_pending events accepted and not finished") {
    Gate gate;
    WorkerPool pool(1);
    RouterMetrics metrics;
    std::atomic<int> delivered{0};
    EventRetrier events("", 10ms, pool, metrics,
                        [&](const QueuedEvent&) {
                            gate.wait();
                            ++delivered;
                            return EventRetrier::Delivery::kDone;
                        },
                        2);
    CHECK(events.accept({"e1", "f", "$LATEST", "{}"}));
    CHECK(events.accept({"e2", "f", "$LATEST", "{}"}));
    CHECK_FALSE(events.accept({"e3", "f", "$LATEST", "{}"}));
    CHECK(events.pending() == 2);
    gate.release();
    CHECK(eventually([&] { return delivered == 2 && events.pending() == 0; }));
    CHECK(events.accept({"e4", "f", "$LATEST", "{}"}));
    CHECK(eventually([&] { return delivered == 3; }));
    events.stop();
    pool.stop();
}

TEST_CASE("tenant limiter: at most `limit` running per tenant, released with the last copy of a slot") {
    TenantLimiter l(2);
    auto a1 = l.try_acquire("a"), a2 = l.try_acquire("a");
    REQUIRE(a1);
    REQUIRE(a2);
    CHECK_FALSE(l.try_acquire("a"));
    auto b1 = l.try_acquire("b");  // another tenant is not affected
    CHECK(b1);
    auto copy = a1;
    a1.reset();
    CHECK_FALSE(l.try_acquire("a"));  // a copy still holds it
    copy.reset();
    CHECK(l.running("a") == 1);
    CHECK(l.try_acquire("a"));
    TenantLimiter unlimited(0);
    std::vector<std::shared_ptr<TenantLimiter::Slot>> many;
    for (int i = 0; i < 5000; ++i) many.push_back(unlimited.try_acquire("a"));
    CHECK(many.back());
}

TEST_CASE("answer parser: an answer announced past Lambda's 6 MB is refused at its first line") {
    SUBCASE("OK past the limit: done at once, nothing buffered") {
        AnswerParser p;
        std::string line = "OK " + std::to_string(kMaxAnswerBytes + 1) + "\n";
        CHECK(p.feed(line.data(), line.size()) == AnswerParser::kDone);
        CHECK(p.answer().kind == GuestAnswer::kTooLarge);
    }
    SUBCASE("ERR past the limit, with bytes after the line") {
        AnswerParser p;
        std::string data = "ERR 67108864\n" + std::string(4096, 'x');
        CHECK(p.feed(data.data(), data.size()) == AnswerParser::kDone);
        auto a = p.answer();
        CHECK(a.kind == GuestAnswer::kTooLarge);
        CHECK(a.body.empty());
    }
    SUBCASE("exactly the limit is an answer") {
        AnswerParser p;
        std::string line = "OK " + std::to_string(kMaxAnswerBytes) + "\n";
        CHECK(p.feed(line.data(), line.size()) == AnswerParser::kMore);
        std::string body(kMaxAnswerBytes, 'a');
        CHECK(p.feed(body.data(), body.size()) == AnswerParser::kDone);
        auto a = p.answer();
        CHECK(a.kind == GuestAnswer::kOk);
        CHECK(a.body.size() == kMaxAnswerBytes);
    }
}
