#include "base/error.h"

#include <cerrno>
#include <cstring>

namespace kindling {

int exit_code_for_errno(int err) {
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
        return kExitNoInput;
    case EACCES:
    case EPERM:
    case EROFS:
        return kExitNoPerm;
    case EADDRINUSE:
    case EEXIST:
        return kExitCantCreate;
    case ENOMEM:
        return kExitOsErr;
    case EAGAIN:
    case EINTR:
    case ETIMEDOUT:
        return kExitTempFail;
    case ENODEV:
    case ENXIO:
    case ECONNREFUSED:
    case EHOSTUNREACH:
        return kExitUnavailable;
    default:
        return kExitIoErr;
    }
}

SysError::SysError(const std::string& what, int err)
    : Error(what + ": " + std::strerror(err), exit_code_for_errno(err)), err_(err) {}

SysError::SysError(const std::string& what, int err, int exit_code)
    : Error(what + ": " + std::strerror(err), exit_code), err_(err) {}

void throw_errno(const std::string& what) { throw SysError(what, errno); }

}  // namespace kindling
