// One connection of an HttpServer (internal to lib/http): reads a request with
// Beast, hands it to the handler, writes the response the handler gives back (from
// any thread, through a ResponseGate), keeps the connection alive or closes it.  Also
// ServerCore, the state the server's I/O thread works on, which sessions refer to.
// Only http_server.cpp and http_session.cpp include this (it pulls in Beast).
#pragma once

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "http/http_listener.h"
#include "http/http_server.h"

namespace kindling {

// What a responder needs to reach the I/O thread; `ioc` is cleared once the thread
// is gone so a late respond() posts nowhere.
struct ResponseGate {
    std::mutex mu;
    boost::asio::io_context* ioc = nullptr;
};

// Internal types get their own namespace so their names can't collide with other
// modules' (Session is a common name).
namespace http_server_impl {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using Protocol = net::generic::stream_protocol;
using Socket = Protocol::socket;
using Acceptor = net::basic_socket_acceptor<Protocol>;
using boost::system::error_code;

class Session;

// Everything the I/O thread works on; HttpServer::Impl is just this.
struct ServerCore {
    // Declared first: destroyed last, after everything that refers to it.  Handlers
    // still queued in it own their Sessions and die with it.
    net::io_context ioc{1};
    Acceptor acceptor{ioc};
    net::steady_timer accept_retry{ioc};
    Listener listener;
    HttpAsyncHandler handler;
    HttpServerOptions opts;
    std::shared_ptr<ResponseGate> gate = std::make_shared<ResponseGate>();
    // Live connections, touched only on the I/O thread.
    std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
    // Open TCP connections per client address (HttpServerOptions::max_connections_per_client).
    std::unordered_map<std::string, size_t> per_client;
    std::thread thread;
    bool started = false;
    bool stopped = false;

    // The options' error_formatter's response, or JSON {"error": message}.
    HttpResponse error_response(int status, const std::string& message) const;
    // Accepts connections until the acceptor closes, one Session each.
    void accept();
};

// JSON {"error": message}: the server's own error body when no formatter is set.
HttpResponse default_error(int status, const std::string& message);

// Everything runs on the I/O thread except Slot::respond.  A session keeps itself
// alive through the callbacks it has queued, and while a handler holds its
// responder.
class Session : public std::enable_shared_from_this<Session> {
public:
    // `client`: the peer's address without its port, counted in srv.per_client
    // while the session lives (empty: not counted).
    Session(ServerCore& srv, Socket sock, std::string peer, std::string client);

    void start() { read_request(); }

    // Called on the I/O thread by stop() and by every terminal path.
    void close();

    // From the gate: the handler's response, on the I/O thread.
    void deliver(HttpResponse r);

private:
    // Carries one response from whatever thread made it to the I/O thread.  If the
    // handler drops its responder without calling it, the client still gets a 500.
    struct Slot {
        std::shared_ptr<ResponseGate> gate;
        std::weak_ptr<Session> session;
        std::atomic<bool> done{false};

        Slot(std::shared_ptr<ResponseGate> g, std::weak_ptr<Session> s)
            : gate(std::move(g)), session(std::move(s)) {}
        ~Slot();
        void respond(HttpResponse r);
    };

    void arm_timer(std::chrono::milliseconds d);
    void disarm_timer();
    void read_request();
    void on_header(error_code ec);
    void read_body();
    void on_read_error(error_code ec);
    // The request line's keep-alive, HEAD-ness and version, for the response.
    void note_request_line();
    void on_request();
    void send(HttpResponse r, bool close_after);
    void shutdown_close();
    // After an error response the client may still be sending (an oversize body):
    // stop reading requests, send FIN, and discard input for a moment so the kernel
    // doesn't answer it with a RST that destroys our response.
    void linger_close();
    void drain();

    ServerCore& srv_;
    Socket sock_;
    net::steady_timer timer_;
    uint64_t timer_gen_ = 0;
    std::string peer_;
    std::string client_;
    // The request being read: its header, as on_header converted it (the body is
    // added by on_request).
    HttpRequest req_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
    http::response<http::string_body> res_;
    std::optional<http::response_serializer<http::string_body>> sr_;
    std::array<char, 4096> scratch_;
    size_t drained_ = 0;
    unsigned version_ = 11;
    bool keep_alive_ = true;
    bool head_ = false;
    bool closed_ = false;
    bool waiting_ = false;
    // Keeps the session alive while a handler holds only a weak reference to it.
    std::shared_ptr<Session> waiting_self_;
};

}  // namespace http_server_impl
}  // namespace kindling
