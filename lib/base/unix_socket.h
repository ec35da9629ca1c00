// AF_UNIX stream sockets (unix(7)): the one place that builds an address, connects,
// and binds a listener at a path.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <string>

#include "base/error.h"
#include "base/fd.h"

namespace kindling {

// The address of `path`.  SysError(ENAMETOOLONG) naming the path when it is empty
// or does not fit sun_path (107 bytes and a NUL).
sockaddr_un unix_address(const std::string& path);

// Connects a new SOCK_STREAM | SOCK_CLOEXEC | `flags` socket (flags: SOCK_NONBLOCK)
// to `path`.  For callers to whom a refused connect is an expected outcome: returns
// an invalid fd and sets *err to the errno value (ENAMETOOLONG for a path that does
// not fit).  With SOCK_NONBLOCK, EAGAIN means a live listener whose backlog is full.
UniqueFd try_connect_unix(const std::string& path, int* err, int flags = 0);

// The same, but a failure is SysError "connect PATH: <strerror>".
UniqueFd connect_unix(const std::string& path, int flags = 0);

// The Unix socket path is taken by a live listener.  what() is "PATH: LABEL path in
// use"; err() is EADDRINUSE.
class AddressInUseError : public SysError {
public:
    AddressInUseError(const std::string& path, const std::string& label);
    const char* what() const noexcept override { return message_.c_str(); }

private:
    std::string message_;
};

// A listening socket bound at a path, with the identity of the socket file it made,
// so that the path is removed only while it is still this listener's.
struct UnixListener {
    UniqueFd fd;
    std::string path;
    dev_t dev = 0;
    ino_t ino = 0;

    // unlink(path) if the file there is still the one bind() created (another
    // process may have replaced it since).  Never throws.
    void remove_path() const;
};

// Binds SOCK_STREAM | SOCK_CLOEXEC | `flags` at `path` and listens.  A socket file
// nobody listens on (left by a crashed process) is replaced; a live listener is
// AddressInUseError naming `label` ("API socket", "vsock"); anything that is not a
// socket is refused and never deleted.  The socket file is mode 0600 (its owner and
// root may connect) before it listens.  Other failures: SysError naming the path.
UnixListener listen_unix(const std::string& path, const std::string& label, int flags = 0,
                         int backlog = SOMAXCONN);

}  // namespace kindling
