#include "assign/assigner.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <random>

#include "assign/journal.h"
#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "base/unix_socket.h"

namespace kindling {

namespace {

constexpr size_t kKeepDead = 64;                // dead sandboxes kept for /v1/sandboxes
constexpr uint64_t kCompactMinBytes = 1 << 20;  // journals smaller than this are not compacted
constexpr std::chrono::milliseconds kTimerPeriod{50};

std::string random_instance() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

bool socket_accepts(const std::string& path) {
    int err = 0;
    return try_connect_unix(path, &err).valid();
}

const char* outcome_name(ReleaseOutcome o) {
    switch (o) {
    case ReleaseOutcome::kOk: return "ok";
    case ReleaseOutcome::kError: return "error";
    case ReleaseOutcome::kDestroy: return "destroy";
    }
    return "?";
}

AcquireResult unavailable(std::string message) {
    AcquireResult r;
    r.kind = AcquireResult::kUnavailable;
    r.message = std::move(message);
    return r;
}

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

Assigner::Assigner(AssignOptions options, Journal& journal, std::unique_ptr<SandboxLauncher> launcher,
                   const Clock& clock)
    : opt_(std::move(options)),
      clock_(clock),
      journal_(journal),
      launcher_(std::move(launcher)),
      mounts_(opt_.snapfs, opt_.run_dir),
      instance_(random_instance()),
      table_(journal, clock),
      processes_([this](const std::string& id, int64_t pid, const std::string& how) { on_exit(id, pid, how); },
                 std::chrono::milliseconds(opt_.stop_timeout_ms), clock) {
    std::filesystem::create_directories(opt_.run_dir);
    rebuild();
}

Assigner::~Assigner() {
    // Without stop() (a failed start-up) the sandboxes run on, as after a crash: only
    // this object's threads end here.
    stopping_ = true;
    {
        std::lock_guard lk(threads_mu_);
        for (auto& t : placements_)
            if (t.thread.joinable()) t.thread.join();
    }
    timer_stop_ = true;
    processes_.wake();
    if (timer_.joinable()) timer_.join();
}

// ---- start-up ----

void Assigner::rebuild() {
    std::lock_guard lk(mu_);
    table_.rebuild();
    uint64_t seq = 0;
    size_t alive = 0, lost = 0;
    for (const Sandbox* cs : table_.all()) {
        Sandbox* s = table_.find(cs->id);
        if (s->state == SandboxState::kDead) continue;
        if (UniqueFd pfd = pin_fc_launch(s->pid, s->vsock)) {
            table_.to_idle(*s);
            processes_.watch(s->id, s->pid, std::move(pfd));
            alive++;
            log_info("%s: %s/%s pid %lld rebuilt from the journal: idle", s->id.c_str(), s->function.c_str(),
                     s->version.c_str(), static_cast<long long>(s->pid));
        } else {
            seq = table_.to_dead(*s);
            lost++;
            log_warn("%s: pid %lld is gone: dead", s->id.c_str(), static_cast<long long>(s->pid));
        }
    }
    if (seq) journal_.sync(seq);
    kill_stray_sandboxes(opt_.run_dir, table_);
    log_info("journal %s: %zu sandboxes alive, %zu dead", journal_.describe().c_str(), alive, lost);
}

void Assigner::check_snapshot_dir(const std::string& dir) const {
    if (opt_.snapshot_roots.empty()) return;
    for (const std::string& root : opt_.snapshot_roots)
        if (path_within(root, dir)) return;
    throw DataError("snapshot dir " + dir + " is outside every --snapshot-root");
}

void Assigner::start() { timer_ = std::thread([this] { timer_loop(); }); }

// ---- the timer thread ----

void Assigner::timer_loop() {
    while (!timer_stop_) {
        processes_.poll(kTimerPeriod);
        tick();
    }
}

void Assigner::on_exit(const std::string& id, int64_t pid, const std::string& how) {
    Outbox out;
    {
        std::lock_guard lk(mu_);
        if (Sandbox* s = table_.find(id); s && s->pid == pid && s->state != SandboxState::kDead) {
            if (!s->lease.empty()) void_leases_[s->lease] = "sandbox " + id + " died (fc-launch " + how + ")";
            log_warn("%s: fc-launch pid %lld %s while %s: dead", id.c_str(), static_cast<long long>(s->pid),
                     how.c_str(), sandbox_state_name(s->state));
            table_.to_dead(*s);
            stats_.deaths++;
            prune_dead();
            pump(out);
        }
    }
    flush(out);
}

void Assigner::tick() {
    Outbox out;
    {
        std::lock_guard lk(mu_);
        Clock::time_point now = clock_.now();
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if (now >= it->deadline) {
                stats_.throttles++;
                out.emplace_back(std::move(it->done), throttled(*it));
                it = waiters_.erase(it);
            } else {
                ++it;
            }
        }
        for (Sandbox* s : table_.idle_longer_than(std::chrono::milliseconds(opt_.idle_ttl_ms))) {
            log_info("%s: idle for %lld ms: reaped", s->id.c_str(), ms(now - s->last_used));
            stats_.reaped++;
            stop_sandbox(*s);
        }
        // Every invoke appends two records: rewrite the journal as the table once it
        // has grown to 4x its last compacted size (and at least 1 MiB).
        JournalStats js = journal_.stats();
        if (js.bytes > kCompactMinBytes && js.bytes > 4 * js.compacted_bytes) {
            log_info("journal %s: %llu bytes: compacting", journal_.describe().c_str(),
                     static_cast<unsigned long long>(js.bytes));
            journal_.compact(table_.state_records());
        }
    }
    flush(out);
    // Placement threads that finished are joined here, never left detached.
    std::lock_guard lk(threads_mu_);
    for (auto it = placements_.begin(); it != placements_.end();) {
        if (*it->done) {
            it->thread.join();
            it = placements_.erase(it);
        } else {
            ++it;
        }
    }
}

// ---- state changes (under mu_) ----

// Forgets the sandbox (journaled destroyed) and stops its process group.
void Assigner::stop_sandbox(Sandbox& s) {
    int64_t pid = s.pid;
    if (!s.lease.empty()) void_leases_[s.lease] = "sandbox " + s.id + " was stopped";
    table_.destroy(s.id);
    if (pid > 0) processes_.stop(pid);
}

void Assigner::prune_dead() {
    std::vector<std::string> dead;
    for (const Sandbox* s : table_.all())
        if (s->state == SandboxState::kDead) dead.push_back(s->id);
    for (size_t i = 0; i + kKeepDead < dead.size(); i++) table_.destroy(dead[i]);
    while (void_leases_.size() > 1024) void_leases_.erase(void_leases_.begin());
}

AcquireResult Assigner::throttled(const Waiter& w) const {
    AcquireResult r;
    r.kind = AcquireResult::kThrottled;
    r.message = "Rate Exceeded: function " + w.request.function + " has reached its concurrency limit (" +
                std::to_string(w.request.concurrency) + ") or the host its capacity (" +
                std::to_string(opt_.capacity) + ") and no sandbox freed up in " + std::to_string(ms(w.deadline - w.start)) +
                " ms";
    return r;
}

AcquireResult Assigner::acquired(const Sandbox& s, bool cold, double restore_ms) const {
    AcquireResult r;
    r.sandbox = s.id;
    r.vsock = s.vsock;
    r.lease = s.lease;
    r.cold = cold;
    r.restore_ms = restore_ms;
    r.drains = drains_.load();
    return r;
}

// Serves waiting acquires in arrival order: a warm sandbox if one is idle, else a new
// placement if the function's concurrency and the host's capacity allow (evicting the
// least recently used idle sandbox of another function when the host is full).
// Called whenever something frees up.
void Assigner::pump(Outbox& out) {
    if (stopping_) return;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        Waiter& w = *it;
        if (Sandbox* s = table_.take_idle(w.request.function, w.request.version)) {
            stats_.acquires_warm++;
            out.emplace_back(std::move(w.done), acquired(*s, false, 0));
            it = waiters_.erase(it);
            continue;
        }
        if (table_.active(w.request.function) >= w.request.concurrency) {
            ++it;
            continue;
        }
        if (table_.live() >= opt_.capacity) {
            auto idle = table_.idle_lru();
            if (idle.empty()) {
                ++it;
                continue;
            }
            log_info("%s: evicted (host at capacity %zu)", idle.front()->id.c_str(), opt_.capacity);
            stop_sandbox(*idle.front());
        }
        Sandbox& s = table_.create(w.request.function, w.request.version, opt_.run_dir);
        start_placement(Placement{s.id, std::move(w)});
        it = waiters_.erase(it);
    }
}

void Assigner::flush(Outbox& out) {
    for (auto& [done, r] : out)
        if (done) done(std::move(r));
    out.clear();
}

// ---- placement ----

void Assigner::start_placement(Placement p) {
    std::lock_guard lk(threads_mu_);
    PlacementThread& t = placements_.emplace_back();
    t.thread = std::thread([this, p = std::move(p), done = t.done]() mutable {
        place(std::move(p));
        *done = true;
    });
}

void Assigner::place(Placement p) {
    Clock::time_point t0 = clock_.now();
    Waiter& w = p.waiter;
    std::string failure;
    try {
        int64_t pid;
        uint64_t seq;
        std::string vsock;
        std::string snapshot_dir = w.request.snapshot_dir;
        if (!w.request.manifest.empty()) snapshot_dir = mounts_.mount(w.request.manifest, w.request.store);
        {
            std::lock_guard lk(mu_);
            Sandbox* s = table_.find(p.id);
            if (!s) throw Error("sandbox vanished");
            vsock = s->vsock;
            pid = launcher_->spawn(s->id, s->vsock, snapshot_dir);
            seq = table_.set_pid(p.id, pid);
        }
        UniqueFd pfd = open_pidfd(pid);
        if (!pfd) throw_errno("pidfd_open " + std::to_string(pid));
        processes_.watch(p.id, pid, std::move(pfd));
        journal_.sync(seq);  // durable before anyone uses the sandbox
        for (;;) {
            {
                std::lock_guard lk(mu_);
                Sandbox* s = table_.find(p.id);
                if (!s || s->state == SandboxState::kDead) {
                    std::string tail = launcher_->log_tail(p.id);
                    throw Error("fc-launch died during restore" + (tail.empty() ? "" : ": " + tail));
                }
            }
            if (socket_accepts(vsock)) break;
            if (stopping_) throw Error("assignd is stopping");
            if (clock_.now() - t0 > std::chrono::milliseconds(opt_.ready_timeout_ms))
                throw Error("restore did not finish in " + std::to_string(opt_.ready_timeout_ms) + " ms");
            std::this_thread::sleep_for(std::chrono::microseconds(500));
        }
    } catch (const std::exception& e) {
        failure = e.what();
    }
    double restore_ms = std::chrono::duration<double, std::milli>(clock_.now() - t0).count();
    Outbox out;
    {
        std::lock_guard lk(mu_);
        Sandbox* s = table_.find(p.id);
        if (failure.empty() && s && s->state == SandboxState::kCreating) {
            table_.to_busy(*s);
            stats_.acquires_cold++;
            stats_.restores++;
            restore_seconds_.record(restore_ms / 1000);
            log_verbose("%s: restored %s/%s in %.1f ms", s->id.c_str(), w.request.function.c_str(),
                        w.request.version.c_str(), restore_ms);
            out.emplace_back(std::move(w.done), acquired(*s, true, restore_ms));
        } else {
            if (failure.empty()) failure = "sandbox stopped during restore";
            stats_.restore_failures++;
            log_error("%s: placement of %s/%s failed: %s", p.id.c_str(), w.request.function.c_str(),
                      w.request.version.c_str(), failure.c_str());
            if (s) {
                if (s->pid > 0 && s->state != SandboxState::kDead) {
                    stop_sandbox(*s);
                } else {
                    table_.destroy(p.id);
                }
            }
            out.emplace_back(std::move(w.done), unavailable("placement failed: " + failure));
            pump(out);
        }
    }
    flush(out);
}

// ---- API ----

void Assigner::acquire(AcquireRequest request, AcquireCallback done) {
    Waiter w;
    w.start = clock_.now();
    w.deadline = w.start + std::chrono::milliseconds(request.wait_ms);
    bool no_wait = request.wait_ms == 0;
    w.request = std::move(request);
    w.done = std::move(done);
    Outbox out;
    {
        std::lock_guard lk(mu_);
        if (stopping_) {
            out.emplace_back(std::move(w.done), unavailable("assignd is stopping"));
        } else {
            waiters_.push_back(std::move(w));
            auto mine = std::prev(waiters_.end());
            pump(out);
            // Still waiting with no time to wait: throttled now.  (pump erased it if
            // it was served, so look it up by identity.)
            for (auto it = waiters_.begin(); it != waiters_.end(); ++it)
                if (it == mine && no_wait) {
                    stats_.throttles++;
                    out.emplace_back(std::move(it->done), throttled(*it));
                    waiters_.erase(it);
                    break;
                }
        }
    }
    flush(out);
}

std::string Assigner::release(const std::string& lease, ReleaseOutcome outcome) {
    Outbox out;
    {
        std::lock_guard lk(mu_);
        Sandbox* s = table_.find_lease(lease);
        if (!s) {
            auto v = void_leases_.find(lease);
            return v != void_leases_.end() ? v->second : "unknown or already released";
        }
        if (outcome == ReleaseOutcome::kDestroy || s->stop_on_release || stopping_) {
            log_info("%s: released (%s): stopped", s->id.c_str(), outcome_name(outcome));
            stop_sandbox(*s);
        } else {
            table_.to_idle(*s);
        }
        pump(out);
    }
    flush(out);
    return "";
}

std::vector<SandboxInfo> Assigner::sandboxes() {
    std::lock_guard lk(mu_);
    std::vector<SandboxInfo> out;
    Clock::time_point now = clock_.now();
    int64_t wall = wall_ms();
    for (const Sandbox* s : table_.all()) out.push_back({*s, wall - ms(now - s->last_used)});
    return out;
}

DrainResult Assigner::drain(const std::string& function) {
    std::lock_guard lk(mu_);
    DrainResult r;
    for (const Sandbox* cs : table_.all()) {
        Sandbox* s = table_.find(cs->id);
        if (!function.empty() && s->function != function) continue;
        if (s->state == SandboxState::kIdle) {
            stop_sandbox(*s);
            r.stopped++;
        } else if (s->state == SandboxState::kBusy || s->state == SandboxState::kCreating) {
            s->stop_on_release = true;
            r.stopping_on_release++;
        }
    }
    drains_++;
    log_info("drain %s: %zu stopped, %zu on release", function.empty() ? "(all)" : function.c_str(), r.stopped,
             r.stopping_on_release);
    return r;
}

AssignStats Assigner::stats() {
    std::lock_guard lk(mu_);
    AssignStats s = stats_;
    for (SandboxState st : {SandboxState::kCreating, SandboxState::kIdle, SandboxState::kBusy, SandboxState::kDead})
        s.sandboxes[static_cast<int>(st)] = table_.count(st);
    s.waiting = waiters_.size();
    return s;
}

// ---- shutdown ----

void Assigner::stop() {
    if (stopping_.exchange(true)) return;
    stop_all();
    timer_stop_ = true;
    processes_.wake();
    if (timer_.joinable()) timer_.join();
}

void Assigner::stop_all() {
    Outbox out;
    {
        std::lock_guard lk(mu_);
        for (auto& w : waiters_) out.emplace_back(std::move(w.done), unavailable("assignd is stopping"));
        waiters_.clear();
    }
    flush(out);
    // Placements in flight see stopping_ and give up.
    {
        std::lock_guard lk(threads_mu_);
        for (auto& t : placements_)
            if (t.thread.joinable()) t.thread.join();
        placements_.clear();
    }
    size_t stopped = 0;
    {
        std::lock_guard lk(mu_);
        for (const Sandbox* cs : table_.all()) {
            Sandbox* s = table_.find(cs->id);
            if (s->state == SandboxState::kDead) continue;
            stopped++;
            stop_sandbox(*s);
        }
    }
    // The timer thread reaps them (and SIGKILLs the slow ones).
    if (!processes_.wait_all_exited(clock_.now() + std::chrono::milliseconds(opt_.stop_timeout_ms + 1000)))
        log_warn("sandboxes did not stop in time");
    log_info("stopped %zu sandboxes", stopped);
    mounts_.unmount_all();
}

}  // namespace kindling
