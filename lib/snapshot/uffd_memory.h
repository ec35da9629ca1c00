// Restore-time guest memory backends built on userfaultfd (DESIGN.md "Snapshots",
// Documentation/admin-guide/mm/userfaultfd.rst).
//
// `uffd` (copy-on-read): guest RAM stays private anonymous memory registered for
// missing-page faults; a handler thread serves each first touch — by a vCPU through
// KVM, or by the VMM itself — with UFFDIO_COPY from a read-only mapping of the layer
// file that holds the page, or UFFDIO_ZEROPAGE for a page no layer holds.  The guest
// only ever sees its own copies; no page cache is mapped into it.  The first-fault
// order can be recorded (access_log.h) and replayed as a prefetch that installs the
// working set in batches of up to 2 MiB, racing safely with demand faults.
//
// `uffd:SOCKET`: the VMM registers the memory and hands the uffd to an external
// handler with Firecracker's message (send_uffd_to_handler), then serves nothing.
//
// Restore order for the Machine (see UffdMemory below):
//   1. GuestMemory mem(size)              anonymous, untouched
//   2. UffdMemory uffd(Userfaultfd::open(), mem.base(), mem.size(), source, opts)
//                                         registers: before anything touches guest RAM
//   3. KVM_SET_USER_MEMORY_REGION         (KVM does not touch pages here; 2 and 3 may swap)
//   4. [--prefetch, sync]  uffd.prefetch_all_before_start(log.pages)
//   5. uffd.start()                       handler thread; from here the VMM may read or
//                                         write guest memory (device restore, generation page)
//   6. [--prefetch, async] uffd.start_prefetch(log.pages)
//   7. restore vCPU state, start vCPU threads
//   teardown: join every vCPU thread, then uffd.stop() (drains faults still pending),
//   then [--record-access] write_access_log(FILE, uffd.access_log()), then unmap RAM.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "snapshot/access_log.h"

namespace kindling {

class GuestMemory;
class LayerStack;

inline constexpr uint64_t kUffdPageSize = 4096;

// How a userfaultfd was obtained (Documentation/admin-guide/mm/userfaultfd.rst,
// "Create a userfaultfd").
enum class UffdOrigin {
    kSyscall,       // userfaultfd(2): CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1
    kDevice,        // /dev/userfaultfd, USERFAULTFD_IOC_NEW: file permissions decide
    kUserModeOnly,  // userfaultfd(UFFD_USER_MODE_ONLY): faults raised by the kernel on
                    // the process's behalf — KVM's, for a guest — are NOT delivered
};

const char* uffd_origin_name(UffdOrigin o);

// An open userfaultfd (O_CLOEXEC | O_NONBLOCK) with the UFFDIO_API handshake done.
// No optional features are requested: missing-page faults on private anonymous
// memory are the base feature, and the VMM neither forks with guest memory nor
// mremaps or madvises it (no balloon), so no non-cooperative events are needed.
class Userfaultfd {
public:
    // Tries userfaultfd(2), then /dev/userfaultfd; with `allow_user_mode_only` (tests
    // that fault from plain threads) finally userfaultfd(UFFD_USER_MODE_ONLY).
    // UnavailableError listing every attempt and its errno when none works.
    static Userfaultfd open(bool allow_user_mode_only = false);

    // UFFDIO_REGISTER_MODE_MISSING over [addr, addr+len), both page-aligned; checks
    // that UFFDIO_COPY and UFFDIO_ZEROPAGE are allowed on the range.
    void register_missing(void* addr, uint64_t len);

    int fd() const { return fd_.get(); }
    void close();
    UffdOrigin origin() const { return origin_; }
    // False for kUserModeOnly: a guest's faults would fail inside KVM_RUN.
    bool handles_kernel_faults() const { return origin_ != UffdOrigin::kUserModeOnly; }

private:
    Userfaultfd(UniqueFd fd, UffdOrigin origin) : fd_(std::move(fd)), origin_(origin) {}
    UniqueFd fd_;
    UffdOrigin origin_ = UffdOrigin::kSyscall;
};

// Where one guest page's bytes come from.
struct PageLocation {
    int file = -1;        // index into PageSource::files; -1 = the page is zero
    uint64_t offset = 0;  // byte offset of the page in that file (page-aligned)
    bool zero() const { return file < 0; }
};

// The bytes of a guest image: read-only files (each mapped once, whole) and, for
// every guest page, which file holds it at which offset, or that it is zero.
// LayerStack answers this for a stack of snapshot layers (files = the layers' `mem`).
struct PageSource {
    struct File {
        int fd = -1;       // not owned; must stay open while the UffdMemory exists
        std::string name;  // for messages: "/snap/fn/mem"
    };
    std::vector<File> files;
    uint64_t pages = 0;  // guest pages = mem size / 4096
    std::function<PageLocation(uint64_t page)> locate;
};

// A stack of snapshot layers (snapshot_dir.h): files = every layer's `mem`, top
// first; a page comes from the topmost layer that holds it, zero if that layer has
// a hole there.  `stack` must outlive the PageSource.
PageSource layer_stack_source(const LayerStack& stack);

// One file holding guest page p at offset p*4096 (a full layer's `mem`).  Holes in a
// sparse file are found with SEEK_DATA/SEEK_HOLE once and served as zero pages.
PageSource flat_file_source(int fd, const std::string& name, uint64_t mem_size);

// Counters of one fault are updated just after the faulting thread was woken (the
// kernel wakes it inside UFFDIO_COPY): they lag by microseconds, exact after stop().
struct UffdStats {
    uint64_t faults = 0;            // demand faults served
    uint64_t pages_copied = 0;      // pages installed with UFFDIO_COPY (faults + prefetch)
    uint64_t zero_pages = 0;        // pages installed with UFFDIO_ZEROPAGE (faults + prefetch)
    uint64_t bytes_copied = 0;      // pages_copied * 4096
    uint64_t prefetched_pages = 0;  // pages installed by a prefetch (copied or zero)
    uint64_t prefetch_ioctls = 0;   // UFFDIO_COPY/ZEROPAGE calls made by prefetches
    uint64_t already_present = 0;   // EEXIST: installed meanwhile by the other side
    uint64_t retries = 0;           // EAGAIN: retried
    // Handler time per fault, message read -> installed: wall time, so it includes any
    // preemption by the thread the ioctl woke (a vCPU on the same core runs to its next fault).
    uint64_t fault_ns_total = 0;
    uint64_t fault_ns_max = 0;
    uint64_t prefetch_ns = 0;       // wall time spent in prefetches
};

struct UffdOptions {
    // Remember the order of demand faults (page numbers) for access_log().
    // Pages installed by a prefetch never fault, so they are not in it.
    bool record_access = false;
    // Called once, on the thread that failed (handler or prefetch), with one line
    // naming the cause.  The handler stops serving: the caller must stop the vCPUs.
    // Must not throw (a throw is caught and logged).
    std::function<void(const std::string&)> on_failure;
};

struct PrefetchOptions {
    // Largest single UFFDIO_COPY / UFFDIO_ZEROPAGE.  4096 = one ioctl per page.
    uint64_t batch_bytes = 2ull << 20;
    // Pages are taken from the log in windows of this many entries, each sorted so
    // that contiguous pages coalesce, windows in log order (pages needed first go
    // first).  0 = one window: the whole log sorted (best for a synchronous
    // prefetch, where order does not matter).
    uint64_t window_pages = 512;
};

// Serves missing-page faults on [base, base+size) from a PageSource; does not own
// the memory.  Threads: one handler thread (after start()), one prefetch thread while
// an async prefetch runs.  Every method is called from one controlling thread;
// stats() and failed() from any.
class UffdMemory {
public:
    // Registers the range (size == source.pages * 4096, base page-aligned) and maps
    // every source file read-only.  Throws on any failure; nothing is left registered.
    UffdMemory(Userfaultfd uffd, uint8_t* base, uint64_t size, PageSource source, UffdOptions opts = {});
    ~UffdMemory();  // stop()
    UffdMemory(const UffdMemory&) = delete;
    UffdMemory& operator=(const UffdMemory&) = delete;

    // Installs the pages of `log` (in log order, duplicates and out-of-range pages
    // ignored) on the calling thread and returns when done.  Before start(): nothing
    // can fault meanwhile; after: races safely with the handler.  Throws on failure.
    void prefetch_all_before_start(std::span<const uint32_t> log, PrefetchOptions opts = {.window_pages = 0});

    // Starts the handler thread.  Once.
    void start();

    // Installs `log` on a prefetch thread while the handler serves demand faults
    // (a fault on a page not yet prefetched is served at once, out of order; a page
    // installed by both sides is counted once, the other side sees EEXIST).
    // Failures go to on_failure.  One async prefetch at a time.
    void start_prefetch(std::vector<uint32_t> log, PrefetchOptions opts = {});
    // Blocks until the async prefetch has finished (or was stopped).
    void wait_prefetch();

    // Stops the prefetch thread, then the handler thread: faults already pending are
    // still served (unless the handler failed), then the uffd is closed.  Call it
    // after every thread that touches guest memory (vCPUs) has been joined: a fault
    // raised after stop() sees ordinary anonymous memory — zero-filled.  Idempotent.
    void stop();

    UffdStats stats() const;
    bool failed() const { return failed_.load(std::memory_order_acquire); }
    std::string failure() const;

    // Demand-faulted pages in first-fault order (record_access).  After stop().
    AccessLog access_log() const;

    uint8_t* base() const { return base_; }
    uint64_t size() const { return size_; }

private:
    struct Counters {
        std::atomic<uint64_t> faults{0}, pages_copied{0}, zero_pages{0}, prefetched_pages{0}, prefetch_ioctls{0},
            already_present{0}, retries{0}, fault_ns_total{0}, fault_ns_max{0}, prefetch_ns{0};
    };
    enum class Caller { kFault, kPrefetch };

    void handler_main() noexcept;
    void prefetch_main(std::vector<uint32_t> log, PrefetchOptions opts) noexcept;
    void serve_pending();
    void serve_fault(uint64_t addr, uint64_t t0);
    void prefetch(std::span<const uint32_t> log, const PrefetchOptions& opts, const std::atomic<bool>* cancel);
    // Installs pages [page, page+n) from `src` (nullptr: zero pages); returns the
    // pages this call installed (the rest were present).
    uint64_t install(uint64_t page, uint64_t n, const uint8_t* src, Caller who);
    // The mapped bytes of pages [page, page+n) at `loc`; DataError if past the file.
    const uint8_t* source_ptr(uint64_t page, uint64_t n, const PageLocation& loc) const;
    void fail(const std::string& why) noexcept;

    Userfaultfd uffd_;
    uint8_t* base_;
    uint64_t size_;
    PageSource source_;
    UffdOptions opts_;
    std::vector<Mapping> maps_;  // per source file, read-only; empty when it cannot be mapped
    std::vector<uint64_t> file_sizes_;
    UniqueFd stop_fd_;           // eventfd: wakes the handler's poll
    std::thread handler_;
    std::thread prefetcher_;
    std::atomic<bool> stop_prefetch_{false};
    std::atomic<bool> failed_{false};
    mutable std::mutex mu_;  // guards failure_ and access_
    std::string failure_;
    std::vector<uint32_t> access_;
    std::vector<uint64_t> recorded_;  // bit per page already in access_ (handler thread only)
    Counters c_;
    bool stopped_ = false;
};

// One memory region as Firecracker describes it to an external page-fault handler
// (docs/snapshotting/handling-page-faults-on-snapshot-resume.md).
struct UffdRegion {
    uint64_t base_host_virt_addr = 0;
    uint64_t size = 0;
    uint64_t offset = 0;  // offset of this region's bytes in the `mem` file
    uint64_t page_size = kUffdPageSize;
};

// GuestMemory's RAM regions in `mem` file order (regions concatenated).
std::vector<UffdRegion> uffd_regions_of(const GuestMemory& mem);

// The JSON array Firecracker sends: [{"base_host_virt_addr":..,"size":..,"offset":..,
// "page_size":..,"page_size_kib":..}] (page_size_kib is Firecracker's deprecated
// duplicate of page_size, in bytes despite its name; sent for older handlers).
std::string uffd_handshake_json(std::span<const UffdRegion> regions);

// The VMM side of `uffd:SOCKET`: connects to the handler's Unix stream socket and
// sends ONE message, the JSON above with `uffd` attached as SCM_RIGHTS.  Returns the
// connected socket; keeping it open is optional (the handler may watch it, or the
// VMM's pid from SO_PEERCRED, to learn that the VMM exited).  SysError naming the
// socket on failure.
UniqueFd send_uffd_to_handler(const std::string& socket_path, std::span<const UffdRegion> regions, int uffd);

}  // namespace kindling
