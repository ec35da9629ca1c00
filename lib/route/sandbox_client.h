// routerd's client of the sandboxes: the nano invoke protocol on a VM's hybrid-vsock
// Unix socket (`CONNECT 9000`, then `INVOKE <n>\n` + payload, answered `OK <n>\n` or
// `ERR <n>\n` + bytes), with a pool of open connections per sandbox.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/fd.h"

namespace kindling {
class FdWatch;
}

namespace kindling::route {

// The largest answer a sandbox may give: Lambda's response payload limit, as its
// Function.ResponseSizeTooLarge error states it (6 MB, counted as 6291556 bytes).
inline constexpr size_t kMaxAnswerBytes = 6291556;

struct GuestAnswer {
    // kTooLarge: the answer line announced more than kMaxAnswerBytes (none of it read).
    enum Kind { kOk, kErr, kTimeout, kBroken, kTooLarge } kind = kBroken;
    std::string body;  // payload, error text, or what broke
};

// One answer of the nano invoke protocol, fed as bytes arrive: "OK <n>\n" or
// "ERR <n>\n", then n bytes.  An answer line announcing more than kMaxAnswerBytes
// is done at once (kTooLarge): its bytes are never buffered, and the caller closes
// the connection.
class AnswerParser {
public:
    enum State { kMore, kDone, kBad };
    State feed(const char* data, size_t n);
    State state() const { return state_; }
    bool received_any() const { return received_; }
    // Once kDone: kOk or kErr with the body.  Once kBad: kBroken saying why.
    GuestAnswer answer();

private:
    State state_ = kMore;
    bool received_ = false;
    bool have_line_ = false;
    GuestAnswer::Kind kind_ = GuestAnswer::kBroken;
    size_t need_ = 0;
    std::string buf_;
    std::string why_;
};

// An idle connection to a sandbox has nothing to read: readable means it hung up (EOF
// or a reset: its fc-launch died).
bool hung_up(int fd);

// Sends "INVOKE <n>\n" + payload without blocking past `deadline`.
bool send_invoke(int fd, const std::string& payload, std::chrono::steady_clock::time_point deadline);

// An open connection to a sandbox.  `watch`: its registration with routerd's HTTP
// I/O thread (HttpServer::watch), made on first use there and kept with it
// (destroyed before the fd).
struct VsockConn {
    UniqueFd fd;
    std::shared_ptr<FdWatch> watch;
    explicit operator bool() const { return static_cast<bool>(fd); }
};

// Open connections to sandboxes, keyed by sandbox id + vsock path.  Thread-safe.
class VsockPool {
public:
    explicit VsockPool(size_t per_sandbox = 4) : per_sandbox_(per_sandbox) {}
    // INVOKE on a pooled connection (or a new one); the connection goes back to the
    // pool after OK/ERR, is closed otherwise.  A pooled connection found dead before
    // any answer is retried once on a fresh one.
    GuestAnswer invoke(const std::string& sandbox, const std::string& vsock, const std::string& payload,
                       std::chrono::steady_clock::time_point deadline, bool* reused = nullptr);
    // A pooled connection to the sandbox, if one is idle (else an empty fd).  Give it
    // back with put_back() after a complete answer, or just close it.
    VsockConn take(const std::string& sandbox, const std::string& vsock);
    void put_back(const std::string& sandbox, const std::string& vsock, VsockConn conn);
    // False when a pooled connection shows the sandbox hung up (its fc-launch died);
    // true when none does or none is pooled.
    bool alive(const std::string& sandbox, const std::string& vsock);
    // Drops every pooled connection of a sandbox (destroyed).
    void forget(const std::string& sandbox, const std::string& vsock);
    // Drops every pooled connection (at shutdown, while their watches' server exists).
    void clear();

private:
    std::mutex mu_;
    std::map<std::string, std::vector<VsockConn>> idle_;
    size_t per_sandbox_;
};

}  // namespace kindling::route
