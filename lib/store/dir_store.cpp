#include "store/dir_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <random>

#include "base/error.h"
#include "base/io.h"

namespace kindling {

namespace {

constexpr char kMarker[] = "kindling-store";
constexpr char kMarkerText[] = "kindling dir store v1\n";
constexpr time_t kStaleTempSecs = 60;

bool exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

void mkdir_p(const std::string& p) {
    if (p.empty() || p == "/" || p == ".") return;
    if (::mkdir(p.c_str(), 0755) == 0 || errno == EEXIST) return;
    if (errno != ENOENT) throw_errno("mkdir " + p);
    mkdir_p(dirname_of(p));
    if (::mkdir(p.c_str(), 0755) < 0 && errno != EEXIST) throw_errno("mkdir " + p);
}

void touch_atime(int fd) {
    // Best effort: the store may be shared with other users (EPERM), or read-only.
    const struct timespec ts[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    (void)::futimens(fd, ts);
}

std::string hex_byte(int b) {
    static const char kHex[] = "0123456789abcdef";
    return {kHex[b >> 4], kHex[b & 15]};
}

// Lists NAME entries of a directory; empty when it does not exist.
template <typename F>
void for_each_entry(const std::string& dir, F&& f) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT) return;
        throw_errno("opendir " + dir);
    }
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    while (struct dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        f(std::string(e->d_name));
    }
}

}  // namespace

DirStore::DirStore(std::string root, uint64_t max_bytes, const StoreOptions& opts)
    : root_(std::move(root)), max_bytes_(max_bytes) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    uri_ = "dir:" + root_;
    std::string marker = root_ + "/" + kMarker;
    if (!exists(marker)) {
        struct stat st {};
        bool have_dir = ::stat(root_.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        if (!have_dir && !opts.create) throw UnavailableError(uri_ + ": no such store directory");
        // Never turn a directory that holds something else into a store.  Another
        // process may be creating this store right now: its marker's temp file is
        // the first thing it writes, so give the marker a moment to appear.
        bool empty = true;
        for (int i = 0; have_dir && i < 200 && !exists(marker); ++i) {
            empty = true;
            bool foreign = false;
            for_each_entry(root_, [&](const std::string& name) {
                empty = false;
                bool ours = name.rfind(kMarker, 0) == 0 || name == "tmp" ||
                            (name.size() == 2 && std::isxdigit(static_cast<unsigned char>(name[0])) &&
                             std::isxdigit(static_cast<unsigned char>(name[1])));
                if (!ours) foreign = true;
            });
            if (empty || foreign) break;
            ::usleep(10000);
        }
        if (exists(marker)) empty = true;  // created meanwhile: nothing to do
        else if (!opts.create || !empty)
            throw UnavailableError(uri_ + ": not a kindling store (no " + kMarker + " file" +
                                   (empty ? ")" : ", and the directory is not empty)"));
        try {
            if (!exists(marker)) {
                mkdir_p(root_);
                write_file_atomic(marker, kMarkerText, 0444);
            }
        } catch (const SysError& e) {
            throw UnavailableError(uri_ + ": cannot create store: " + e.what());
        }
    }
    if (opts.create) {
        std::string tmp = root_ + "/tmp";
        if (::mkdir(tmp.c_str(), 0755) < 0 && errno != EEXIST) throw_errno("mkdir " + tmp);
    }
    std::string usage = root_ + "/.usage";
    bool fresh = false;
    int fd = ::open(usage.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) fresh = true;
    else fd = ::open(usage.c_str(), O_RDWR | O_CLOEXEC);
    usage_fd_.reset(fd);  // may stay invalid on a read-only store; usage is then unknown
    remove_stale_temps();
    if (fresh && max_bytes_) evict();
}

std::string DirStore::object_path(const Digest& id) const {
    std::string h = id.hex();
    return root_ + "/" + h.substr(0, 2) + "/" + h.substr(2);
}

bool DirStore::has(const Digest& id) {
    return ::access(object_path(id).c_str(), F_OK) == 0;
}

std::optional<std::vector<uint8_t>> DirStore::get(const Digest& id) {
    std::string p = object_path(id);
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;  // a miss, or evicted under us
        throw_errno(uri_ + ": open " + id.hex());
    }
    UniqueFd f(fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw_errno(uri_ + ": stat " + id.hex());
    std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
    size_t n = read_full(fd, out.data(), out.size(), uri_ + ": read " + id.hex());
    out.resize(n);
    touch_atime(fd);
    return out;
}

bool DirStore::put(const Digest& id, std::span<const uint8_t> data) {
    std::string h = id.hex();
    std::string dir = root_ + "/" + h.substr(0, 2);
    std::string path = dir + "/" + h.substr(2);
    {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            UniqueFd f(fd);
            touch_atime(fd);
            return false;
        }
    }
    static thread_local std::mt19937_64 rng{std::random_device{}() ^ uint64_t(::getpid()) << 32};
    char suffix[64];
    std::snprintf(suffix, sizeof suffix, ".%d.%016llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(rng()));
    std::string tmp = root_ + "/tmp/" + h + suffix;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
        if (errno != ENOENT) throw_errno(uri_ + ": create " + tmp);
        mkdir_p(root_ + "/tmp");
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd < 0) throw_errno(uri_ + ": create " + tmp);
    }
    UniqueFd f(fd);
    bool created = false;
    try {
        // Marks the temp file as live; see remove_stale_temps().
        if (::flock(fd, LOCK_EX) < 0) throw_errno(uri_ + ": flock " + tmp);
        write_full(fd, data.data(), data.size(), uri_ + ": write " + tmp);
        if (::fsync(fd) < 0) throw_errno(uri_ + ": fsync " + tmp);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) throw_errno(uri_ + ": mkdir " + dir);
        if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
            created = true;
        } else if (errno == EEXIST) {
            ::unlink(tmp.c_str());  // another writer got there first; same bytes
        } else if (errno == EINVAL || errno == ENOSYS) {
            // Filesystem without RENAME_NOREPLACE: link() also refuses to replace.
            if (::link(tmp.c_str(), path.c_str()) == 0) created = true;
            else if (errno != EEXIST) throw_errno(uri_ + ": link " + tmp + " to " + path);
            ::unlink(tmp.c_str());
        } else {
            throw_errno(uri_ + ": rename " + tmp + " to " + path);
        }
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    if (created) {
        {
            std::lock_guard<std::mutex> g(mu_);
            dirty_shards_.insert(id.bytes[0]);
        }
        add_usage(static_cast<int64_t>(data.size()));
        if (max_bytes_ && usage() > max_bytes_) evict();
    }
    return created;
}

void DirStore::flush() {
    std::set<int> shards;
    {
        std::lock_guard<std::mutex> g(mu_);
        shards.swap(dirty_shards_);
    }
    for (int s : shards) fsync_dir(root_ + "/" + hex_byte(s));
    if (!shards.empty()) fsync_dir(root_);
}

std::vector<Digest> DirStore::list() {
    std::vector<Digest> out;
    for (int s = 0; s < 256; ++s) {
        std::string shard = hex_byte(s);
        for_each_entry(root_ + "/" + shard, [&](const std::string& name) {
            if (auto d = Digest::from_hex(shard + name)) out.push_back(*d);
        });
    }
    return out;
}

bool DirStore::remove(const Digest& id) {
    std::string p = object_path(id);
    struct stat st {};
    if (::stat(p.c_str(), &st) < 0) {
        if (errno == ENOENT) return false;
        throw_errno(uri_ + ": stat " + id.hex());
    }
    if (::unlink(p.c_str()) < 0) {
        if (errno == ENOENT) return false;
        throw_errno(uri_ + ": remove " + id.hex());
    }
    add_usage(-static_cast<int64_t>(st.st_size));
    return true;
}

uint64_t DirStore::usage() {
    if (!usage_fd_) return 0;
    uint64_t v = 0;
    std::lock_guard<std::mutex> g(mu_);
    // flock excludes other processes; mu_ other threads (flock is per open file).
    ::flock(usage_fd_.get(), LOCK_SH);
    if (pread_full(usage_fd_.get(), &v, sizeof v, 0, uri_ + ": read .usage") != sizeof v) v = 0;
    ::flock(usage_fd_.get(), LOCK_UN);
    return v;
}

void DirStore::add_usage(int64_t delta) {
    if (!usage_fd_) return;
    std::lock_guard<std::mutex> g(mu_);
    ::flock(usage_fd_.get(), LOCK_EX);
    uint64_t v = 0;
    if (pread_full(usage_fd_.get(), &v, sizeof v, 0, uri_ + ": read .usage") != sizeof v) v = 0;
    v = delta < 0 && uint64_t(-delta) > v ? 0 : v + static_cast<uint64_t>(delta);
    try {
        pwrite_full(usage_fd_.get(), &v, sizeof v, 0, uri_ + ": write .usage");
    } catch (...) {
        ::flock(usage_fd_.get(), LOCK_UN);
        throw;
    }
    ::flock(usage_fd_.get(), LOCK_UN);
}

uint64_t DirStore::evict() {
    std::string lock_path = root_ + "/.evict.lock";
    int lfd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return usage();
    UniqueFd lock(lfd);
    // Someone else is evicting: their scan covers our object too.
    if (::flock(lfd, LOCK_EX | LOCK_NB) < 0) return usage();

    struct Obj {
        struct timespec atime;
        uint64_t size;
        std::string path;
    };
    std::vector<Obj> objs;
    uint64_t total = 0;
    for (int s = 0; s < 256; ++s) {
        std::string shard = root_ + "/" + hex_byte(s);
        for_each_entry(shard, [&](const std::string& name) {
            std::string p = shard + "/" + name;
            struct stat st {};
            if (::stat(p.c_str(), &st) < 0 || !S_ISREG(st.st_mode)) return;
            objs.push_back({st.st_atim, static_cast<uint64_t>(st.st_size), p});
            total += static_cast<uint64_t>(st.st_size);
        });
    }
    if (max_bytes_ && total > max_bytes_) {
        std::sort(objs.begin(), objs.end(), [](const Obj& a, const Obj& b) {
            if (a.atime.tv_sec != b.atime.tv_sec) return a.atime.tv_sec < b.atime.tv_sec;
            return a.atime.tv_nsec < b.atime.tv_nsec;
        });
        uint64_t low = max_bytes_ / 10 * 9;
        for (const auto& o : objs) {
            if (total <= low) break;
            if (::unlink(o.path.c_str()) == 0 || errno == ENOENT) total -= o.size;
        }
    }
    if (usage_fd_) {
        std::lock_guard<std::mutex> g(mu_);
        ::flock(usage_fd_.get(), LOCK_EX);
        (void)::pwrite(usage_fd_.get(), &total, sizeof total, 0);
        ::flock(usage_fd_.get(), LOCK_UN);
    }
    return total;
}

void DirStore::remove_stale_temps() {
    std::string tmpdir = root_ + "/tmp";
    time_t now = ::time(nullptr);
    try {
        for_each_entry(tmpdir, [&](const std::string& name) {
            std::string p = tmpdir + "/" + name;
            struct stat st {};
            if (::stat(p.c_str(), &st) < 0 || now - st.st_mtime < kStaleTempSecs) return;
            int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) return;
            UniqueFd f(fd);
            // A live writer holds the lock; a dead one's lock died with it.
            if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(p.c_str());
        });
    } catch (const SysError&) {
        // A read-only view of the store: nothing to clean.
    }
}

}  // namespace kindling
