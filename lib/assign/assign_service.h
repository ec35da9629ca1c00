// assignd's service (issue 7): serves assign_api.h over lib/http's async server and
// places sandboxes on this host.  A sandbox is one `fc-launch --restore DIR --vsock
// RUN_DIR/sb-N.sock` process in its own process group; a watcher thread polls the
// pidfd of every sandbox (death -> dead, journaled, lease void), expires waiting
// acquires (429) and reaps idle sandboxes after the TTL.  A cold acquire is placed on
// its own thread, so restores never block the API: one restore per waiting request at
// most (no placement storm), bounded by the function's concurrency and host capacity.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace kindling {

class Journal;

struct AssignOptions {
    std::string socket;        // API Unix socket path
    std::string run_dir;       // sandbox sockets and logs
    std::string fc_launch = "fc-launch";
    std::string snapfs = "snapfs";
    size_t capacity = 64;      // live sandboxes on this host
    int64_t idle_ttl_ms = 300000;
    int64_t ready_timeout_ms = 10000;  // restore until the vsock socket accepts
    int64_t stop_timeout_ms = 3000;    // SIGTERM -> SIGKILL
};

class AssignService {
public:
    // Rebuilds the table from `journal` (live recorded sandboxes become idle again,
    // others dead) and binds the API socket.
    AssignService(AssignOptions options, std::unique_ptr<Journal> journal);
    ~AssignService();
    AssignService(const AssignService&) = delete;
    AssignService& operator=(const AssignService&) = delete;

    void start();
    // Stops accepting, stops every sandbox (journaled as destroyed), closes the
    // journal.  Idempotent.
    void stop();
    std::string address() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace kindling
