// EINTR-safe whole-buffer I/O and small file helpers.  Each throws SysError naming
// the path or the `what` it was given.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"

namespace kindling {

// open(2) with O_CLOEXEC; throws SysError("open PATH").
UniqueFd open_file(const std::string& path, int flags, mode_t mode = 0644);

// Reads exactly n bytes unless EOF comes first; returns bytes read.
size_t read_full(int fd, void* buf, size_t n, const std::string& what);
size_t pread_full(int fd, void* buf, size_t n, off_t off, const std::string& what);
void write_full(int fd, const void* buf, size_t n, const std::string& what);
void pwrite_full(int fd, const void* buf, size_t n, off_t off, const std::string& what);

std::string read_file(const std::string& path);
// A file of secrets (keys, credentials): read like read_file_bytes, but refused with
// ConfigError when group or others may read or write it, as ssh does.
std::vector<uint8_t> read_secret_file(const std::string& path);
std::vector<uint8_t> read_file_bytes(const std::string& path);

// Writes `data` to `path` atomically: temp file in the same directory, fsync,
// rename, fsync of the directory.  Readers see the old or the new file, never a
// partial one; a failure leaves no temp file behind.
void write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644);

void fsync_dir(const std::string& dir);
std::string dirname_of(const std::string& path);
// `path` absolute, with symlinks and ".." resolved as the kernel will resolve them
// (a tail that does not exist yet lexically).
std::string resolve_path(const std::string& path);
// Whether `path` is `root` or lies below it, both resolved through symlinks and ".."
// first (as the kernel will resolve them; missing tails lexically).
bool path_within(const std::string& root, const std::string& path);

}  // namespace kindling
