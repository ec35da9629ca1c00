// A small HTTP/1.1 server for the daemons' APIs (fc-launch's Firecracker API, later
// routerd and assignd).  Listens on a Unix socket path or a TCP address, keeps
// connections alive, and runs its I/O on one thread it owns.  Handlers see plain
// structs (http_message.h): Boost.Beast stays inside lib/http's .cpp files (the
// connection itself is http_session, the listening socket http_listener) so users
// don't pay to compile it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "base/unix_socket.h"
#include "http/http_message.h"

namespace kindling {

// Called on the server's I/O thread, one request at a time: a handler that blocks
// holds up every connection.  An exception becomes a 500 response.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// For handlers that finish later on another thread (routerd forwarding an invoke):
// call `respond` exactly once, from any thread.  Calling it after the server
// stopped is harmless.
using HttpResponder = std::function<void(HttpResponse)>;
using HttpAsyncHandler = std::function<void(const HttpRequest&, HttpResponder respond)>;

// Builds the body of responses the server makes itself (400, 413, 431, 500, 503).
using HttpErrorFormatter = std::function<HttpResponse(int status, const std::string& message)>;

// Looks at a request once its header has arrived, before any of its body is read
// (`head.body` is empty; `content_length` is the declared length, if any).  A
// response refuses the request: it is sent, the connection is closed, and the body
// is never read.  Called on the I/O thread: it must not block.
using HttpHeadCheck =
    std::function<std::optional<HttpResponse>(const HttpRequest& head, std::optional<uint64_t> content_length)>;

struct HttpServerOptions {
    size_t max_header_bytes = 16 * 1024;    // request line + fields; beyond -> 431
    size_t max_body_bytes = 1024 * 1024;    // beyond -> 413
    // Time a client gets to send one complete request, counted from when the server
    // starts waiting for it (so it also bounds keep-alive idleness).  A slowloris
    // client trickling bytes is cut off when it runs out.
    std::chrono::milliseconds request_timeout{30000};
    // Time to write one response to a client that doesn't read it.
    std::chrono::milliseconds write_timeout{30000};
    // Connections beyond this are closed as soon as they are accepted.
    size_t max_connections = 256;
    // TCP connections from one client address (IP, any port) beyond this are closed
    // as soon as they are accepted, so one client cannot hold every connection.
    // 0: no limit.  Unix socket clients are not limited.
    size_t max_connections_per_client = 0;
    // Default: none (every request's body is read, up to max_body_bytes).
    HttpHeadCheck head_check;
    // What the listening socket is, for error messages: "<path>: API socket path in use".
    std::string label = "socket";
    // "Server" response header; empty for none.
    std::string server_name = "kindling";
    // Default: JSON {"error": message}.
    HttpErrorFormatter error_formatter;
    // Runs first on the I/O thread (fc-launch installs the API thread's seccomp
    // filter there); if it throws, the error is logged and the thread serves nothing.
    std::function<void()> on_thread_start;
};

// A file descriptor registered with an HttpServer's I/O thread (HttpServer::watch), so
// an async handler can wait on another socket without a thread of its own and
// without registering it again for every wait.
class FdWatch {
public:
    virtual ~FdWatch() = default;
    // Calls `ready(true)` on the I/O thread once the fd is readable, or `ready(false)`
    // once `deadline` passes first.  One wait at a time, started on the I/O thread.
    // If the watch or the server goes away first, `ready` is dropped uncalled.
    virtual void when_readable(std::chrono::steady_clock::time_point deadline, std::function<void(bool)> ready) = 0;
};

class HttpServer {
public:
    // `address`: "unix:PATH", or a path (contains '/' or no ':'), is a Unix socket;
    // "host:port" / "[v6]:port" / ":port" is TCP (port 0: the kernel picks one).
    // Tools taking a socket path from the user should pass "unix:" + path.
    // Binds and listens here, so errors surface before start() and port() is known:
    // a Unix path with a live listener -> AddressInUseError; a stale socket file (no
    // listener) is replaced; an existing non-socket file -> SysError(EEXIST).
    HttpServer(const std::string& address, HttpHandler handler, HttpServerOptions options = {});
    HttpServer(const std::string& address, HttpAsyncHandler handler,
               HttpServerOptions options = {});
    // stop(): the socket file is removed.
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Starts the I/O thread.  Once per server.
    void start();
    // Closes the listener and every connection, waits for a running handler to
    // return, joins the thread, removes the Unix socket file.  Idempotent.
    void stop();

    // Registers `fd` with the I/O thread's event loop, once, for waits on it (see
    // FdWatch).  The fd stays the caller's: destroy the watch before closing it.
    std::shared_ptr<class FdWatch> watch(int fd);

    // Calls `fn` on the I/O thread at `when` (unless the server stopped).  Call it
    // on the I/O thread.
    void at(std::chrono::steady_clock::time_point when, std::function<void()> fn);

    bool is_unix() const;
    // The Unix socket path, or the bound TCP address "127.0.0.1:43121" / "[::1]:43121".
    std::string address() const;
    // The bound TCP port; 0 for a Unix socket.
    uint16_t port() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kindling
