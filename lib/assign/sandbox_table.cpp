#include "assign/sandbox_table.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "base/error.h"

namespace kindling {

int64_t wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

JournalRecord SandboxTable::make_record(SandboxEvent ev, const Sandbox& s) {
    JournalRecord r;
    r.event = ev;
    r.sandbox = s.id;
    r.time_ms = wall_ms();
    if (ev == SandboxEvent::kCreated) {
        r.function = s.function;
        r.version = s.version;
        r.pid = s.pid;
        r.vsock = s.vsock;
    }
    return r;
}

uint64_t SandboxTable::record(SandboxEvent ev, const Sandbox& s) {
    // Leases coming and going are not worth a wait: a restart makes every live
    // sandbox idle whatever the journal says.
    JournalRecord r = make_record(ev, s);
    if (ev == SandboxEvent::kBusy || ev == SandboxEvent::kIdle) return journal_.append_lazy(r);
    return journal_.append_nowait(r);
}

std::vector<JournalRecord> SandboxTable::state_records() const {
    std::vector<JournalRecord> out;
    bool newest_kept = false;
    for (const Sandbox* s : all()) {
        if (s->pid == 0) continue;  // not journaled yet (set_pid records it)
        out.push_back(make_record(SandboxEvent::kCreated, *s));
        if (s->state == SandboxState::kIdle) out.push_back(make_record(SandboxEvent::kIdle, *s));
        if (s->state == SandboxState::kBusy) out.push_back(make_record(SandboxEvent::kBusy, *s));
        if (s->state == SandboxState::kDead) out.push_back(make_record(SandboxEvent::kDead, *s));
        newest_kept = newest_kept || s->id == "sb-" + std::to_string(next_id_ - 1);
    }
    // Ids are never reused: keep the highest one handed out, as a destroyed record.
    if (!newest_kept && next_id_ > 1) {
        Sandbox gone;
        gone.id = "sb-" + std::to_string(next_id_ - 1);
        out.push_back(make_record(SandboxEvent::kDestroyed, gone));
    }
    return out;
}

void SandboxTable::rebuild() {
    sandboxes_.clear();
    idle_.clear();
    leases_.clear();
    Clock::time_point now = clock_.now();
    journal_.replay([&](const JournalRecord& r) {
        if (r.sandbox.rfind("sb-", 0) == 0) {
            uint64_t n = std::strtoull(r.sandbox.c_str() + 3, nullptr, 10);
            next_id_ = std::max(next_id_, n + 1);
        }
        if (r.event == SandboxEvent::kCreated) {
            Sandbox s;
            s.id = r.sandbox;
            s.function = r.function;
            s.version = r.version;
            s.pid = r.pid;
            s.vsock = r.vsock;
            s.state = SandboxState::kCreating;
            s.last_used = now;
            sandboxes_[s.id] = std::move(s);
            return;
        }
        auto it = sandboxes_.find(r.sandbox);
        if (it == sandboxes_.end()) return;  // pruned or unknown: nothing to rebuild
        switch (r.event) {
        case SandboxEvent::kIdle: it->second.state = SandboxState::kIdle; break;
        case SandboxEvent::kBusy: it->second.state = SandboxState::kBusy; break;
        case SandboxEvent::kDead: it->second.state = SandboxState::kDead; break;
        case SandboxEvent::kDestroyed: sandboxes_.erase(it); break;
        case SandboxEvent::kCreated: break;
        }
    });
    // Idle lists and leases are rebuilt by the caller's transitions (to_idle/to_dead)
    // once it has checked which recorded processes are still alive; leases held by
    // the previous assignd's clients are void.
}

Sandbox& SandboxTable::create(const std::string& function, const std::string& version,
                              const std::string& run_dir) {
    Sandbox s;
    s.id = "sb-" + std::to_string(next_id_++);
    s.function = function;
    s.version = version;
    s.vsock = run_dir + "/" + s.id + ".sock";
    s.state = SandboxState::kCreating;
    s.last_used = clock_.now();
    auto [it, inserted] = sandboxes_.emplace(s.id, std::move(s));
    return it->second;
}

uint64_t SandboxTable::set_pid(const std::string& id, int64_t pid) {
    Sandbox* s = find(id);
    if (!s) throw Error("sandbox " + id + " vanished while being created");
    s->pid = pid;
    return record(SandboxEvent::kCreated, *s);
}

void SandboxTable::unlink_idle(const Sandbox& s) {
    auto it = idle_.find(key(s.function, s.version));
    if (it == idle_.end()) return;
    auto& q = it->second;
    q.erase(std::remove(q.begin(), q.end(), s.id), q.end());
    if (q.empty()) idle_.erase(it);
}

Sandbox* SandboxTable::take_idle(const std::string& function, const std::string& version) {
    auto it = idle_.find(key(function, version));
    if (it == idle_.end() || it->second.empty()) return nullptr;
    Sandbox* s = find(it->second.back());
    if (!s) return nullptr;
    to_busy(*s);
    return s;
}

void SandboxTable::to_busy(Sandbox& s) {
    if (s.state == SandboxState::kIdle) unlink_idle(s);
    s.state = SandboxState::kBusy;
    s.lease = "L" + s.id.substr(3) + "-" + std::to_string(next_lease_++);
    leases_[s.lease] = s.id;
    s.invokes++;
    s.last_used = clock_.now();
    record(SandboxEvent::kBusy, s);
}

void SandboxTable::to_idle(Sandbox& s) {
    if (!s.lease.empty()) leases_.erase(s.lease);
    s.lease.clear();
    unlink_idle(s);  // a sandbox replayed as idle is in no list yet
    s.state = SandboxState::kIdle;
    s.last_used = clock_.now();
    idle_[key(s.function, s.version)].push_back(s.id);
    record(SandboxEvent::kIdle, s);
}

uint64_t SandboxTable::to_dead(Sandbox& s) {
    if (s.state == SandboxState::kIdle) unlink_idle(s);
    if (!s.lease.empty()) leases_.erase(s.lease);
    s.lease.clear();
    s.state = SandboxState::kDead;
    return record(SandboxEvent::kDead, s);
}

uint64_t SandboxTable::destroy(const std::string& id) {
    auto it = sandboxes_.find(id);
    if (it == sandboxes_.end()) return 0;
    Sandbox& s = it->second;
    if (s.state == SandboxState::kIdle) unlink_idle(s);
    if (!s.lease.empty()) leases_.erase(s.lease);
    uint64_t seq = record(SandboxEvent::kDestroyed, s);
    sandboxes_.erase(it);
    return seq;
}

Sandbox* SandboxTable::find(const std::string& id) {
    auto it = sandboxes_.find(id);
    return it == sandboxes_.end() ? nullptr : &it->second;
}

Sandbox* SandboxTable::find_lease(const std::string& lease) {
    auto it = leases_.find(lease);
    return it == leases_.end() ? nullptr : find(it->second);
}

std::vector<const Sandbox*> SandboxTable::all() const {
    std::vector<const Sandbox*> out;
    for (const auto& [id, s] : sandboxes_) out.push_back(&s);
    // sb-2 before sb-10.
    std::sort(out.begin(), out.end(), [](const Sandbox* a, const Sandbox* b) {
        return a->id.size() != b->id.size() ? a->id.size() < b->id.size() : a->id < b->id;
    });
    return out;
}

std::vector<Sandbox*> SandboxTable::idle_lru() {
    std::vector<Sandbox*> out;
    for (auto& [k, q] : idle_)
        for (const auto& id : q)
            if (Sandbox* s = find(id)) out.push_back(s);
    std::sort(out.begin(), out.end(), [](const Sandbox* a, const Sandbox* b) { return a->last_used < b->last_used; });
    return out;
}

std::vector<Sandbox*> SandboxTable::idle_longer_than(Clock::duration ttl) {
    Clock::time_point now = clock_.now();
    std::vector<Sandbox*> out;
    for (Sandbox* s : idle_lru()) {
        if (now - s->last_used < ttl) break;
        out.push_back(s);
    }
    return out;
}

size_t SandboxTable::active(const std::string& function) const {
    size_t n = 0;
    for (const auto& [id, s] : sandboxes_)
        if (s.function == function && (s.state == SandboxState::kCreating || s.state == SandboxState::kBusy))
            n++;
    return n;
}

size_t SandboxTable::live() const {
    size_t n = 0;
    for (const auto& [id, s] : sandboxes_)
        if (s.state != SandboxState::kDead) n++;
    return n;
}

size_t SandboxTable::count(SandboxState st) const {
    size_t n = 0;
    for (const auto& [id, s] : sandboxes_)
        if (s.state == st) n++;
    return n;
}

}  // namespace kindling
