// assignd's sandbox state machine (issue 7): creating -> idle <-> busy -> dead, every
// change written to the Journal, the whole table rebuilt from it on start.  Keeps a
// most-recently-used idle list per function+version and counts per function what
// Lambda's concurrency limit counts (creating + busy).  Idle times are kept on an
// injectable Clock.  Not thread-safe: the owner holds its lock around every call.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "assign/assign_api.h"
#include "assign/journal.h"
#include "base/clock.h"

namespace kindling {

struct Sandbox {
    std::string id;  // "sb-7"
    std::string function;
    std::string version;
    SandboxState state = SandboxState::kCreating;
    int64_t pid = 0;
    std::string vsock;
    std::string lease;      // while busy
    uint64_t invokes = 0;   // acquires served
    Clock::time_point last_used;  // the table's clock: when it last became idle or busy
    bool stop_on_release = false;  // drained while busy
};

class SandboxTable {
public:
    // `journal` and `clock` must outlive the table.
    explicit SandboxTable(Journal& journal, const Clock& clock = Clock::steady())
        : journal_(journal), clock_(clock) {}

    // Replays the journal into an empty table.  Sandboxes come back in their last
    // recorded state (the caller checks which are still alive); destroyed ones are
    // gone; ids continue after the highest one seen.
    void rebuild();

    // A new sandbox in state creating (nothing journaled until it has a pid).
    Sandbox& create(const std::string& function, const std::string& version, const std::string& run_dir);
    // Its fc-launch runs: journals `created`.  Returns the record's sequence number
    // (Journal::sync it before relying on the sandbox surviving a crash).
    uint64_t set_pid(const std::string& id, int64_t pid);

    // The most recently used idle sandbox of function+version, now busy with a new
    // lease; nullptr if none.
    Sandbox* take_idle(const std::string& function, const std::string& version);
    // creating or idle -> busy with a new lease.
    void to_busy(Sandbox& s);
    // busy/creating -> idle (lease ended).
    void to_idle(Sandbox& s);
    // -> dead; its lease is void.  Returns the journal sequence number.
    uint64_t to_dead(Sandbox& s);
    // Forgets the sandbox (destroyed, or a dead one pruned).  Returns the sequence.
    uint64_t destroy(const std::string& id);

    Sandbox* find(const std::string& id);
    Sandbox* find_lease(const std::string& lease);
    std::vector<const Sandbox*> all() const;
    // Idle sandboxes, least recently used first.
    std::vector<Sandbox*> idle_lru();
    // Idle sandboxes unused for `ttl` or longer on the table's clock, least recently
    // used first.
    std::vector<Sandbox*> idle_longer_than(Clock::duration ttl);

    // creating + busy of a function (all versions): what its concurrency limit counts.
    size_t active(const std::string& function) const;
    // Sandboxes holding host resources: creating + idle + busy.
    size_t live() const;
    size_t count(SandboxState st) const;
    // Id sb-`n` was seen (a run-dir file, a process): never hand it out again.
    void note_id(uint64_t n) { next_id_ = std::max(next_id_, n + 1); }
    // Records that rebuild this table (and its next id): Journal::compact's input.
    std::vector<JournalRecord> state_records() const;

private:
    static std::string key(const std::string& f, const std::string& v) { return f + '\0' + v; }
    void unlink_idle(const Sandbox& s);
    static JournalRecord make_record(SandboxEvent ev, const Sandbox& s);
    uint64_t record(SandboxEvent ev, const Sandbox& s);

    Journal& journal_;
    const Clock& clock_;
    std::map<std::string, Sandbox> sandboxes_;
    std::map<std::string, std::deque<std::string>> idle_;  // key -> ids, most recent at back
    std::map<std::string, std::string> leases_;           // lease -> id
    uint64_t next_id_ = 1;
    uint64_t next_lease_ = 1;
};

// The wall clock in ms since the epoch (journal records, /v1/sandboxes).
int64_t wall_ms();

}  // namespace kindling
