#include "http/http_session.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdint>
#include <limits>

#include "base/log.h"

namespace kindling::http_server_impl {

namespace {

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

// How long an error response waits for the client to stop sending before the
// socket is closed: closing with unread input makes TCP send a RST, which can
// destroy the response before the client reads it.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr size_t kLingerMaxBytes = 1 << 20;

}  // namespace

HttpResponse default_error(int status, const std::string& message) {
    return HttpResponse::json(status, "{\"error\": " + json_quote(message) + "}");
}

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

Session::Session(ServerCore& srv, Socket sock, std::string peer, std::string client)
    : srv_(srv), sock_(std::move(sock)), timer_(srv.ioc), peer_(std::move(peer)), client_(std::move(client)) {
    if (!client_.empty()) ++srv_.per_client[client_];
}

void Session::close() {
    if (closed_) return;
    auto self = shared_from_this();
    closed_ = true;
    ++timer_gen_;
    timer_.cancel();
    error_code ec;
    sock_.close(ec);
    srv_.sessions.erase(this);
    if (!client_.empty()) {
        auto it = srv_.per_client.find(client_);
        if (it != srv_.per_client.end() && --it->second == 0) srv_.per_client.erase(it);
    }
    waiting_self_.reset();
}

void Session::deliver(HttpResponse r) {
    if (closed_ || !waiting_) return;
    auto self = shared_from_this();
    waiting_ = false;
    waiting_self_.reset();
    send(std::move(r), false);
}

void Session::arm_timer(std::chrono::milliseconds d) {
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(d);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
        if (ec || gen != self->timer_gen_ || self->closed_) return;
        log_debug("HTTP %s: timed out, closing", self->peer_.c_str());
        self->close();
    });
}

void Session::disarm_timer() {
    ++timer_gen_;
    timer_.cancel();
}

void Session::read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(srv_.opts.max_header_bytes));
    // No limit while the header is parsed: a declared length past the limit is
    // refused in on_header, after the head check (which may refuse it first, in
    // its own words); the limit is set there for what is then read.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    arm_timer(srv_.opts.request_timeout);
    http::async_read_header(sock_, buf_, *parser_,
                            [self = shared_from_this()](error_code ec, size_t) {
                                self->on_header(ec);
                            });
}

void Session::note_request_line() {
    const auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    head_ = msg.method() == http::verb::head;
    version_ = msg.version();
}

void Session::on_header(error_code ec) {
    if (closed_) return;
    if (ec) return on_read_error(ec);
    auto& req = parser_->get();
    req_ = HttpRequest{};
    req_.method = std::string(req.method_string());
    req_.target = std::string(req.target());
    for (const auto& f : req) req_.headers.add(sv(f.name_string()), sv(f.value()));
    req_.peer = peer_;
    if (srv_.opts.head_check) {
        std::optional<uint64_t> length;
        if (auto cl = parser_->content_length()) length = *cl;
        std::optional<HttpResponse> refusal;
        try {
            refusal = srv_.opts.head_check(req_, length);
        } catch (const std::exception& e) {
            refusal = srv_.error_response(500, std::string("internal error: ") + e.what());
        }
        if (refusal) {
            disarm_timer();
            note_request_line();
            return send(std::move(*refusal), true);
        }
    }
    if (auto cl = parser_->content_length(); cl && *cl > srv_.opts.max_body_bytes) {
        note_request_line();
        return on_read_error(http::error::body_limit);
    }
    parser_->body_limit(srv_.opts.max_body_bytes);
    // RFC 9110 §10.1.1: tell the client to go ahead before reading the body (curl
    // sends Expect for larger bodies).  Over-limit bodies were refused above.
    auto expect = req.find(http::field::expect);
    if (expect != req.end() && iequals_ascii(sv(expect->value()), "100-continue") && !parser_->is_done()) {
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

void Session::read_body() {
    http::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
        if (self->closed_) return;
        if (ec) return self->on_read_error(ec);
        self->on_request();
    });
}

void Session::on_read_error(error_code ec) {
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

void Session::on_request() {
    disarm_timer();
    note_request_line();
    auto msg = parser_->release();
    parser_.reset();
    HttpRequest req = std::move(req_);
    req.body = std::move(msg.body());

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

void Session::send(HttpResponse r, bool close_after) {
    if (r.status < 100 || r.status > 999) {
        log_warn("HTTP handler returned status %d; answering 500", r.status);
        r = srv_.error_response(500, "internal error: bad status " + std::to_string(r.status));
    }
    if (auto c = r.headers.get("Connection"); c && iequals_ascii(*c, "close")) close_after = true;
    bool keep = keep_alive_ && !close_after;

    res_ = {};
    res_.version(version_ ? version_ : 11);
    res_.result(static_cast<unsigned>(r.status));
    if (const char* reason = http_reason(r.status); !*reason) res_.reason("Unknown");
    for (const auto& [k, v] : r.headers) {
        // Framing is ours to decide.
        if (iequals_ascii(k, "Content-Length") || iequals_ascii(k, "Transfer-Encoding") ||
            iequals_ascii(k, "Connection"))
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

void Session::shutdown_close() {
    error_code ec;
    sock_.shutdown(net::socket_base::shutdown_send, ec);
    close();
}

void Session::linger_close() {
    error_code ec;
    sock_.shutdown(net::socket_base::shutdown_send, ec);
    if (ec) return close();
    arm_timer(kLingerTime);
    drain();
}

void Session::drain() {
    sock_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](error_code ec,
                                                                             size_t n) {
        if (self->closed_) return;
        self->drained_ += n;
        if (ec || self->drained_ > kLingerMaxBytes) return self->close();
        self->drain();
    });
}

Session::Slot::~Slot() {
    if (!done) respond(default_error(500, "internal error: handler gave no response"));
}

void Session::Slot::respond(HttpResponse r) {
    if (done.exchange(true)) return;
    std::lock_guard lock(gate->mu);
    if (!gate->ioc) return;
    net::post(*gate->ioc, [s = session, r = std::move(r)]() mutable {
        if (auto p = s.lock()) p->deliver(std::move(r));
    });
}

}  // namespace kindling::http_server_impl
