#include "invoke_listener.h"

#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "base/log.h"

namespace kindling::agent {

namespace {

constexpr size_t kMaxLine = 126;  // as the nano runtime

// Buffered reads from a connection.
class Reader {
public:
    explicit Reader(int fd) : fd_(fd) {}

    // A line without its "\n" (and a trailing "\r"); nullopt at EOF or on an error,
    // `too_long` when no newline came within kMaxLine bytes.
    std::optional<std::string> line(bool& too_long) {
        too_long = false;
        for (;;) {
            size_t nl = buf_.find('\n', pos_);
            if (nl != std::string::npos) {
                std::string l = buf_.substr(pos_, nl - pos_);
                pos_ = nl + 1;
                if (!l.empty() && l.back() == '\r') l.pop_back();
                return l;
            }
            if (buf_.size() - pos_ > kMaxLine) {
                too_long = true;
                return std::nullopt;
            }
            if (!fill()) return std::nullopt;
        }
    }

    bool bytes(size_t n, std::string& out) {
        out.clear();
        while (out.size() < n) {
            if (pos_ == buf_.size() && !fill()) return false;
            size_t take = std::min(n - out.size(), buf_.size() - pos_);
            out.append(buf_, pos_, take);
            pos_ += take;
        }
        return true;
    }

private:
    bool fill() {
        if (pos_ > 0) {
            buf_.erase(0, pos_);
            pos_ = 0;
        }
        char tmp[65536];
        ssize_t n;
        do n = ::read(fd_, tmp, sizeof tmp);
        while (n < 0 && errno == EINTR);
        if (n <= 0) return false;
        buf_.append(tmp, static_cast<size_t>(n));
        return true;
    }

    int fd_;
    std::string buf_;
    size_t pos_ = 0;
};

bool send_all(int fd, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        off += static_cast<size_t>(n);
    }
    return true;
}

bool answer(int fd, bool ok, const std::string& body) {
    return send_all(fd, (ok ? "OK " : "ERR ") + std::to_string(body.size()) + "\n" + body);
}

// Plain decimal only: no sign, no spaces, no leading "+".
std::optional<uint64_t> parse_decimal(std::string_view s) {
    uint64_t v = 0;
    if (s.empty() || s.size() > 19) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

InvokeListener::InvokeListener(ListenerConfig cfg, RuntimeApi& runtime, std::function<void()> before_invoke,
                               std::function<std::string()> stats, std::function<void(int)> exit_vm)
    : cfg_(cfg),
      runtime_(runtime),
      before_invoke_(std::move(before_invoke)),
      stats_(std::move(stats)),
      exit_vm_(std::move(exit_vm)) {}

void InvokeListener::serve() {
    UniqueFd s(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s) throw_errno("vsock socket");
    sockaddr_vm a{};
    a.svm_family = AF_VSOCK;
    a.svm_cid = VMADDR_CID_ANY;
    a.svm_port = cfg_.port;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        throw_errno("vsock bind port " + std::to_string(cfg_.port));
    if (::listen(s.get(), 16) != 0) throw_errno("vsock listen");
    log_verbose("serving the invoke protocol on vsock port %u", cfg_.port);
    for (;;) {
        int c = ::accept4(s.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EINTR && errno != ECONNABORTED) log_warn("vsock accept: %s", std::strerror(errno));
            continue;
        }
        if (live_.load() >= cfg_.max_connections) {
            answer(c, false, "too many connections");
            ::close(c);
            continue;
        }
        live_++;
        std::thread([this, c] {
            serve_connection(c);
            ::close(c);
            live_--;
        }).detach();
    }
}

void InvokeListener::serve_connection(int fd) {
    Reader in(fd);
    std::string payload;
    for (;;) {
        bool too_long = false;
        std::optional<std::string> line = in.line(too_long);
        if (!line) {
            if (too_long) answer(fd, false, "request line longer than " + std::to_string(kMaxLine) + " bytes");
            return;
        }
        if (line->empty()) continue;
        std::string_view l = *line;
        size_t sp = l.find(' ');
        std::string_view verb = l.substr(0, sp);
        std::string_view arg = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
        if (verb == "INVOKE") {
            std::optional<uint64_t> n = parse_decimal(arg);
            if (!n) return void(answer(fd, false, "INVOKE wants a decimal byte count"));
            if (*n > cfg_.max_request)
                return void(answer(fd, false, "request of " + std::to_string(*n) + " bytes is over the limit of " +
                                                  std::to_string(cfg_.max_request)));
            if (!in.bytes(*n, payload)) return;
            before_invoke_();
            InvokeAnswer a = runtime_.invoke(payload);
            if (!answer(fd, a.ok, a.body)) return;
        } else if (verb == "STATS" && arg.empty()) {
            if (!answer(fd, true, stats_())) return;
        } else if (verb == "EXIT") {
            std::optional<uint64_t> status = parse_decimal(arg);
            if (!status || *status > 255) return void(answer(fd, false, "EXIT wants a status from 0 to 255"));
            answer(fd, true, "");
            // The answer is only in the guest's vsock queue: stopping the VM now could
            // lose it.  Wait (bounded) for the host to read it and hang up.
            ::shutdown(fd, SHUT_WR);
            pollfd p{fd, POLLIN, 0};
            char sink[256];
            while (::poll(&p, 1, 2000) > 0 && ::read(fd, sink, sizeof sink) > 0) {
            }
            exit_vm_(static_cast<int>(*status));
        } else {
            return void(answer(fd, false, "unknown request: " + std::string(l.substr(0, 40))));
        }
    }
}

}  // namespace kindling::agent
