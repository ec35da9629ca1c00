// assignd's HTTP API (assign_api.h) over an Assigner: routes each request, checks its
// JSON (a bad field is 400 InvalidRequestContentException naming it), calls the
// Assigner and renders its answer as JSON, /metrics as Prometheus text.
#pragma once

#include <string>

#include "http/http_server.h"

namespace kindling {

class Assigner;
class Journal;

class AssignHttpApi {
public:
    // `assigner` and `journal` (for its /metrics counters) must outlive the API.
    AssignHttpApi(Assigner& assigner, const Journal& journal) : assigner_(assigner), journal_(journal) {}

    // Answers `req` through `respond`: at once, or later from another thread for an
    // acquire that waits for a sandbox or for its restore.  Exactly once either way.
    void handle(const HttpRequest& req, HttpResponder respond);

    // assignd's error body: {"error": ERROR, "message": MESSAGE}.
    static HttpResponse error(int status, const std::string& error, const std::string& message);
    // The body of the HTTP server's own errors (bad framing, too large): 400 is
    // InvalidRequestContentException, the rest ServiceException.
    static HttpResponse server_error(int status, const std::string& message);

private:
    void acquire(const HttpRequest& req, HttpResponder& respond);
    HttpResponse release(const HttpRequest& req);
    HttpResponse sandboxes();
    HttpResponse drain(const HttpRequest& req);
    HttpResponse instance();
    HttpResponse metrics();

    Assigner& assigner_;
    const Journal& journal_;
};

}  // namespace kindling
