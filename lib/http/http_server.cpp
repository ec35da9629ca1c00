#include "http/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/fd.h"
#include "base/log.h"

namespace kindling {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using Protocol = net::generic::stream_protocol;
using Socket = Protocol::socket;
using Acceptor = net::basic_socket_acceptor<Protocol>;
using boost::system::error_code;

namespace {

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        unsigned char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
        if (x != y) return false;
    }
    return true;
}

// How long an error response waits for the client to stop sending before the
// socket is closed: closing with unread input makes TCP send a RST, which can
// destroy the response before the client reads it.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr size_t kLingerMaxBytes = 1 << 20;

}  // namespace

// --- plain types ---------------------------------------------------------------

std::optional<std::string> HttpHeaders::get(std::string_view name) const {
    for (const auto& [k, v] : fields_)
        if (iequals(k, name)) return v;
    return std::nullopt;
}

void HttpHeaders::set(std::string_view name, std::string_view value) {
    remove(name);
    add(name, value);
}

void HttpHeaders::add(std::string_view name, std::string_view value) {
    fields_.emplace_back(std::string(name), std::string(value));
}

void HttpHeaders::remove(std::string_view name) {
    std::erase_if(fields_, [&](const Field& f) { return iequals(f.first, name); });
}

std::string_view HttpRequest::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

std::string_view HttpRequest::query() const {
    std::string_view t = target;
    size_t q = t.find('?');
    return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

HttpResponse HttpResponse::json(int status, std::string body) {
    HttpResponse r{status, {}, std::move(body)};
    r.headers.set("Content-Type", "application/json");
    return r;
}

std::string json_quote(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    return out + "\"";
}

const char* http_reason(int status) {
    if (status < 100 || status > 999) return "";
    auto r = http::obsolete_reason(static_cast<http::status>(status));
    // Beast answers "<unknown-status>" for codes it doesn't know.
    return r.empty() || r.front() == '<' ? "" : r.data();
}

// --- listening sockets (no Beast here: plain syscalls, errors as SysError) ----

namespace {

struct Listener {
    UniqueFd fd;
    int family = AF_UNIX;
    UnixListener unix;  // a Unix socket file's path and identity (its fd is `fd`); empty for TCP
    uint16_t port = 0;
    std::string address;
};

std::string format_sockaddr(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    return "unix";
}

Listener unix_listener(const std::string& path, const std::string& label) {
    Listener l;
    l.family = AF_UNIX;
    l.unix = listen_unix(path, label);
    l.fd = std::move(l.unix.fd);
    l.address = path;
    return l;
}

Listener listen_tcp(const std::string& spec) {
    // "host:port", "[v6]:port", ":port".
    std::string host, port;
    if (!spec.empty() && spec.front() == '[') {
        size_t close = spec.find(']');
        if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':')
            throw ConfigError("invalid listen address '" + spec + "' (want [v6addr]:port)");
        host = spec.substr(1, close - 1);
        port = spec.substr(close + 2);
    } else {
        size_t colon = spec.rfind(':');  // make_listener saw one
        host = spec.substr(0, colon);
        port = spec.substr(colon + 1);
    }
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(port) > 65535)
        throw ConfigError("invalid port in listen address '" + spec + "'");

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0)
        throw ConfigError("listen address '" + spec + "': " + ::gai_strerror(rc));
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);

    Listener l;
    int last_err = EADDRNOTAVAIL;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
        if (!fd) {
            last_err = errno;
            continue;
        }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
            last_err = errno;
            continue;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
            throw_errno("getsockname");
        l.fd = std::move(fd);
        l.family = ai->ai_family;
        l.address = format_sockaddr(reinterpret_cast<sockaddr*>(&ss));
        l.port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                          : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
        return l;
    }
    throw SysError("bind " + spec, last_err);
}

Listener make_listener(const std::string& address, const std::string& label) {
    if (address.starts_with("unix:")) return unix_listener(address.substr(5), label);
    // A TCP address always has a port; anything else is a path ("api.sock" too).
    if (address.find('/') != std::string::npos || address.find(':') == std::string::npos)
        return unix_listener(address, label);
    return listen_tcp(address);
}

HttpResponse default_error(int status, const std::string& message) {
    return HttpResponse::json(status, "{\"error\": " + json_quote(message) + "}");
}

}  // namespace

// --- the server ----------------------------------------------------------------

// What a responder needs to reach the I/O thread; `ioc` is cleared once the thread
// is gone so a late respond() posts nowhere.
struct ResponseGate {
    std::mutex mu;
    net::io_context* ioc = nullptr;
};

// Internal types get their own namespace so their names can't collide with other
// modules' (Session is a common name).
namespace http_server_impl {

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
    std::thread thread;
    bool started = false;
    bool stopped = false;

    HttpResponse error_response(int status, const std::string& message) const;
    void accept();
};


HttpResponse ServerCore::error_response(int status, const std::string& message) const {
    if (opts.error_formatter) {
        try {
            HttpResponse r = opts.error_formatter(status, message);
            r.status = status;
            return r;
        } catch (const std::exception& e) {
            log_warn("HTTP error formatter failed: %s", e.what());
        }
    }
    return default_error(status, message);
}

class Session : public std::enable_shared_from_this<Session> {
public:
    Session(ServerCore& srv, Socket sock, std::string peer)
        : srv_(srv), sock_(std::move(sock)), timer_(srv.ioc), peer_(std::move(peer)) {}

    void start() { read_request(); }

    // Called on the I/O thread by stop() and by every terminal path.
    void close() {
        if (closed_) return;
        auto self = shared_from_this();
        closed_ = true;
        ++timer_gen_;
        timer_.cancel();
        error_code ec;
        sock_.close(ec);
        srv_.sessions.erase(this);
        waiting_self_.reset();
    }

    // From the gate: the handler's response, on the I/O thread.
    void deliver(HttpResponse r) {
        if (closed_ || !waiting_) return;
        auto self = shared_from_this();
        waiting_ = false;
        waiting_self_.reset();
        send(std::move(r), false);
    }

private:
    void arm_timer(std::chrono::milliseconds d) {
        uint64_t gen = ++timer_gen_;
        timer_.expires_after(d);
        timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
            if (ec || gen != self->timer_gen_ || self->closed_) return;
            log_debug("HTTP %s: timed out, closing", self->peer_.c_str());
            self->close();
        });
    }

    void disarm_timer() {
        ++timer_gen_;
        timer_.cancel();
    }

    void read_request() {
        parser_.emplace();
        parser_->header_limit(static_cast<uint32_t>(srv_.opts.max_header_bytes));
        parser_->body_limit(srv_.opts.max_body_bytes);
        arm_timer(srv_.opts.request_timeout);
        http::async_read_header(sock_, buf_, *parser_,
                                [self = shared_from_this()](error_code ec, size_t) {
                                    self->on_header(ec);
                                });
    }

    void on_header(error_code ec) {
        if (closed_) return;
        if (ec) return on_read_error(ec);
        auto& req = parser_->get();
        // RFC 9110 §10.1.1: tell the client to go ahead before reading the body (curl
        // sends Expect for larger bodies).  Over-limit bodies were refused above.
        auto expect = req.find(http::field::expect);
        if (expect != req.end() && iequals(sv(expect->value()), "100-continue") && !parser_->is_done()) {
            static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
            net::async_write(sock_, net::buffer(kContinue, sizeof kContinue - 1),
                             [self = shared_from_this()](error_code ec, size_t) {
                                 if (self->closed_) return;
                                 if (ec) return self->close();
                                 self->read_body();
                             });
            return;
        }
        if (parser_->is_done()) return on_request();
        read_body();
    }

    void read_body() {
        http::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
            if (self->closed_) return;
            if (ec) return self->on_read_error(ec);
            self->on_request();
        });
    }

    void on_read_error(error_code ec) {
        if (ec == http::error::header_limit)
            return send(srv_.error_response(431, "request header exceeds " +
                                                     std::to_string(srv_.opts.max_header_bytes) +
                                                     " bytes"),
                        true);
        if (ec == http::error::body_limit)
            return send(srv_.error_response(413, "request body exceeds " +
                                                     std::to_string(srv_.opts.max_body_bytes) +
                                                     " bytes"),
                        true);
        // A clean close between requests, a reset, or our own timeout/stop.
        if (ec == http::error::end_of_stream || ec == net::error::eof ||
            ec == net::error::operation_aborted || ec == net::error::connection_reset ||
            !parser_->got_some())
            return close();
        if (ec == http::error::partial_message) return close();
        send(srv_.error_response(400, "malformed HTTP request: " + ec.message()), true);
    }

    void on_request() {
        disarm_timer();
        auto msg = parser_->release();
        parser_.reset();
        keep_alive_ = msg.keep_alive();
        head_ = msg.method() == http::verb::head;
        version_ = msg.version();

        HttpRequest req;
        req.method = std::string(msg.method_string());
        req.target = std::string(msg.target());
        for (const auto& f : msg) req.headers.add(sv(f.name_string()), sv(f.value()));
        req.body = std::move(msg.body());
        req.peer = peer_;

        waiting_ = true;
        waiting_self_ = shared_from_this();
        auto slot = std::make_shared<Slot>(srv_.gate, weak_from_this());
        log_debug("HTTP %s: %s %s", peer_.c_str(), req.method.c_str(), req.target.c_str());
        try {
            srv_.handler(req, [slot](HttpResponse r) { slot->respond(std::move(r)); });
        } catch (const std::exception& e) {
            log_warn("HTTP %s %s: handler failed: %s", req.method.c_str(), req.target.c_str(),
                     e.what());
            slot->respond(srv_.error_response(500, std::string("internal error: ") + e.what()));
        } catch (...) {
            slot->respond(srv_.error_response(500, "internal error"));
        }
    }

    void send(HttpResponse r, bool close_after) {
        if (r.status < 100 || r.status > 999) {
            log_warn("HTTP handler returned status %d; answering 500", r.status);
            r = srv_.error_response(500, "internal error: bad status " + std::to_string(r.status));
        }
        if (auto c = r.headers.get("Connection"); c && iequals(*c, "close")) close_after = true;
        bool keep = keep_alive_ && !close_after;

        res_ = {};
        res_.version(version_ ? version_ : 11);
        res_.result(static_cast<unsigned>(r.status));
        if (const char* reason = http_reason(r.status); !*reason) res_.reason("Unknown");
        for (const auto& [k, v] : r.headers) {
            // Framing is ours to decide.
            if (iequals(k, "Content-Length") || iequals(k, "Transfer-Encoding") ||
                iequals(k, "Connection"))
                continue;
            res_.insert(k, v);
        }
        if (!srv_.opts.server_name.empty() && res_.find(http::field::server) == res_.end())
            res_.set(http::field::server, srv_.opts.server_name);
        bool no_body = r.status < 200 || r.status == 204 || r.status == 304;
        size_t body_size = no_body ? 0 : r.body.size();
        if (!no_body && !head_) res_.body() = std::move(r.body);
        res_.keep_alive(keep);
        if (!no_body) res_.content_length(body_size);
        keep_alive_ = keep;

        arm_timer(srv_.opts.write_timeout);
        auto done = [self = shared_from_this(), close_after](error_code ec, size_t) {
            if (self->closed_) return;
            self->disarm_timer();
            if (ec) return self->close();
            if (close_after) return self->linger_close();
            if (!self->keep_alive_) return self->shutdown_close();
            self->read_request();
        };
        if (head_) {
            // A HEAD response announces the body's length but carries no body.
            sr_.emplace(res_);
            http::async_write_header(sock_, *sr_, std::move(done));
        } else {
            http::async_write(sock_, res_, std::move(done));
        }
    }

    void shutdown_close() {
        error_code ec;
        sock_.shutdown(net::socket_base::shutdown_send, ec);
        close();
    }

    // After an error response the client may still be sending (an oversize body):
    // stop reading requests, send FIN, and discard input for a moment so the kernel
    // doesn't answer it with a RST that destroys our response.
    void linger_close() {
        error_code ec;
        sock_.shutdown(net::socket_base::shutdown_send, ec);
        if (ec) return close();
        arm_timer(kLingerTime);
        drain();
    }

    void drain() {
        sock_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](error_code ec,
                                                                                 size_t n) {
            if (self->closed_) return;
            self->drained_ += n;
            if (ec || self->drained_ > kLingerMaxBytes) return self->close();
            self->drain();
        });
    }

    // Carries one response from whatever thread made it to the I/O thread.  If the
    // handler drops its responder without calling it, the client still gets a 500.
    struct Slot {
        std::shared_ptr<ResponseGate> gate;
        std::weak_ptr<Session> session;
        std::atomic<bool> done{false};

        Slot(std::shared_ptr<ResponseGate> g, std::weak_ptr<Session> s)
            : gate(std::move(g)), session(std::move(s)) {}
        ~Slot() {
            if (!done) respond(default_error(500, "internal error: handler gave no response"));
        }
        void respond(HttpResponse r) {
            if (done.exchange(true)) return;
            std::lock_guard lock(gate->mu);
            if (!gate->ioc) return;
            net::post(*gate->ioc, [s = session, r = std::move(r)]() mutable {
                if (auto p = s.lock()) p->deliver(std::move(r));
            });
        }
    };

    ServerCore& srv_;
    Socket sock_;
    net::steady_timer timer_;
    uint64_t timer_gen_ = 0;
    std::string peer_;
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

void ServerCore::accept() {
    acceptor.async_accept([this](error_code ec, Socket sock) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
        if (ec) {
            // EMFILE and friends: retry later instead of spinning.
            log_warn("HTTP %s: accept: %s", listener.address.c_str(), ec.message().c_str());
            accept_retry.expires_after(std::chrono::milliseconds(100));
            accept_retry.async_wait([this](error_code ec) {
                if (!ec) accept();
            });
            return;
        }
        if (sessions.size() >= opts.max_connections) {
            log_warn("HTTP %s: %zu connections open, refusing one", listener.address.c_str(),
                     sessions.size());
            error_code ignored;
            sock.close(ignored);
            return accept();
        }
        // Asio accepts with plain accept(2): no SOCK_CLOEXEC.  Don't leak API
        // connections into children the VMM spawns.
        ::fcntl(sock.native_handle(), F_SETFD, FD_CLOEXEC);
        std::string peer = "unix";
        if (listener.family != AF_UNIX) {
            int one = 1;
            ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            error_code ep_ec;
            auto ep = sock.remote_endpoint(ep_ec);
            if (!ep_ec) peer = format_sockaddr(ep.data());
        }
        auto s = std::make_shared<Session>(*this, std::move(sock), std::move(peer));
        sessions.emplace(s.get(), s);
        s->start();
        accept();
    });
}

}  // namespace http_server_impl

using http_server_impl::ServerCore;
struct HttpServer::Impl : ServerCore {};

namespace {
HttpAsyncHandler wrap_sync(HttpHandler h) {
    return [h = std::move(h)](const HttpRequest& req, HttpResponder respond) {
        // Exceptions propagate to the session, which answers 500.
        respond(h(req));
    };
}
}  // namespace

HttpServer::HttpServer(const std::string& address, HttpHandler handler, HttpServerOptions options)
    : HttpServer(address, wrap_sync(std::move(handler)), std::move(options)) {}

HttpServer::HttpServer(const std::string& address, HttpAsyncHandler handler,
                       HttpServerOptions options)
    : impl_(std::make_unique<Impl>()) {
    impl_->handler = std::move(handler);
    impl_->opts = std::move(options);
    impl_->listener = make_listener(address, impl_->opts.label);
    error_code ec;
    Protocol proto(impl_->listener.family, 0);
    impl_->acceptor.assign(proto, impl_->listener.fd.get(), ec);
    if (ec) {
        impl_->listener.unix.remove_path();
        throw SysError("listen " + impl_->listener.address, ec.value());
    }
    impl_->listener.fd.release();  // the acceptor owns it now
}

HttpServer::~HttpServer() {
    try {
        stop();
    } catch (const std::exception& e) {
        log_warn("HTTP server stop: %s", e.what());
    }
}

void HttpServer::start() {
    Impl& s = *impl_;
    if (s.started || s.stopped) throw UsageError("HttpServer::start called twice");
    s.started = true;
    {
        std::lock_guard lock(s.gate->mu);
        s.gate->ioc = &s.ioc;
    }
    s.accept();
    s.thread = std::thread([&s] {
        for (;;) {
            try {
                s.ioc.run();
                return;
            } catch (const std::exception& e) {
                // Handlers catch their own; this is a bug elsewhere: log and go on.
                log_error("HTTP server %s: %s", s.listener.address.c_str(), e.what());
            }
        }
    });
}

void HttpServer::stop() {
    Impl& s = *impl_;
    if (s.stopped) return;
    s.stopped = true;
    if (s.started) {
        net::post(s.ioc, [&s] {
            error_code ec;
            s.acceptor.close(ec);
            s.accept_retry.cancel();
            std::vector<std::shared_ptr<http_server_impl::Session>> live;
            for (auto& [p, w] : s.sessions)
                if (auto l = w.lock()) live.push_back(std::move(l));
            for (auto& l : live) l->close();
            s.sessions.clear();
            s.ioc.stop();
        });
        if (s.thread.joinable()) s.thread.join();
        std::lock_guard lock(s.gate->mu);
        s.gate->ioc = nullptr;
    } else {
        error_code ec;
        s.acceptor.close(ec);
    }
    s.listener.unix.remove_path();
}

namespace {
struct Watch final : FdWatch, std::enable_shared_from_this<Watch> {
    net::posix::stream_descriptor sd;
    net::steady_timer timer;
    std::function<void(bool)> ready;
    uint64_t wait = 0;  // which wait a completion belongs to
    Watch(net::io_context& ioc, int fd) : sd(ioc, fd), timer(ioc) {}
    // Deregisters while the fd is still open (the owner closes it after this).
    ~Watch() override { sd.release(); }

    void when_readable(std::chrono::steady_clock::time_point deadline, std::function<void(bool)> r) override {
        ready = std::move(r);
        uint64_t w = ++wait;
        timer.expires_at(deadline);
        // Handlers hold the watch weakly: it dies with its owner, never after the fd.
        std::weak_ptr<Watch> weak = shared_from_this();
        sd.async_wait(net::posix::stream_descriptor::wait_read, [weak, w](error_code ec) {
            auto self = weak.lock();
            if (!self || w != self->wait || !self->ready || ec == net::error::operation_aborted) return;
            self->timer.cancel();
            auto r = std::move(self->ready);
            self->ready = nullptr;
            r(!ec);
        });
        timer.async_wait([weak, w](error_code ec) {
            auto self = weak.lock();
            if (ec || !self || w != self->wait || !self->ready) return;
            error_code ignored;
            self->sd.cancel(ignored);
            auto r = std::move(self->ready);
            self->ready = nullptr;
            r(false);
        });
    }
};
}  // namespace

std::shared_ptr<FdWatch> HttpServer::watch(int fd) { return std::make_shared<Watch>(impl_->ioc, fd); }

void HttpServer::at(std::chrono::steady_clock::time_point when, std::function<void()> fn) {
    auto timer = std::make_shared<net::steady_timer>(impl_->ioc, when);
    timer->async_wait([timer, fn = std::move(fn)](error_code ec) {
        if (!ec) fn();
    });
}

bool HttpServer::is_unix() const { return impl_->listener.family == AF_UNIX; }
std::string HttpServer::address() const { return impl_->listener.address; }
uint16_t HttpServer::port() const { return impl_->listener.port; }

}  // namespace kindling
