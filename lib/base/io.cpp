#include "base/io.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <random>

#include "base/error.h"

namespace kindling {

Mapping Mapping::map(size_t size, int prot, int flags, int fd, off_t offset,
                     const std::string& what) {
    void* p = ::mmap(nullptr, size, prot, flags, fd, offset);
    if (p == MAP_FAILED) throw_errno(what);
    return Mapping(p, size);
}

UniqueFd open_file(const std::string& path, int flags, mode_t mode) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) throw_errno(path);
    return UniqueFd(fd);
}

size_t read_full(int fd, void* buf, size_t n, const std::string& what) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = ::read(fd, static_cast<char*>(buf) + done, n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(what);
        }
        if (r == 0) break;
        done += static_cast<size_t>(r);
    }
    return done;
}

size_t pread_full(int fd, void* buf, size_t n, off_t off, const std::string& what) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = ::pread(fd, static_cast<char*>(buf) + done, n - done, off + done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(what);
        }
        if (r == 0) break;
        done += static_cast<size_t>(r);
    }
    return done;
}

void write_full(int fd, const void* buf, size_t n, const std::string& what) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = ::write(fd, static_cast<const char*>(buf) + done, n - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(what);
        }
        done += static_cast<size_t>(r);
    }
}

void pwrite_full(int fd, const void* buf, size_t n, off_t off, const std::string& what) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = ::pwrite(fd, static_cast<const char*>(buf) + done, n - done, off + done);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(what);
        }
        done += static_cast<size_t>(r);
    }
}

namespace {

std::vector<uint8_t> read_file_bytes(const std::string& path, bool secret) {
    UniqueFd fd = open_file(path, O_RDONLY);
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) throw_errno(path);
    if (S_ISDIR(st.st_mode)) throw SysError(path, EISDIR, kExitDataErr);
    if (secret && (st.st_mode & 077)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(path + ": holds secrets but is mode " + mode + ": make it private (chmod 600)");
    }
    std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
    size_t n = read_full(fd.get(), out.data(), out.size(), path);
    out.resize(n);
    return out;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path) { return read_file_bytes(path, false); }

std::vector<uint8_t> read_secret_file(const std::string& path) { return read_file_bytes(path, true); }

std::string read_file(const std::string& path) {
    auto b = read_file_bytes(path);
    return std::string(b.begin(), b.end());
}

std::string resolve_path(const std::string& path) {
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(path, ec);
    std::filesystem::path c = ec ? abs : std::filesystem::weakly_canonical(abs, ec);
    return (ec ? abs.lexically_normal() : c).string();
}

bool path_within(const std::string& root, const std::string& path) {
    std::filesystem::path r = resolve_path(root), p = resolve_path(path);
    auto ri = r.begin(), pi = p.begin();
    for (; ri != r.end(); ++ri, ++pi) {
        if (ri->empty()) continue;  // a trailing separator
        if (pi == p.end() || *ri != *pi) return false;
    }
    return true;
}

std::string dirname_of(const std::string& path) {
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

void fsync_dir(const std::string& dir) {
    UniqueFd fd = open_file(dir, O_RDONLY | O_DIRECTORY);
    if (::fsync(fd.get()) < 0) throw_errno("fsync " + dir);
}

void write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
    std::string dir = dirname_of(path);
    std::random_device rd;
    std::string tmp = path + ".tmp." + std::to_string(rd());
    UniqueFd fd = open_file(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    try {
        write_full(fd.get(), data.data(), data.size(), tmp);
        if (::fsync(fd.get()) < 0) throw_errno("fsync " + tmp);
        fd.reset();
        if (::rename(tmp.c_str(), path.c_str()) < 0) throw_errno("rename " + tmp + " to " + path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_dir(dir);
}

}  // namespace kindling
