#include "base/unix_socket.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace kindling {

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sun.sun_path)
        throw SysError(path + ": Unix socket path", ENAMETOOLONG);
    std::memcpy(sun.sun_path, path.data(), path.size());
    return sun;
}

UniqueFd try_connect_unix(const std::string& path, int* err, int flags) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sun.sun_path) {
        *err = ENAMETOOLONG;
        return {};
    }
    std::memcpy(sun.sun_path, path.data(), path.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0));
    if (!fd) {
        *err = errno;
        return {};
    }
    while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
        if (errno == EINTR) continue;
        *err = errno;
        return {};
    }
    *err = 0;
    return fd;
}

UniqueFd connect_unix(const std::string& path, int flags) {
    int err = 0;
    UniqueFd fd = try_connect_unix(path, &err, flags);
    if (!fd) throw SysError("connect " + path, err);
    return fd;
}

AddressInUseError::AddressInUseError(const std::string& path, const std::string& label)
    : SysError(path, EADDRINUSE), message_(path + ": " + label + " path in use") {}

void UnixListener::remove_path() const {
    struct stat st;
    if (!path.empty() && ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino)
        ::unlink(path.c_str());
}

namespace {

// A path that exists: a live listener -> in use; a socket nobody listens on -> removed;
// anything else -> refused, never deleted.
void clear_stale_socket(const std::string& path, const std::string& label) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw_errno("stat " + path);
    }
    if (!S_ISSOCK(st.st_mode)) throw SysError(path + ": exists and is not a socket", EEXIST);
    int err = 0;
    // Non-blocking: a live listener with a full backlog answers EAGAIN at once.
    if (try_connect_unix(path, &err, SOCK_NONBLOCK) || err == EAGAIN || err == EINPROGRESS)
        throw AddressInUseError(path, label);
    if (err != ECONNREFUSED && err != ENOENT) throw SysError("connect " + path, err);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("unlink stale socket " + path);
}

}  // namespace

UnixListener listen_unix(const std::string& path, const std::string& label, int flags, int backlog) {
    sockaddr_un sun = unix_address(path);
    clear_stale_socket(path, label);
    UnixListener l;
    l.fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0));
    if (!l.fd) throw_errno("socket for " + path);
    // Only the owner may connect, whatever the umask.  (bind takes the mode from the
    // umask; a chmod by path afterwards could be redirected by a symlink.)
    mode_t old_umask = ::umask(0177);
    int rc = ::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun);
    int bind_err = errno;
    ::umask(old_umask);
    if (rc != 0) {
        if (bind_err == EADDRINUSE) throw AddressInUseError(path, label);
        throw SysError("bind " + path, bind_err);
    }
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw_errno("stat " + path);
    l.path = path;
    l.dev = st.st_dev;
    l.ino = st.st_ino;
    if (::listen(l.fd.get(), backlog) != 0) {
        int err = errno;
        l.remove_path();
        throw SysError("listen " + path, err);
    }
    return l;
}

}  // namespace kindling
