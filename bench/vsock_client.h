// Host side of the nano invoke protocol over Firecracker's hybrid vsock, for the
// benchmarks: connect to the VMM's Unix socket, CONNECT <port>, then INVOKE.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

namespace bench {

class VsockClient {
public:
    ~VsockClient() {
        if (fd_ >= 0) ::close(fd_);
    }
    // Connects and performs the CONNECT handshake; false if the socket is not
    // there yet or the guest refused (the caller may retry).
    bool connect(const std::string& uds, int port) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, uds.c_str(), sizeof a.sun_path - 1);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return false;
        connected_at = std::chrono::steady_clock::now();
        std::string req = "CONNECT " + std::to_string(port) + "\n";
        if (!write_all(req.data(), req.size())) return false;
        std::string line;
        return read_line(line) && line.rfind("OK ", 0) == 0;
    }
    // One invoke; returns the response body, throws on a protocol error.
    std::string invoke(const std::string& payload, bool* is_error = nullptr) {
        std::string req = "INVOKE " + std::to_string(payload.size()) + "\n" + payload;
        if (!write_all(req.data(), req.size())) throw std::runtime_error("invoke: write failed");
        return answer(is_error);
    }
    // Reads one answer (OK n / ERR n + n bytes); throws on a protocol error.
    std::string answer(bool* is_error = nullptr) {
        std::string line;
        if (!read_line(line)) throw std::runtime_error("invoke: connection closed");
        bool err = line.rfind("ERR ", 0) == 0;
        if (!err && line.rfind("OK ", 0) != 0) throw std::runtime_error("invoke: bad answer: " + line);
        size_t n = std::stoul(line.substr(line.find(' ') + 1));
        std::string body = take(n);
        if (is_error) *is_error = err;
        return body;
    }
    void send_raw(const std::string& s) { write_all(s.data(), s.size()); }
    // When the Unix socket connect() last succeeded (the VMM was listening).
    std::chrono::steady_clock::time_point connected_at;

private:
    bool write_all(const char* p, size_t n) {
        while (n > 0) {
            ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return false;
            p += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    }
    bool fill() {
        char b[65536];
        for (;;) {
            ssize_t r = ::read(fd_, b, sizeof b);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return false;
            buf_.append(b, static_cast<size_t>(r));
            return true;
        }
    }
    bool read_line(std::string& line) {
        size_t nl;
        while ((nl = buf_.find('\n')) == std::string::npos)
            if (!fill()) return false;
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
    }
    std::string take(size_t n) {
        while (buf_.size() < n)
            if (!fill()) throw std::runtime_error("invoke: short body");
        std::string out = buf_.substr(0, n);
        buf_.erase(0, n);
        return out;
    }

    int fd_ = -1;
    std::string buf_;
};

}  // namespace bench
