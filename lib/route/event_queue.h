// Durable queue of Event invocations: one append-only file in --queue-dir.
//   E <id> <function> <version> <bytes>\n<payload>\n   accepted (fsync'ed before the 202)
//   D <id>\n                                           finished (succeeded or retries spent)
// On start, records without a D are pending again; the file is rewritten with only
// those (atomically).  Delivery is at least once.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "base/fd.h"

namespace kindling::route {

struct QueuedEvent {
    std::string id, function, version, payload;
};

class EventQueue {
public:
    // Empty dir: in memory only (not durable).
    explicit EventQueue(const std::string& dir);
    // Pending events found at open.
    std::vector<QueuedEvent> take_pending() { return std::move(pending_); }
    // Appends and fsyncs; SysError on failure (the caller answers 500, not 202).
    void append(const QueuedEvent& e);
    void done(const std::string& id);
    bool durable() const { return fd_.valid(); }

private:
    std::mutex mu_;
    UniqueFd fd_;
    std::vector<QueuedEvent> pending_;
};

}  // namespace kindling::route
