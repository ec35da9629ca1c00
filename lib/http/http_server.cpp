#include "http/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>

#include "base/log.h"
#include "http/http_session.h"

namespace kindling {

namespace http_server_impl {

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
        std::string peer = "unix", client;
        if (listener.family != AF_UNIX) {
            error_code ep_ec;
            auto ep = sock.remote_endpoint(ep_ec);
            if (!ep_ec) {
                peer = format_sockaddr(ep.data());
                client = peer.substr(0, peer.rfind(':'));
            }
            if (opts.max_connections_per_client && !client.empty()) {
                auto it = per_client.find(client);
                if (it != per_client.end() && it->second >= opts.max_connections_per_client) {
                    log_warn("HTTP %s: %zu connections open from %s, refusing one", listener.address.c_str(),
                             it->second, client.c_str());
                    error_code ignored;
                    sock.close(ignored);
                    return accept();
                }
            }
            int one = 1;
            ::setsockopt(sock.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        // Asio accepts with plain accept(2): no SOCK_CLOEXEC.  Don't leak API
        // connections into children the VMM spawns.
        ::fcntl(sock.native_handle(), F_SETFD, FD_CLOEXEC);
        auto s = std::make_shared<Session>(*this, std::move(sock), std::move(peer), std::move(client));
        sessions.emplace(s.get(), s);
        s->start();
        accept();
    });
}

}  // namespace http_server_impl

using http_server_impl::ServerCore;
using http_server_impl::error_code;
using http_server_impl::make_listener;
using http_server_impl::Protocol;
namespace net = boost::asio;
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
        if (s.opts.on_thread_start) {
            try {
                s.opts.on_thread_start();
            } catch (const std::exception& e) {
                log_error("HTTP server %s: %s", s.listener.address.c_str(), e.what());
                return;
            }
        }
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
            s.per_client.clear();
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
