#include "snapshot/uffd_memory.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "base/unix_socket.h"
#include "kvm/guest_memory.h"
#include "seccomp/thread_filter.h"
#include "snapshot/snapshot_dir.h"

namespace kindling {

namespace {

constexpr uint64_t kPage = kUffdPageSize;

uint64_t now_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void atomic_max(std::atomic<uint64_t>& a, uint64_t v) {
    uint64_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

const char* uffd_origin_name(UffdOrigin o) {
    switch (o) {
    case UffdOrigin::kSyscall: return "userfaultfd(2)";
    case UffdOrigin::kDevice: return "/dev/userfaultfd";
    case UffdOrigin::kUserModeOnly: return "userfaultfd(2) UFFD_USER_MODE_ONLY";
    }
    return "?";
}

// ---------------------------------------------------------------------------
// Userfaultfd

Userfaultfd Userfaultfd::open(bool allow_user_mode_only) {
    const int flags = O_CLOEXEC | O_NONBLOCK;
    std::string tried;
    auto note = [&](const char* how, int err) {
        if (!tried.empty()) tried += "; ";
        tried += std::string(how) + ": " + std::strerror(err);
    };
    UniqueFd fd;
    UffdOrigin origin = UffdOrigin::kSyscall;
    // Without CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=0 refuses the syscall for
    // faults raised in kernel mode (userfaultfd.rst, "Create a userfaultfd").
    int r = static_cast<int>(::syscall(SYS_userfaultfd, flags));
    if (r >= 0) {
        fd.reset(r);
    } else {
        note("userfaultfd(2)", errno);
        int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev >= 0) {
            r = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
            int err = errno;
            ::close(dev);
            if (r >= 0) {
                fd.reset(r);
                origin = UffdOrigin::kDevice;
            } else {
                note("/dev/userfaultfd USERFAULTFD_IOC_NEW", err);
            }
        } else {
            note("open /dev/userfaultfd", errno);
        }
        if (!fd && allow_user_mode_only) {
            r = static_cast<int>(::syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
            if (r >= 0) {
                fd.reset(r);
                origin = UffdOrigin::kUserModeOnly;
            } else {
                note("userfaultfd(2) UFFD_USER_MODE_ONLY", errno);
            }
        }
    }
    if (!fd) throw UnavailableError("userfaultfd is not available: " + tried);

    uffdio_api api{};
    api.api = UFFD_API;
    api.features = 0;
    if (::ioctl(fd.get(), UFFDIO_API, &api) < 0) throw_errno("userfaultfd: UFFDIO_API");
    return Userfaultfd(std::move(fd), origin);
}

void Userfaultfd::register_missing(void* addr, uint64_t len) {
    auto a = reinterpret_cast<uint64_t>(addr);
    if (a % kPage != 0 || len % kPage != 0 || len == 0)
        throw ConfigError("userfaultfd: range " + hex(a) + "+" + hex(len) + " is not page-aligned");
    uffdio_register reg{};
    reg.range.start = a;
    reg.range.len = len;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(fd_.get(), UFFDIO_REGISTER, &reg) < 0)
        throw_errno("userfaultfd: UFFDIO_REGISTER " + hex(a) + "+" + hex(len));
    const uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);
    if ((reg.ioctls & need) != need)
        throw UnavailableError("userfaultfd: UFFDIO_COPY/ZEROPAGE not supported on " + hex(a) + "+" + hex(len));
}

void Userfaultfd::close() { fd_.reset(); }

// ---------------------------------------------------------------------------
// Page sources

PageSource layer_stack_source(const LayerStack& stack) {
    PageSource src;
    for (const auto& l : stack.layers()) src.files.push_back({l.mem.get(), l.dir + "/mem"});
    src.pages = stack.page_count();
    src.locate = [&stack](uint64_t page) -> PageLocation {
        LayerStack::PageSource s = stack.page(page);
        if (s.zero()) return {};
        return {s.layer, s.offset};
    };
    return src;
}

PageSource flat_file_source(int fd, const std::string& name, uint64_t mem_size) {
    struct stat st;
    if (::fstat(fd, &st) < 0) throw_errno(name);
    if (static_cast<uint64_t>(st.st_size) < mem_size)
        throw DataError(name + ": " + std::to_string(st.st_size) + " bytes, the machine has " +
                        std::to_string(mem_size) + " bytes of memory");
    uint64_t pages = mem_size / kPage;
    // One bit per page that holds data; holes (SEEK_HOLE granularity is the file
    // system's block size, never coarser than what was written) are zero pages.
    auto data = std::make_shared<std::vector<uint64_t>>((pages + 63) / 64, 0);
    off_t off = 0;
    while (static_cast<uint64_t>(off) < mem_size) {
        off_t d = ::lseek(fd, off, SEEK_DATA);
        if (d < 0) {
            if (errno == ENXIO) break;  // only a hole remains
            if (errno == EINVAL) {      // no SEEK_DATA here: treat every page as data
                std::fill(data->begin(), data->end(), ~0ull);
                break;
            }
            throw_errno(name + ": lseek SEEK_DATA");
        }
        off_t h = ::lseek(fd, d, SEEK_HOLE);
        if (h < 0) throw_errno(name + ": lseek SEEK_HOLE");
        uint64_t first = static_cast<uint64_t>(d) / kPage;
        uint64_t end = std::min<uint64_t>((static_cast<uint64_t>(h) + kPage - 1) / kPage, pages);
        for (uint64_t p = first; p < end; p++) (*data)[p / 64] |= 1ull << (p % 64);
        off = h;
    }
    PageSource src;
    src.files.push_back({fd, name});
    src.pages = pages;
    src.locate = [data](uint64_t page) -> PageLocation {
        if ((*data)[page / 64] >> (page % 64) & 1) return {0, page * kPage};
        return {};
    };
    return src;
}

// ---------------------------------------------------------------------------
// UffdMemory

UffdMemory::UffdMemory(Userfaultfd uffd, uint8_t* base, uint64_t size, PageSource source, UffdOptions opts)
    : uffd_(std::move(uffd)), base_(base), size_(size), source_(std::move(source)), opts_(std::move(opts)) {
    if (reinterpret_cast<uint64_t>(base) % kPage != 0 || size == 0 || size % kPage != 0)
        throw ConfigError("uffd memory: range " + hex(reinterpret_cast<uint64_t>(base)) + "+" + hex(size) +
                          " is not page-aligned");
    if (source_.pages != size / kPage)
        throw ConfigError("uffd memory: page source has " + std::to_string(source_.pages) + " pages, memory has " +
                          std::to_string(size / kPage));
    if (!source_.locate) throw ConfigError("uffd memory: page source has no locate function");
    for (const auto& f : source_.files) {
        struct stat st;
        if (::fstat(f.fd, &st) < 0) throw_errno(f.name);
        file_sizes_.push_back(static_cast<uint64_t>(st.st_size));
        if (st.st_size == 0) {
            maps_.emplace_back();
            continue;
        }
        // Read-only and shared: the guest gets copies (UFFDIO_COPY); this mapping
        // only lets the kernel copy straight from the page cache without a bounce
        // buffer.  A file that cannot be mapped (a snapfs file in direct-I/O mode:
        // FUSE refuses shared mappings there, ENODEV) is read with pread instead,
        // which keeps it out of the page cache entirely.
        void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, f.fd, 0);
        if (p == MAP_FAILED) {
            if (errno != ENODEV && errno != EACCES && errno != EINVAL) throw_errno("mmap " + f.name);
            log_debug("%s: cannot be mapped (%s); pages are read with pread", f.name.c_str(), std::strerror(errno));
            maps_.emplace_back();
            continue;
        }
        maps_.emplace_back(p, static_cast<size_t>(st.st_size));
    }
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) throw_errno("uffd memory: eventfd");
    stop_fd_.reset(efd);
    if (opts_.record_access) recorded_.assign((source_.pages + 63) / 64, 0);
    uffd_.register_missing(base_, size_);
}

UffdMemory::~UffdMemory() { stop(); }

void UffdMemory::start() {
    if (handler_.joinable() || stopped_) throw ConfigError("uffd memory: start() called twice or after stop()");
    handler_ = std::thread([this] { handler_main(); });
}

void UffdMemory::stop() {
    if (stopped_) return;
    stopped_ = true;
    stop_prefetch_.store(true, std::memory_order_release);
    if (prefetcher_.joinable()) prefetcher_.join();
    if (handler_.joinable()) {
        uint64_t one = 1;
        if (::write(stop_fd_.get(), &one, sizeof one) < 0) log_warn("uffd memory: eventfd write: %s", std::strerror(errno));
        handler_.join();
    } else if (!failed()) {
        // Never started: serve what is pending on this thread so nobody stays blocked
        // on a fault and then sees zeros.
        try {
            serve_pending();
        } catch (const std::exception& e) {
            fail(e.what());
        }
    }
    // Closing the uffd releases every remaining waiter (userfaultfd.rst: the range
    // becomes ordinary anonymous memory).
    uffd_.close();
}

UffdStats UffdMemory::stats() const {
    UffdStats s;
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    s.faults = ld(c_.faults);
    s.pages_copied = ld(c_.pages_copied);
    s.zero_pages = ld(c_.zero_pages);
    s.bytes_copied = s.pages_copied * kPage;
    s.prefetched_pages = ld(c_.prefetched_pages);
    s.prefetch_ioctls = ld(c_.prefetch_ioctls);
    s.already_present = ld(c_.already_present);
    s.retries = ld(c_.retries);
    s.fault_ns_total = ld(c_.fault_ns_total);
    s.fault_ns_max = ld(c_.fault_ns_max);
    s.prefetch_ns = ld(c_.prefetch_ns);
    return s;
}

std::string UffdMemory::failure() const {
    std::lock_guard lk(mu_);
    return failure_;
}

AccessLog UffdMemory::access_log() const {
    std::lock_guard lk(mu_);
    return AccessLog{size_, access_};
}

void UffdMemory::fail(const std::string& why) noexcept {
    {
        std::lock_guard lk(mu_);
        if (failed_.load(std::memory_order_relaxed)) return;
        failure_ = why;
        failed_.store(true, std::memory_order_release);
    }
    if (!opts_.on_failure) log_error("%s", why.c_str());
    if (opts_.on_failure) {
        try {
            opts_.on_failure(why);
        } catch (const std::exception& e) {
            log_error("uffd memory: failure callback threw: %s", e.what());
        } catch (...) {
            log_error("uffd memory: failure callback threw");
        }
    }
}

void UffdMemory::handler_main() noexcept {
    pollfd fds[2] = {{uffd_.fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    try {
        enter_thread(ThreadKind::kUffd, "uffd");
        for (;;) {
            int r = ::poll(fds, 2, -1);
            if (r < 0) {
                if (errno == EINTR) continue;
                throw_errno("uffd memory: poll");
            }
            if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL))
                throw Error("uffd memory: userfaultfd reported an error (poll revents " +
                            std::to_string(fds[0].revents) + ")");
            if (fds[0].revents & POLLIN) serve_pending();
            if (fds[1].revents & POLLIN) {
                serve_pending();  // faults raised before stop() still get their page
                return;
            }
        }
    } catch (const std::exception& e) {
        fail(e.what());
    } catch (...) {
        fail("uffd memory: unknown exception in the fault handler");
    }
}

void UffdMemory::serve_pending() {
    uffd_msg msgs[64];
    for (;;) {
        ssize_t n = ::read(uffd_.fd(), msgs, sizeof msgs);
        uint64_t t0 = now_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            throw_errno("uffd memory: read userfaultfd");
        }
        size_t count = static_cast<size_t>(n) / sizeof(uffd_msg);
        for (size_t i = 0; i < count; i++) {
            if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
                throw Error("uffd memory: unexpected userfaultfd event " + std::to_string(msgs[i].event));
            serve_fault(msgs[i].arg.pagefault.address, i == 0 ? t0 : now_ns());
        }
    }
}

void UffdMemory::serve_fault(uint64_t addr, uint64_t t0) {
    auto b = reinterpret_cast<uint64_t>(base_);
    if (addr < b || addr - b >= size_)
        throw Error("uffd memory: fault at " + hex(addr) + " outside the registered range " + hex(b) + "+" + hex(size_));
    uint64_t page = (addr - b) / kPage;
    PageLocation loc = source_.locate(page);
    const uint8_t* src = nullptr;
    if (!loc.zero() && !failed()) {
        try {
            src = source_ptr(page, 1, loc);
        } catch (const std::exception& e) {
            fail(e.what());
        }
    }
    // After a failure the faulting thread still gets a (zero) page rather than
    // waiting for ever: the VM is being stopped, but the VMM's own threads may be
    // touching guest memory (device restore, the generation page) and must return.
    install(page, 1, src, Caller::kFault);
    c_.faults.fetch_add(1, std::memory_order_relaxed);
    if (opts_.record_access && !(recorded_[page / 64] >> (page % 64) & 1)) {
        // Two threads faulting on one page raise two messages; the log keeps the first.
        recorded_[page / 64] |= 1ull << (page % 64);
        std::lock_guard lk(mu_);
        access_.push_back(static_cast<uint32_t>(page));
    }
    uint64_t ns = now_ns() - t0;
    c_.fault_ns_total.fetch_add(ns, std::memory_order_relaxed);
    atomic_max(c_.fault_ns_max, ns);
}

const uint8_t* UffdMemory::source_ptr(uint64_t page, uint64_t n, const PageLocation& loc) const {
    if (loc.file < 0 || static_cast<size_t>(loc.file) >= maps_.size())
        throw Error("uffd memory: page " + std::to_string(page) + ": no source file " + std::to_string(loc.file));
    const Mapping& m = maps_[static_cast<size_t>(loc.file)];
    const auto& file = source_.files[static_cast<size_t>(loc.file)];
    const uint64_t size = file_sizes_[static_cast<size_t>(loc.file)];
    if (loc.offset % kPage != 0 || loc.offset > size || n * kPage > size - loc.offset)
        throw DataError(file.name + ": page " + std::to_string(page) + " at offset " + std::to_string(loc.offset) +
                        ": beyond the end of the file (" + std::to_string(size) + " bytes)");
    if (m.data()) return m.data() + loc.offset;
    // Unmappable source: a bounce buffer per thread (the handler and the prefetcher).
    thread_local std::vector<uint8_t> bounce;
    if (bounce.size() < n * kPage) bounce.resize(n * kPage);
    if (pread_full(file.fd, bounce.data(), n * kPage, static_cast<off_t>(loc.offset), file.name) != n * kPage)
        throw DataError(file.name + ": short read at offset " + std::to_string(loc.offset));
    return bounce.data();
}

uint64_t UffdMemory::install(uint64_t page, uint64_t n, const uint8_t* src, Caller who) {
    uint64_t installed = 0;
    uint64_t done = 0;
    unsigned spins = 0;
    auto account = [&](uint64_t pages) {
        installed += pages;
        (src ? c_.pages_copied : c_.zero_pages).fetch_add(pages, std::memory_order_relaxed);
        if (who == Caller::kPrefetch) c_.prefetched_pages.fetch_add(pages, std::memory_order_relaxed);
    };
    while (done < n) {
        uint64_t dst = reinterpret_cast<uint64_t>(base_) + (page + done) * kPage;
        uint64_t len = (n - done) * kPage;
        int64_t result;
        int r;
        if (src) {
            uffdio_copy c{};
            c.dst = dst;
            c.src = reinterpret_cast<uint64_t>(src + done * kPage);
            c.len = len;
            r = ::ioctl(uffd_.fd(), UFFDIO_COPY, &c);
            result = c.copy;
        } else {
            uffdio_zeropage z{};
            z.range.start = dst;
            z.range.len = len;
            r = ::ioctl(uffd_.fd(), UFFDIO_ZEROPAGE, &z);
            result = z.zeropage;
        }
        int err = errno;
        if (who == Caller::kPrefetch) c_.prefetch_ioctls.fetch_add(1, std::memory_order_relaxed);
        if (r == 0) {
            account(n - done);
            break;
        }
        if (result > 0) {
            // Partial: the kernel installed (and woke) a prefix and reports EAGAIN;
            // the page after it is present or the layout changed — the next call says.
            account(static_cast<uint64_t>(result) / kPage);
            done += static_cast<uint64_t>(result) / kPage;
            continue;
        }
        if (err == EEXIST) {
            // Installed meanwhile (prefetch vs fault, or two threads on one page).  A
            // faulting thread may still sleep on it: the installer's wake can precede
            // our read of its message only if it was already queued, so wake to be sure.
            c_.already_present.fetch_add(1, std::memory_order_relaxed);
            if (who == Caller::kFault) {
                uffdio_range wr{dst, kPage};
                if (::ioctl(uffd_.fd(), UFFDIO_WAKE, &wr) < 0) throw_errno("uffd memory: UFFDIO_WAKE " + hex(dst));
            }
            done += 1;
            continue;
        }
        if (err == EAGAIN || err == EINTR) {
            // The address space is changing (fork, mremap): retry.
            c_.retries.fetch_add(1, std::memory_order_relaxed);
            if (++spins % 64 == 0) ::sched_yield();
            continue;
        }
        throw SysError(std::string("uffd memory: ") + (src ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE") + " of page " +
                           std::to_string(page + done) + " (" + std::to_string(n - done) + " pages)",
                       err);
    }
    return installed;
}

void UffdMemory::prefetch(std::span<const uint32_t> log, const PrefetchOptions& opts, const std::atomic<bool>* cancel) {
    uint64_t t0 = now_ns();
    const uint64_t batch = std::max<uint64_t>(1, opts.batch_bytes / kPage);
    const size_t window = opts.window_pages ? static_cast<size_t>(opts.window_pages) : log.size();
    std::vector<uint64_t> seen((source_.pages + 63) / 64, 0);
    std::vector<uint32_t> w;
    auto cancelled = [&] { return (cancel && cancel->load(std::memory_order_acquire)) || failed(); };
    for (size_t i = 0; i < log.size() && !cancelled(); i += window) {
        w.clear();
        for (size_t j = i; j < std::min(log.size(), i + window); j++) {
            uint32_t p = log[j];
            if (p >= source_.pages || (seen[p / 64] >> (p % 64) & 1)) continue;
            seen[p / 64] |= 1ull << (p % 64);
            w.push_back(p);
        }
        std::sort(w.begin(), w.end());
        // Coalesce runs of consecutive guest pages that come from consecutive offsets
        // of one file (or are all zero) into one ioctl of up to `batch` pages.
        for (size_t k = 0; k < w.size() && !cancelled();) {
            uint64_t p0 = w[k];
            PageLocation l0 = source_.locate(p0);
            uint64_t run = 1;
            while (k + run < w.size() && run < batch && w[k + run] == p0 + run) {
                PageLocation l = source_.locate(p0 + run);
                bool same = l0.zero() ? l.zero() : (l.file == l0.file && l.offset == l0.offset + run * kPage);
                if (!same) break;
                run++;
            }
            install(p0, run, l0.zero() ? nullptr : source_ptr(p0, run, l0), Caller::kPrefetch);
            k += run;
        }
    }
    c_.prefetch_ns.fetch_add(now_ns() - t0, std::memory_order_relaxed);
}

void UffdMemory::prefetch_all_before_start(std::span<const uint32_t> log, PrefetchOptions opts) {
    if (stopped_) throw ConfigError("uffd memory: prefetch after stop()");
    prefetch(log, opts, nullptr);
}

void UffdMemory::start_prefetch(std::vector<uint32_t> log, PrefetchOptions opts) {
    if (stopped_) throw ConfigError("uffd memory: prefetch after stop()");
    if (prefetcher_.joinable()) throw ConfigError("uffd memory: a prefetch is already running");
    stop_prefetch_.store(false, std::memory_order_release);
    prefetcher_ = std::thread([this, log = std::move(log), opts]() mutable { prefetch_main(std::move(log), opts); });
}

void UffdMemory::wait_prefetch() {
    if (prefetcher_.joinable()) prefetcher_.join();
}

void UffdMemory::prefetch_main(std::vector<uint32_t> log, PrefetchOptions opts) noexcept {
    try {
        enter_thread(ThreadKind::kUffd, "uffd-prefetch");
        prefetch(log, opts, &stop_prefetch_);
    } catch (const std::exception& e) {
        fail(std::string("uffd memory: prefetch: ") + e.what());
    } catch (...) {
        fail("uffd memory: prefetch: unknown exception");
    }
}

// ---------------------------------------------------------------------------
// External handler (Firecracker's protocol)

std::vector<UffdRegion> uffd_regions_of(const GuestMemory& mem) {
    std::vector<UffdRegion> out;
    uint64_t offset = 0;
    for (const auto& r : mem.regions()) {
        out.push_back({reinterpret_cast<uint64_t>(r.host), r.size, offset, kPage});
        offset += r.size;
    }
    return out;
}

std::string uffd_handshake_json(std::span<const UffdRegion> regions) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : regions) {
        arr.push_back({{"base_host_virt_addr", r.base_host_virt_addr},
                       {"size", r.size},
                       {"offset", r.offset},
                       {"page_size", r.page_size},
                       {"page_size_kib", r.page_size}});
    }
    return arr.dump();
}

UniqueFd send_uffd_to_handler(const std::string& socket_path, std::span<const UffdRegion> regions, int uffd) {
    int err = 0;
    UniqueFd s = try_connect_unix(socket_path, &err);
    if (!s) {
        if (err == ENAMETOOLONG) throw ConfigError("uffd handler socket path is empty or too long: " + socket_path);
        throw SysError("uffd handler " + socket_path + ": connect", err);
    }
    std::string body = uffd_handshake_json(regions);
    iovec iov{body.data(), body.size()};
    alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl;
    msg.msg_controllen = sizeof ctrl;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &uffd, sizeof uffd);
    ssize_t n;
    do {
        n = ::sendmsg(s.get(), &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) throw_errno("uffd handler " + socket_path + ": sendmsg");
    // A stream socket may take the body in parts; the fd travels with the first.
    size_t sent = static_cast<size_t>(n);
    while (sent < body.size()) {
        n = ::send(s.get(), body.data() + sent, body.size() - sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("uffd handler " + socket_path + ": send");
        }
        sent += static_cast<size_t>(n);
    }
    return s;
}

}  // namespace kindling
