// Error hierarchy shared by every tool (STYLE.md "Errors").  Library code throws;
// each tool's main() turns the exception into one line and a sysexits code.
#pragma once

#include <stdexcept>
#include <string>

namespace kindling {

// sysexits(3) codes used across the tools (DESIGN.md).
enum ExitCode : int {
    kExitOk = 0,
    kExitUsage = 64,
    kExitDataErr = 65,
    kExitNoInput = 66,
    kExitUnavailable = 69,
    kExitSoftware = 70,
    kExitOsErr = 71,
    kExitCantCreate = 73,
    kExitIoErr = 74,
    kExitTempFail = 75,
    kExitNoPerm = 77,
    kExitConfig = 78,
};

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what, int exit_code = kExitSoftware)
        : std::runtime_error(what), exit_code_(exit_code) {}
    int exit_code() const { return exit_code_; }

private:
    int exit_code_;
};

// A failed system call: "<what>: <strerror(errno)>".  The exit code follows errno
// (ENOENT -> 66, EACCES -> 77, ...) unless given.
class SysError : public Error {
public:
    SysError(const std::string& what, int err);
    SysError(const std::string& what, int err, int exit_code);
    int err() const { return err_; }

private:
    int err_;
};

// Malformed input data (bad ELF, corrupt snapshot, invalid JSON).
class DataError : public Error {
public:
    explicit DataError(const std::string& what) : Error(what, kExitDataErr) {}
};

class ConfigError : public Error {
public:
    explicit ConfigError(const std::string& what) : Error(what, kExitConfig) {}
};

class UsageError : public Error {
public:
    explicit UsageError(const std::string& what) : Error(what, kExitUsage) {}
};

// A needed service or device is not there (no /dev/kvm, server down).
class UnavailableError : public Error {
public:
    explicit UnavailableError(const std::string& what) : Error(what, kExitUnavailable) {}
};

// Throws SysError(what, errno) — for the common `if (x < 0) throw_errno(...)`.
[[noreturn]] void throw_errno(const std::string& what);

// Maps an errno value to the sysexits code a tool should return.
int exit_code_for_errno(int err);

}  // namespace kindling
