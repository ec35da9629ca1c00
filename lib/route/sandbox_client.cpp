#include "route/sandbox_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "base/unix_socket.h"
#include "http/http_server.h"  // FdWatch, destroyed with a pooled connection

namespace kindling::route {

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(std::min<long long>(ms, 1 << 30));
}

// Result of one protocol exchange: kBroken with `nothing_received` means nothing came
// back at all (a dead pooled connection -- safe to retry).
struct Exchange {
    GuestAnswer answer;
    bool nothing_received = false;
};

bool send_all(int fd, const std::string& data, Clock::time_point deadline) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, ms_left(deadline)) <= 0) return false;
            continue;
        }
        return false;
    }
    return true;
}

// Connects and performs the CONNECT 9000 handshake.
UniqueFd open_conn(const std::string& vsock, Clock::time_point deadline, std::string& why) {
    int err = 0;
    UniqueFd fd = try_connect_unix(vsock, &err);
    if (!fd) {
        why = vsock + (err == ENAMETOOLONG ? std::string(": socket path too long")
                                           : ": connect: " + std::string(std::strerror(err)));
        return {};
    }
    if (!send_all(fd.get(), "CONNECT 9000\n", deadline)) {
        why = vsock + ": CONNECT: " + std::strerror(errno);
        return {};
    }
    // Read the handshake answer byte by byte so no INVOKE answer bytes are consumed.
    std::string line;
    for (;;) {
        pollfd p{fd.get(), POLLIN, 0};
        if (::poll(&p, 1, ms_left(deadline)) <= 0) {
            why = vsock + ": no answer to CONNECT 9000";
            return {};
        }
        char c;
        ssize_t n = ::recv(fd.get(), &c, 1, 0);
        if (n <= 0) {
            why = vsock + ": closed during CONNECT 9000";
            return {};
        }
        if (c == '\n') break;
        line += c;
        if (line.size() > 64) break;
    }
    if (line.rfind("OK ", 0) != 0) {
        why = vsock + ": CONNECT 9000 answered '" + line + "'";
        return {};
    }
    return fd;
}

Exchange exchange(int fd, const std::string& payload, Clock::time_point deadline) {
    Exchange ex;
    if (!send_invoke(fd, payload, deadline)) {
        ex.answer = {GuestAnswer::kBroken, std::string("send: ") + std::strerror(errno)};
        ex.nothing_received = true;
        return ex;
    }
    AnswerParser parser;
    char tmp[65536];
    while (parser.state() == AnswerParser::kMore) {
        pollfd p{fd, POLLIN, 0};
        int r = ::poll(&p, 1, ms_left(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) {
            ex.answer = {GuestAnswer::kTimeout, "timeout"};
            return ex;
        }
        ssize_t n = r < 0 ? -1 : ::recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
            ex.answer = {GuestAnswer::kBroken,
                         parser.received_any() ? "connection closed mid-answer" : "connection closed by the sandbox"};
            ex.nothing_received = !parser.received_any();
            return ex;
        }
        parser.feed(tmp, static_cast<size_t>(n));
    }
    ex.answer = parser.answer();
    return ex;
}

}  // namespace

AnswerParser::State AnswerParser::feed(const char* data, size_t n) {
    if (state_ != kMore) return state_;
    if (n) received_ = true;
    buf_.append(data, n);
    if (!have_line_) {
        size_t nl = buf_.find('\n');
        if (nl == std::string::npos) {
            if (buf_.size() > 64) why_ = "bad answer line from the sandbox", state_ = kBad;
            return state_;
        }
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        size_t sp = line.find(' ');
        std::string kind = line.substr(0, sp);
        size_t len = 0;
        try {
            len = sp == std::string::npos ? 0 : std::stoul(line.substr(sp + 1));
        } catch (const std::exception&) {
            kind = "?";
        }
        if (kind != "OK" && kind != "ERR") {
            why_ = "bad answer line from the sandbox";
            return state_ = kBad;
        }
        if (len > kMaxAnswerBytes) {
            kind_ = GuestAnswer::kTooLarge;
            buf_.clear();
            buf_.shrink_to_fit();
            return state_ = kDone;
        }
        kind_ = kind == "OK" ? GuestAnswer::kOk : GuestAnswer::kErr;
        need_ = len;
        have_line_ = true;
    }
    if (buf_.size() > need_) {
        why_ = "the sandbox sent more than its answer";
        return state_ = kBad;
    }
    if (buf_.size() == need_) state_ = kDone;
    return state_;
}

GuestAnswer AnswerParser::answer() {
    if (state_ == kDone) return {kind_, std::move(buf_)};
    return {GuestAnswer::kBroken, state_ == kBad ? why_ : "incomplete answer"};
}

bool hung_up(int fd) {
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) != 0;
}

bool send_invoke(int fd, const std::string& payload, Clock::time_point deadline) {
    return send_all(fd, "INVOKE " + std::to_string(payload.size()) + "\n" + payload, deadline);
}

VsockConn VsockPool::take(const std::string& sandbox, const std::string& vsock) {
    std::lock_guard lk(mu_);
    auto it = idle_.find(sandbox + "\n" + vsock);
    if (it == idle_.end() || it->second.empty()) return {};
    VsockConn c = std::move(it->second.back());
    it->second.pop_back();
    return c;
}

void VsockPool::put_back(const std::string& sandbox, const std::string& vsock, VsockConn conn) {
    std::lock_guard lk(mu_);
    auto& v = idle_[sandbox + "\n" + vsock];
    if (v.size() < per_sandbox_) v.push_back(std::move(conn));
}

GuestAnswer VsockPool::invoke(const std::string& sandbox, const std::string& vsock, const std::string& payload,
                              Clock::time_point deadline, bool* reused) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        VsockConn c = attempt == 0 ? take(sandbox, vsock) : VsockConn{};
        bool pooled = static_cast<bool>(c);
        if (!c) {
            std::string why;
            c.fd = open_conn(vsock, deadline, why);
            if (!c) return {Clock::now() >= deadline ? GuestAnswer::kTimeout : GuestAnswer::kBroken, why};
        }
        if (reused) *reused = pooled;
        Exchange ex = exchange(c.fd.get(), payload, deadline);
        if (ex.answer.kind == GuestAnswer::kOk || ex.answer.kind == GuestAnswer::kErr) {
            put_back(sandbox, vsock, std::move(c));
            return ex.answer;
        }
        if (!(pooled && ex.nothing_received)) return ex.answer;
        // A pooled connection that died while idle: try once on a new one.
    }
    return {GuestAnswer::kBroken, "unreachable"};
}

bool VsockPool::alive(const std::string& sandbox, const std::string& vsock) {
    std::lock_guard lk(mu_);
    auto it = idle_.find(sandbox + "\n" + vsock);
    if (it == idle_.end()) return true;
    for (const VsockConn& c : it->second)
        if (hung_up(c.fd.get())) return false;
    return true;
}

void VsockPool::forget(const std::string& sandbox, const std::string& vsock) {
    std::lock_guard lk(mu_);
    idle_.erase(sandbox + "\n" + vsock);
}

void VsockPool::clear() {
    std::lock_guard lk(mu_);
    idle_.clear();
}

}  // namespace kindling::route
