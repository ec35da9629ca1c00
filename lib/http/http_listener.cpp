#include "http/http_listener.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <memory>

#include "base/error.h"

namespace kindling::http_server_impl {

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

namespace {

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

}  // namespace

Listener make_listener(const std::string& address, const std::string& label) {
    if (address.starts_with("unix:")) return unix_listener(address.substr(5), label);
    // A TCP address always has a port; anything else is a path ("api.sock" too).
    if (address.find('/') != std::string::npos || address.find(':') == std::string::npos)
        return unix_listener(address, label);
    return listen_tcp(address);
}

}  // namespace kindling::http_server_impl
