// Assigner (lib/assign) on a ManualClock, with stand-in sandboxes (a forked child
// listening on the vsock socket) instead of fc-launch: the idle TTL, an acquire's
// wait and a stop's escalation to SIGKILL all decide on the clock, not on sleeps.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "assign/assigner.h"
#include "assign/journal.h"
#include "base/clock.h"
#include "base/log.h"
#include "eventually.h"

using namespace kindling;
using namespace std::chrono_literals;

namespace {

// A sandbox stand-in: a child in its own process group that listens on the vsock
// path (so the restore "finishes") and waits for a signal.
class StandInLauncher : public SandboxLauncher {
public:
    explicit StandInLauncher(bool ignore_sigterm = false) : ignore_sigterm_(ignore_sigterm) {}

    int64_t spawn(const std::string&, const std::string& vsock, const std::string&) override {
        ::unlink(vsock.c_str());
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        REQUIRE(vsock.size() < sizeof addr.sun_path);
        std::memcpy(addr.sun_path, vsock.c_str(), vsock.size() + 1);
        pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Only async-signal-safe calls in the child of a threaded process.
            ::setpgid(0, 0);
            struct sigaction sa {};
            sa.sa_handler = ignore_sigterm_ ? SIG_IGN : SIG_DFL;
            ::sigaction(SIGTERM, &sa, nullptr);
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(fd, 64) < 0)
                ::_exit(1);
            for (;;) ::pause();
        }
        ::setpgid(pid, pid);  // also here: the parent may signal the group first
        return pid;
    }
    std::string log_tail(const std::string&) const override { return ""; }

private:
    bool ignore_sigterm_;
};

bool process_gone(int64_t pid) { return ::kill(static_cast<pid_t>(pid), 0) < 0 && errno == ESRCH; }

// Collects the answer to one acquire.
struct Answer {
    std::mutex mu;
    std::optional<AcquireResult> result;
    AcquireCallback callback() {
        return [this](AcquireResult r) {
            std::lock_guard lk(mu);
            result = std::move(r);
        };
    }
    bool ready() {
        std::lock_guard lk(mu);
        return result.has_value();
    }
    AcquireResult get() {
        std::lock_guard lk(mu);
        return *result;
    }
};

struct Fixture {
    ScopedLogLevel quiet{LogLevel::kQuiet};
    std::string dir;
    ManualClock clock;
    std::unique_ptr<FileJournal> journal;
    std::unique_ptr<Assigner> assigner;

    explicit Fixture(bool ignore_sigterm = false, int64_t idle_ttl_ms = 1000) {
        char tmpl[] = "/tmp/kindling-assigner.XXXXXX";
        dir = ::mkdtemp(tmpl);
        journal = std::make_unique<FileJournal>(dir + "/journal");
        AssignOptions o;
        o.run_dir = dir + "/run";
        o.idle_ttl_ms = idle_ttl_ms;
        o.stop_timeout_ms = 3000;
        assigner = std::make_unique<Assigner>(o, *journal, std::make_unique<StandInLauncher>(ignore_sigterm), clock);
        assigner->start();
    }
    ~Fixture() {
        assigner->stop();
        assigner.reset();
        journal.reset();
        std::filesystem::remove_all(dir);
    }

    AcquireRequest request(const std::string& function, size_t concurrency = 10, int64_t wait_ms = 0) {
        AcquireRequest r;
        r.function = function;
        r.snapshot_dir = "/nonexistent";  // the stand-in ignores it
        r.concurrency = concurrency;
        r.wait_ms = wait_ms;
        return r;
    }
    // A cold acquire, answered once the stand-in listens.
    AcquireResult acquire(const std::string& function) {
        Answer a;
        assigner->acquire(request(function), a.callback());
        REQUIRE(eventually([&] { return a.ready(); }));
        return a.get();
    }
    std::optional<SandboxInfo> find(const std::string& id) {
        for (auto& i : assigner->sandboxes())
            if (i.sandbox.id == id) return i;
        return std::nullopt;
    }
};

}  // namespace

TEST_CASE("assigner: an idle sandbox is reaped once it has been idle for the TTL on the clock") {
    Fixture f;
    AcquireResult a = f.acquire("hello");
    REQUIRE(a.kind == AcquireResult::kAcquired);
    CHECK(a.cold);
    int64_t pid = f.find(a.sandbox)->sandbox.pid;
    CHECK(f.assigner->release(a.lease, ReleaseOutcome::kOk) == "");
    f.clock.advance(999ms);
    f.assigner->tick();
    REQUIRE(f.find(a.sandbox));
    CHECK(f.find(a.sandbox)->sandbox.state == SandboxState::kIdle);
    CHECK(f.assigner->stats().reaped == 0);
    f.clock.advance(1ms);
    f.assigner->tick();
    CHECK(!f.find(a.sandbox));
    CHECK(f.assigner->stats().reaped == 1);
    CHECK(eventually([&] { return process_gone(pid); }));  // SIGTERM, reaped through its pidfd
    CHECK(f.assigner->stats().deaths == 0);                // a stop is not a death
}

TEST_CASE("assigner: a busy sandbox is never reaped, and a release restarts its idle time") {
    Fixture f;
    AcquireResult a = f.acquire("hello");
    REQUIRE(a.kind == AcquireResult::kAcquired);
    f.clock.advance(5s);
    f.assigner->tick();
    CHECK(f.find(a.sandbox)->sandbox.state == SandboxState::kBusy);
    CHECK(f.assigner->release(a.lease, ReleaseOutcome::kOk) == "");
    f.clock.advance(999ms);
    f.assigner->tick();
    CHECK(f.find(a.sandbox)->sandbox.state == SandboxState::kIdle);
    // Warm: the same sandbox, not a new restore.
    AcquireResult b = f.acquire("hello");
    CHECK(b.sandbox == a.sandbox);
    CHECK(!b.cold);
    CHECK(f.assigner->stats().acquires_warm == 1);
}

TEST_CASE("assigner: a waiting acquire is throttled when its wait_ms has passed on the clock") {
    Fixture f;
    AcquireResult a = f.acquire("hello");
    REQUIRE(a.kind == AcquireResult::kAcquired);
    Answer waiting;
    f.assigner->acquire(f.request("hello", 1, 1000), waiting.callback());  // concurrency 1: waits
    f.clock.advance(999ms);
    f.assigner->tick();
    CHECK(!waiting.ready());
    f.clock.advance(1ms);
    f.assigner->tick();
    REQUIRE(waiting.ready());
    AcquireResult r = waiting.get();
    CHECK(r.kind == AcquireResult::kThrottled);
    CHECK(r.message.find("concurrency limit (1)") != std::string::npos);
    CHECK(r.message.find("no sandbox freed up in 1000 ms") != std::string::npos);
    CHECK(f.assigner->stats().throttles == 1);

    // With no time to wait the answer comes at once; a release serves a waiter warm.
    Answer now;
    f.assigner->acquire(f.request("hello", 1, 0), now.callback());
    REQUIRE(now.ready());
    CHECK(now.get().kind == AcquireResult::kThrottled);
    Answer served;
    f.assigner->acquire(f.request("hello", 1, 1000), served.callback());
    CHECK(f.assigner->release(a.lease, ReleaseOutcome::kOk) == "");
    REQUIRE(served.ready());
    CHECK(served.get().sandbox == a.sandbox);
    CHECK(!served.get().cold);
}

TEST_CASE("assigner: a stop escalates to SIGKILL after the stop timeout on the clock") {
    Fixture f(/*ignore_sigterm=*/true);
    AcquireResult a = f.acquire("hello");
    REQUIRE(a.kind == AcquireResult::kAcquired);
    int64_t pid = f.find(a.sandbox)->sandbox.pid;
    CHECK(f.assigner->release(a.lease, ReleaseOutcome::kDestroy) == "");
    CHECK(!f.find(a.sandbox));
    CHECK(f.assigner->release(a.lease, ReleaseOutcome::kOk) == "sandbox " + a.sandbox + " was stopped");
    // It ignores SIGTERM: alive however long the timer runs while the clock stands still.
    f.clock.advance(2999ms);
    CHECK(!process_gone(pid));
    f.clock.advance(1ms);
    CHECK(eventually([&] { return process_gone(pid); }));
}

TEST_CASE("assigner: a sandbox whose process dies is dead, its lease void, the next acquire cold") {
    Fixture f;
    AcquireResult a = f.acquire("hello");
    REQUIRE(a.kind == AcquireResult::kAcquired);
    int64_t pid = f.find(a.sandbox)->sandbox.pid;
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    CHECK(eventually([&] { return f.find(a.sandbox)->sandbox.state == SandboxState::kDead; }));
    CHECK(f.assigner->stats().deaths == 1);
    std::string why = f.assigner->release(a.lease, ReleaseOutcome::kOk);
    CHECK(why.find("sandbox " + a.sandbox + " died (fc-launch killed by") == 0);
    AcquireResult b = f.acquire("hello");
    CHECK(b.cold);
    CHECK(b.sandbox != a.sandbox);
}
