// The listening socket of an HttpServer (internal to lib/http): a Unix socket path
// (lib/base/unix_socket) or a TCP address, bound with plain syscalls so that errors
// surface as SysError/ConfigError before the server starts.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "base/fd.h"
#include "base/unix_socket.h"

namespace kindling::http_server_impl {

struct Listener {
    UniqueFd fd;
    int family = AF_UNIX;
    UnixListener unix;  // a Unix socket file's path and identity (its fd is `fd`); empty for TCP
    uint16_t port = 0;
    std::string address;  // the path, or the bound "127.0.0.1:43121" / "[::1]:43121"
};

// Binds and listens at `address` as HttpServer's constructor documents ("unix:PATH",
// a path, or "host:port" / "[v6]:port" / ":port").  `label` names a Unix socket in
// AddressInUseError.
Listener make_listener(const std::string& address, const std::string& label);

// "1.2.3.4:5678", "[::1]:5678", or "unix".
std::string format_sockaddr(const sockaddr* sa);

}  // namespace kindling::http_server_impl
