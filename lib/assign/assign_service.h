// assignd's service (issue 7): an Assigner (assigner.h: placement, sandboxes, the
// timer) served by AssignHttpApi (assign_http.h) over lib/http's async server on a
// Unix socket.  This file only wires them together and orders their shutdown.
#pragma once

#include <memory>
#include <string>

#include "assign/assigner.h"

namespace kindling {

class AssignHttpApi;
class HttpServer;
class Journal;

class AssignService {
public:
    // Rebuilds the table from `journal` (live recorded sandboxes become idle again,
    // others dead) and binds the API socket.  `clock` must outlive the service.
    AssignService(AssignOptions options, std::unique_ptr<Journal> journal, const Clock& clock = Clock::steady());
    ~AssignService();
    AssignService(const AssignService&) = delete;
    AssignService& operator=(const AssignService&) = delete;

    // Starts the timer thread and accepting requests.
    void start();
    // Stops accepting, stops every sandbox (journaled as destroyed), closes the
    // journal.  Idempotent.
    void stop();
    // The API socket's address, once bound; "" after stop().
    std::string address() const;

private:
    std::unique_ptr<Journal> journal_;
    std::unique_ptr<Assigner> assigner_;
    std::unique_ptr<AssignHttpApi> api_;
    std::unique_ptr<HttpServer> server_;
};

}  // namespace kindling
