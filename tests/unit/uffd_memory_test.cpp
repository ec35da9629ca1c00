// Restore-time memory backends without KVM: anonymous guest memory registered with
// userfaultfd and touched from plain threads — bytes equal the source, zero pages are
// zero, counters, EEXIST after prefetch, the recorded order, prefetch then touch
// without faults, a clean stop with faults outstanding, failures reported through the
// callback — plus the access-log codec and Firecracker's external-handler protocol
// against tests/helpers/uffd_handler.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/io.h"
#include "kvm/guest_memory.h"
#include "kvm/kvm.h"
#include "kvm/nano_boot.h"
#include "snapshot/access_log.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/vmstate.h"
#include "snapshot/uffd_memory.h"
#include "eventually.h"

using namespace kindling;
namespace fs = std::filesystem;

extern char** environ;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1ull << 20;

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-uffd.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// The byte pattern of data page p: no two pages alike, no page all zero.
void fill_page(uint8_t* dst, uint64_t p) {
    for (uint64_t i = 0; i < kPage / 8; i++) {
        uint64_t v = (p + 1) * 0x9E3779B97F4A7C15ull ^ (i * 0xBF58476D1CE4E5B9ull) ^ 1;
        std::memcpy(dst + i * 8, &v, 8);
    }
}

// A sparse `mem` file of `pages` pages: page p holds data when is_data(p), else it
// is a hole.
struct MemFile {
    std::string path;
    UniqueFd fd;
    uint64_t pages;
    std::vector<bool> data;

    MemFile(const std::string& dir, uint64_t n, const std::function<bool(uint64_t)>& is_data)
        : path(dir + "/mem"), pages(n), data(n) {
        UniqueFd w = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
        std::vector<uint8_t> buf(kPage);
        for (uint64_t p = 0; p < n; p++) {
            data[p] = is_data(p);
            if (!data[p]) continue;
            fill_page(buf.data(), p);
            pwrite_full(w.get(), buf.data(), kPage, static_cast<off_t>(p * kPage), path);
        }
        if (::ftruncate(w.get(), static_cast<off_t>(n * kPage)) < 0) throw_errno(path);
        fd = open_file(path, O_RDONLY);
    }
    uint64_t data_pages() const { return static_cast<uint64_t>(std::count(data.begin(), data.end(), true)); }
};

// Checks every page of `mem` against the file's content; returns the first bad page.
std::optional<uint64_t> first_mismatch(const uint8_t* mem, const MemFile& f) {
    std::vector<uint8_t> want(kPage);
    for (uint64_t p = 0; p < f.pages; p++) {
        if (f.data[p])
            fill_page(want.data(), p);
        else
            std::fill(want.begin(), want.end(), 0);
        if (std::memcmp(mem + p * kPage, want.data(), kPage) != 0) return p;
    }
    return std::nullopt;
}

// Touches one byte of each page in `order` from another thread (as a vCPU would).
void touch_from_thread(const uint8_t* mem, const std::vector<uint32_t>& order) {
    std::thread t([&] {
        for (uint32_t p : order) {
            volatile uint8_t b = mem[p * kPage + 17];
            (void)b;
        }
    });
    t.join();
}

std::vector<uint32_t> iota_pages(uint64_t n) {
    std::vector<uint32_t> v(n);
    for (uint64_t i = 0; i < n; i++) v[i] = static_cast<uint32_t>(i);
    return v;
}

// userfaultfd for faults from plain threads; nullopt (and a MESSAGE) when this host
// does not permit it.
std::optional<Userfaultfd> open_uffd() {
    try {
        return Userfaultfd::open(/*allow_user_mode_only=*/true);
    } catch (const UnavailableError& e) {
        MESSAGE("skipped: " << e.what());
        return std::nullopt;
    }
}

// Fault counters settle just after the faulting thread resumed (the kernel wakes it
// inside UFFDIO_COPY); wait for them, bounded.
void wait_for_faults(const UffdMemory& um, uint64_t n) {
    CHECK(eventually([&] { return um.stats().faults >= n; }));
    REQUIRE(um.stats().faults == n);
}

// True once a fault message is queued on the uffd (it polls readable), false if none
// is by the deadline.  Only meaningful while no handler thread reads the uffd.
bool fault_pending(int uffd, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    pollfd p{uffd, POLLIN, 0};
    int n;
    do {
        n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (n < 0 && errno == EINTR);
    return n == 1 && (p.revents & POLLIN);
}

uint64_t anon_huge_kib(const void* addr) {
    // AnonHugePages of the smaps entry that contains addr.
    std::string smaps = read_file("/proc/self/smaps");
    auto a = reinterpret_cast<uint64_t>(addr);
    size_t pos = 0;
    bool in = false;
    while (pos < smaps.size()) {
        size_t end = smaps.find('\n', pos);
        if (end == std::string::npos) end = smaps.size();
        std::string line = smaps.substr(pos, end - pos);
        pos = end + 1;
        unsigned long lo, hi;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        unsigned long kb;
        if (in && std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kb) == 1) return kb;
    }
    return 0;
}

}  // namespace

TEST_CASE("access log: round trip, and every malformed file is a DataError naming it") {
    TempDir t;
    AccessLog log{64 * kMiB, {5, 3, 16383, 0, 7}};
    std::string path = t.path + "/access";
    write_access_log(path, log);
    AccessLog back = read_access_log(path, 64 * kMiB);
    CHECK(back.mem_size == log.mem_size);
    CHECK(back.pages == log.pages);
    std::string good = read_file(path);
    CHECK(good.size() == 32 + 4 * 5 + 4);
    CHECK_THROWS_WITH_AS(read_access_log(path, 128 * kMiB), doctest::Contains("recorded on 64 MiB"), DataError);

    auto decode = [](std::string b) {
        return decode_access_log(std::span(reinterpret_cast<const uint8_t*>(b.data()), b.size()), "/x/access");
    };
    auto expect = [&](std::string b, const char* why) {
        CHECK_THROWS_WITH_AS(decode(b), doctest::Contains(why), DataError);
        CHECK_THROWS_WITH_AS(decode(b), doctest::Contains("/x/access: access log"), DataError);
    };
    expect(good.substr(0, 20), "truncated");
    expect(good.substr(0, good.size() - 1), "does not match");
    std::string b = good;
    b[0] = 'X';
    expect(b, "bad magic");
    b = good;
    b[8] = 2;
    expect(b, "unsupported version 2");
    b = good;
    b[33] ^= 1;
    expect(b, "CRC32C mismatch");
    // Out-of-range and repeated pages, with a valid CRC.
    expect(encode_access_log({64 * kMiB, {1, 16384}}), "page 16384 beyond");
    expect(encode_access_log({64 * kMiB, {1, 2, 1}}), "entry 2: page 1 repeated");
    CHECK(decode(encode_access_log({4 * kMiB, {}})).pages.empty());
}

TEST_CASE("uffd: lazy faults from a thread get the source's bytes; holes are zero pages; counters") {
    auto uffd = open_uffd();
    if (!uffd) return;
    MESSAGE("userfaultfd from " << std::string(uffd_origin_name(uffd->origin()))
                                << std::string(uffd->handles_kernel_faults() ? "" : " (KVM faults would NOT be served)"));
    TempDir t;
    const uint64_t pages = 1024;  // 4 MiB: two THP-sized extents
    MemFile f(t.path, pages, [](uint64_t p) { return p % 7 != 3 && (p < 600 || p > 700); });
    GuestMemory mem(pages * kPage);  // MADV_HUGEPAGE, as on restore
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
    um.start();
    touch_from_thread(mem.base(), iota_pages(pages));
    auto bad = first_mismatch(mem.base(), f);
    CHECK_MESSAGE(!bad, "page " << bad.value_or(0) << " differs from the source");
    // A second pass does not fault: every page is installed.
    touch_from_thread(mem.base(), iota_pages(pages));
    // Writes after the pages were installed are private to this memory (copy-on-write
    // of the zero page, or a write to the private copy; not a uffd fault: the fault
    // count below stays at one per page) and never reach the file; the rest of each
    // page keeps what the handler installed.
    REQUIRE(!f.data[3]);
    REQUIRE(f.data[4]);
    mem.base()[3 * kPage + 100] = 0x5a;
    mem.base()[4 * kPage + 100] ^= 0xff;
    std::vector<uint8_t> want(kPage, 0);
    want[100] = 0x5a;
    CHECK(std::memcmp(mem.base() + 3 * kPage, want.data(), kPage) == 0);
    fill_page(want.data(), 4);
    want[100] ^= 0xff;
    CHECK(std::memcmp(mem.base() + 4 * kPage, want.data(), kPage) == 0);
    std::vector<uint8_t> file = read_file_bytes(f.path);
    CHECK(std::all_of(file.begin() + 3 * kPage, file.begin() + 4 * kPage, [](uint8_t b) { return b == 0; }));
    fill_page(want.data(), 4);
    CHECK(std::memcmp(file.data() + 4 * kPage, want.data(), kPage) == 0);
    um.stop();  // counters of the last fault settle just after its thread resumed
    UffdStats s = um.stats();
    CHECK(s.faults == pages);
    CHECK(s.pages_copied == f.data_pages());
    CHECK(s.zero_pages == pages - f.data_pages());
    CHECK(s.bytes_copied == f.data_pages() * kPage);
    CHECK(s.prefetched_pages == 0);
    CHECK(s.already_present == 0);
    CHECK(s.fault_ns_total > 0);
    CHECK(s.fault_ns_max * pages >= s.fault_ns_total);
    CHECK(!um.failed());
    MESSAGE("THP: AnonHugePages over the registered memory after faults: " << anon_huge_kib(mem.base()) << " kB");
}

TEST_CASE("uffd: recorded first-fault order equals the touch order, and survives the log file") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 512;
    MemFile f(t.path, pages, [](uint64_t p) { return p % 3 != 0; });
    GuestMemory mem(pages * kPage);
    UffdOptions opts;
    opts.record_access = true;
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()), opts);
    um.start();
    std::vector<uint32_t> order = iota_pages(pages);
    std::mt19937 rng(42);
    std::shuffle(order.begin(), order.end(), rng);
    order.resize(300);  // a working set, not all of memory
    touch_from_thread(mem.base(), order);
    touch_from_thread(mem.base(), order);  // second touches are not first faults
    um.stop();
    AccessLog log = um.access_log();
    CHECK(log.mem_size == mem.size());
    CHECK(log.pages == order);
    write_access_log(t.path + "/access", log);
    CHECK(read_access_log(t.path + "/access", mem.size()).pages == order);
}

TEST_CASE("uffd: prefetch before start installs the working set in coalesced batches; touching it then never faults") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 2048;
    // Pages [0,1024) data, [1024,1536) holes, [1536,2048) data.
    MemFile f(t.path, pages, [](uint64_t p) { return p < 1024 || p >= 1536; });
    GuestMemory mem(pages * kPage);
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
    std::vector<uint32_t> ws = iota_pages(pages);
    std::reverse(ws.begin(), ws.end());  // order does not matter to a sorted, synchronous prefetch
    um.prefetch_all_before_start(ws);
    UffdStats s = um.stats();
    CHECK(s.prefetched_pages == pages);
    CHECK(s.pages_copied == 1536);
    CHECK(s.zero_pages == 512);
    // 2 MiB batches: data 0-511, 512-1023, zero 1024-1535, data 1536-2047.
    CHECK(s.prefetch_ioctls == 4);
    um.start();
    touch_from_thread(mem.base(), iota_pages(pages));
    CHECK(um.stats().faults == 0);
    auto bad = first_mismatch(mem.base(), f);
    CHECK_MESSAGE(!bad, "page " << bad.value_or(0) << " differs from the source");

    // Prefetching again finds every page present (EEXIST) and installs nothing.
    um.prefetch_all_before_start(ws, {.batch_bytes = kPage, .window_pages = 0});
    s = um.stats();
    CHECK(s.prefetched_pages == pages);
    CHECK(s.already_present == pages);
    CHECK(s.pages_copied + s.zero_pages == pages);
}

TEST_CASE("uffd: prefetch over pages already faulted in skips them (EEXIST) and fills the rest") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 1024;
    MemFile f(t.path, pages, [](uint64_t p) { return p % 5 != 0; });
    GuestMemory mem(pages * kPage);
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
    um.start();
    std::vector<uint32_t> early;
    for (uint32_t p = 100; p < 1024; p += 37) early.push_back(p);
    touch_from_thread(mem.base(), early);
    wait_for_faults(um, early.size());
    um.prefetch_all_before_start(iota_pages(pages));
    UffdStats s = um.stats();
    CHECK(s.faults == early.size());
    CHECK(s.already_present == early.size());
    CHECK(s.prefetched_pages == pages - early.size());
    CHECK(s.pages_copied + s.zero_pages == pages);
    auto bad = first_mismatch(mem.base(), f);
    CHECK_MESSAGE(!bad, "page " << bad.value_or(0) << " differs from the source");
}

TEST_CASE("uffd: async prefetch races demand faults touching in the opposite order; each page installed once") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 8192;  // 32 MiB
    MemFile f(t.path, pages, [](uint64_t p) { return (p / 64) % 4 != 1; });
    GuestMemory mem(pages * kPage);
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
    um.start();
    um.start_prefetch(iota_pages(pages));
    std::vector<uint32_t> rev = iota_pages(pages);
    std::reverse(rev.begin(), rev.end());
    touch_from_thread(mem.base(), rev);
    um.wait_prefetch();
    um.stop();
    UffdStats s = um.stats();
    CHECK(s.pages_copied + s.zero_pages == pages);  // each page installed by exactly one side
    CHECK(s.prefetched_pages < pages);               // the faults won some pages...
    CHECK(s.faults > 0);
    CHECK(s.prefetched_pages > 0);  // ...and the prefetch the others
    auto bad = first_mismatch(mem.base(), f);
    CHECK_MESSAGE(!bad, "page " << bad.value_or(0) << " differs from the source");
    MESSAGE("async race: " << s.faults << " demand faults, " << s.prefetched_pages << " prefetched, "
                           << s.already_present << " EEXIST");
    CHECK(!um.failed());
}

TEST_CASE("uffd: stop() with a fault outstanding serves it and returns; stop() during a prefetch returns") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 16;
    MemFile f(t.path, pages, [](uint64_t) { return true; });
    GuestMemory mem(pages * kPage);
    {
        const int uffd_fd = uffd->fd();
        UffdMemory um(std::move(*uffd), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
        // No handler yet: the touching thread blocks in its fault.
        std::atomic<bool> done{false};
        uint8_t got[8];
        std::thread toucher([&] {
            std::memcpy(got, mem.base() + 5 * kPage, sizeof got);
            done = true;
        });
        REQUIRE(fault_pending(uffd_fd));  // the fault is queued, so stop() has one to serve
        CHECK(!done);
        um.stop();
        toucher.join();
        CHECK(done);
        uint8_t want[kPage];
        fill_page(want, 5);
        CHECK(std::memcmp(got, want, sizeof got) == 0);
        CHECK(um.stats().faults == 1);
        um.stop();  // idempotent
    }
    // A large async prefetch is cancelled between batches.
    auto uffd2 = open_uffd();
    REQUIRE(uffd2);
    TempDir t2;
    const uint64_t big = 65536;  // 256 MiB of holes: zero-page batches
    MemFile g(t2.path, big, [](uint64_t) { return false; });
    GuestMemory mem2(big * kPage);
    UffdMemory um2(std::move(*uffd2), mem2.base(), mem2.size(), flat_file_source(g.fd.get(), g.path, mem2.size()));
    um2.start();
    um2.start_prefetch(iota_pages(big), {.batch_bytes = kPage, .window_pages = 512});
    CHECK(eventually([&] { return um2.stats().prefetched_pages > 0; }));  // stop a prefetch under way
    auto t0 = std::chrono::steady_clock::now();
    um2.stop();
    MESSAGE("stop during a 256 MiB page-by-page prefetch: " << ms_since(t0) << " ms, "
                                                            << um2.stats().prefetched_pages << " pages were in");
    CHECK(ms_since(t0) < 1000);
    CHECK(!um2.failed());
}

TEST_CASE("uffd: a page the source cannot supply fails the VM through the callback, never by a throw") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t pages = 8;
    MemFile f(t.path, pages, [](uint64_t) { return true; });
    GuestMemory mem(pages * kPage);
    PageSource src = flat_file_source(f.fd.get(), f.path, mem.size());
    src.locate = [](uint64_t p) -> PageLocation { return {0, (p + 100) * kPage}; };  // past the file's end
    std::atomic<int> calls{0};
    std::string why;
    UffdOptions opts;
    opts.on_failure = [&](const std::string& w) {
        why = w;
        calls++;
    };
    UffdMemory um(std::move(*uffd), mem.base(), mem.size(), std::move(src), opts);
    um.start();
    std::thread toucher([&] {
        volatile uint8_t b = mem.base()[2 * kPage];
        (void)b;
    });
    CHECK(eventually([&] { return um.failed(); }));
    CHECK(calls == 1);
    CHECK(why.find(f.path + ": page 2 at offset 417792: beyond the end of the file") != std::string::npos);
    CHECK(um.failure() == why);
    // Stopping releases the blocked thread (it sees an ordinary zero page); the
    // caller stops the VM anyway.
    um.stop();
    toucher.join();
    CHECK_THROWS_AS(um.prefetch_all_before_start(iota_pages(pages)), ConfigError);
}

TEST_CASE("uffd: a stack of layers (base + runtime + function) restores lazily and by prefetch to the snapshotted memory") {
    auto uffd = open_uffd();
    if (!uffd) return;
    TempDir t;
    const uint64_t mem_size = 8 * kMiB, pages = mem_size / kPage;
    LayerConfig cfg;
    cfg.mem_size_mib = mem_size >> 20;
    MachineState ms;
    ms.kind = MachineKind::kNano;
    ms.mem_size = mem_size;
    ms.vcpus.emplace_back();
    std::vector<uint8_t> vs = encode_vmstate(ms);
    WriteOptions wo;
    wo.fsync = false;

    // The VM's memory as it evolves: base, then the runtime and function layers each
    // rewrite some pages and zero others.
    GuestMemory vm(mem_size);
    for (uint64_t p = 0; p < pages; p += 2) fill_page(vm.base() + p * kPage, p);
    write_full_layer(t.path + "/base", cfg, vs, vm, wo);
    DirtyBitmap d1(pages);
    for (uint64_t p = 0; p < pages; p += 5) {
        if (p % 3 == 0) std::memset(vm.base() + p * kPage, 0, kPage);
        else fill_page(vm.base() + p * kPage, p + 100000);
        d1.set(p);
    }
    write_diff_layer(t.path + "/runtime", cfg, t.path + "/base", vs, vm, d1.words(), wo);
    DirtyBitmap d2(pages);
    for (uint64_t p = 1; p < pages; p += 11) {
        fill_page(vm.base() + p * kPage, p + 200000);
        d2.set(p);
    }
    write_diff_layer(t.path + "/function", cfg, t.path + "/runtime", vs, vm, d2.words(), wo);

    LayerStack stack = LayerStack::open(t.path + "/function");
    REQUIRE(stack.layers().size() == 3);
    for (bool prefetch : {false, true}) {
        CAPTURE(prefetch);
        auto u = prefetch ? Userfaultfd::open(true) : std::move(*uffd);
        GuestMemory restored(mem_size);
        UffdMemory um(std::move(u), restored.base(), restored.size(), layer_stack_source(stack));
        if (prefetch) um.prefetch_all_before_start(iota_pages(pages));
        um.start();
        std::vector<uint8_t> copy(mem_size);
        std::thread([&] { std::memcpy(copy.data(), restored.base(), mem_size); }).join();
        um.stop();
        uint64_t first_bad = pages;
        for (uint64_t p = 0; p < pages && first_bad == pages; p++)
            if (std::memcmp(copy.data() + p * kPage, vm.base() + p * kPage, kPage) != 0) first_bad = p;
        CHECK_MESSAGE(first_bad == pages, "page " << first_bad << " differs from the snapshotted memory");
        UffdStats s = um.stats();
        CHECK(s.pages_copied + s.zero_pages == pages);
        CHECK(s.faults == (prefetch ? 0 : pages));
        // Pages no layer holds, or whose top layer holds a hole, are zero pages: no bytes read.
        uint64_t zero = 0;
        for (uint64_t p = 0; p < pages; p++) zero += stack.page(p).zero();
        CHECK(s.zero_pages == zero);
        if (prefetch) MESSAGE("3-layer prefetch of 8 MiB: " << s.prefetch_ioctls << " ioctls");
    }
}

namespace {

// A ring-3 long-mode guest that sums the first qword of `rcx` pages from `rsi` on,
// 4 KiB apart, and reports the sum on port 0x80 as two 32-bit OUTs:
//   xor eax,eax; l: add rax,[rsi]; add rsi,0x1000; dec rcx; jnz l;
//   out dx,eax; shr rax,32; out dx,eax; jmp $
const uint8_t kSumCode[] = {0x31, 0xC0, 0x48, 0x03, 0x06, 0x48, 0x81, 0xC6, 0x00, 0x10, 0x00, 0x00, 0x48, 0xFF,
                            0xC9, 0x75, 0xF1, 0xEF, 0x48, 0xC1, 0xE8, 0x20, 0xEF, 0xEB, 0xFE};
constexpr uint64_t kGuestMem = 80 * kMiB;
constexpr uint64_t kGuestPml4 = 0x4000, kGuestCode = 0x100000, kGuestData = 16 * kMiB;
constexpr uint64_t kGuestDataPages = 64 * kMiB / kPage;

bool have_kvm() {
    const char* dev = std::getenv("KINDLING_KVM_DEV");
    return ::access(dev && *dev ? dev : "/dev/kvm", R_OK | W_OK) == 0;
}

// The snapshot image: identity map with 2 MiB user pages, the code, 64 MiB of data
// with every fourth page left zero (a hole in the file).  Returns the expected sum.
uint64_t write_guest_image(const std::string& path) {
    std::vector<uint8_t> img(kGuestMem, 0);
    auto put64 = [&](uint64_t at, uint64_t v) { std::memcpy(img.data() + at, &v, 8); };
    put64(kGuestPml4, (kGuestPml4 + 0x1000) | 7);
    put64(kGuestPml4 + 0x1000, (kGuestPml4 + 0x2000) | 7);
    for (uint64_t i = 0; i < kGuestMem / (2 * kMiB); i++) put64(kGuestPml4 + 0x2000 + i * 8, (i * 2 * kMiB) | 7 | 0x80);
    std::memcpy(img.data() + kGuestCode, kSumCode, sizeof kSumCode);
    uint64_t sum = 0;
    for (uint64_t p = 0; p < kGuestDataPages; p++) {
        if (p % 4 == 3) continue;
        uint8_t* page = img.data() + kGuestData + p * kPage;
        fill_page(page, p);
        uint64_t v;
        std::memcpy(&v, page, 8);
        sum += v;
    }
    UniqueFd fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
    static const uint8_t zero[kPage] = {};
    for (uint64_t off = 0; off < kGuestMem; off += kPage)
        if (std::memcmp(img.data() + off, zero, kPage) != 0) pwrite_full(fd.get(), img.data() + off, kPage, off, path);
    if (::ftruncate(fd.get(), kGuestMem) < 0) throw_errno(path);
    return sum;
}

struct GuestRun {
    uint64_t sum = 0;
    double run_ms = 0;  // first KVM_RUN -> answer
    UffdStats stats;
    AccessLog log;
};

// Restores the image into fresh memory served by UffdMemory (optionally prefetching
// `prefetch` before start), runs the guest to its answer, stops in the documented
// order: vCPU done, then the handler.
GuestRun restore_and_run(const Kvm& kvm, const std::string& path, const std::vector<uint32_t>* prefetch,
                         bool async = false) {
    GuestRun out;
    UniqueFd fd = open_file(path, O_RDONLY);
    GuestMemory mem(kGuestMem);
    UffdOptions opts;
    opts.record_access = true;
    UffdMemory um(Userfaultfd::open(), mem.base(), mem.size(), flat_file_source(fd.get(), path, mem.size()), opts);
    Vm vm(kvm);
    vm.set_memory(mem);
    Vcpu vcpu(vm, 0);
    if (prefetch && !async) um.prefetch_all_before_start(*prefetch);
    um.start();
    if (prefetch && async) um.start_prefetch(*prefetch);
    vcpu.set_cpuid(Vcpu::cpuid_for(kvm, 0, 1));
    kvm_regs r{};
    kvm_sregs sr = vcpu.get_sregs();
    NanoBootState st;
    st.rip = kGuestCode;
    st.rsp = kGuestCode;
    st.cr3 = kGuestPml4;
    apply_nano_boot_state(st, r, sr);
    r.rsi = kGuestData;
    r.rcx = kGuestDataPages;
    r.rdx = 0x80;
    vcpu.set_sregs(sr);
    vcpu.set_regs(r);
    auto t0 = std::chrono::steady_clock::now();
    uint64_t halves[2];
    for (int got = 0, i = 0; got < 2 && i < 1000; i++) {
        if (!vcpu.run()) continue;
        kvm_run* run = vcpu.run_state();
        REQUIRE_MESSAGE(run->exit_reason == KVM_EXIT_IO, "exit reason " << run->exit_reason);
        uint32_t v;
        std::memcpy(&v, reinterpret_cast<uint8_t*>(run) + run->io.data_offset, 4);
        halves[got++] = v;
    }
    out.run_ms = ms_since(t0);
    out.sum = halves[0] | static_cast<uint64_t>(halves[1]) << 32;
    um.stop();
    out.stats = um.stats();
    out.log = um.access_log();
    CHECK(!um.failed());
    return out;
}

}  // namespace

TEST_CASE("uffd with KVM: a guest's faults (page walks and data) are served; record, then prefetch the recorded set") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    try {
        Userfaultfd::open();
    } catch (const UnavailableError& e) {
        MESSAGE("skipped: no userfaultfd that serves faults raised inside KVM: " << e.what());
        return;
    }
    Kvm kvm;
    TempDir t;
    const std::string path = t.path + "/mem";
    uint64_t want = write_guest_image(path);

    GuestRun lazy = restore_and_run(kvm, path, nullptr);
    CHECK(lazy.sum == want);
    // Page tables, code, every data page; zero pages too (a hole is still a fault).
    CHECK(lazy.stats.faults >= kGuestDataPages + 3);
    CHECK(lazy.stats.zero_pages >= kGuestDataPages / 4);
    REQUIRE(lazy.log.pages.size() == lazy.stats.faults);
    // The data pages appear in the order the guest read them.
    std::vector<uint32_t> data;
    for (uint32_t p : lazy.log.pages)
        if (p >= kGuestData / kPage) data.push_back(p);
    CHECK(data.size() == kGuestDataPages);
    CHECK(std::is_sorted(data.begin(), data.end()));
    MESSAGE("KVM lazy: 64 MiB working set answered in " << lazy.run_ms << " ms = "
                                                         << lazy.run_ms * 1000 / lazy.stats.faults << " us per fault ("
                                                         << lazy.stats.faults << " faults, handler "
                                                         << lazy.stats.fault_ns_total / lazy.stats.faults << " ns/fault)");

    auto t0 = std::chrono::steady_clock::now();
    GuestRun pre = restore_and_run(kvm, path, &lazy.log.pages);
    double total_ms = ms_since(t0);
    CHECK(pre.sum == want);
    CHECK(pre.stats.faults == 0);
    CHECK(pre.stats.prefetched_pages == lazy.stats.faults);
    MESSAGE("KVM prefetch (sync, before start): prefetch " << pre.stats.prefetch_ns / 1e6 << " ms ("
                                                          << pre.stats.prefetch_ioctls << " ioctls), then answered in "
                                                          << pre.run_ms << " ms; prefetch + run "
                                                          << pre.stats.prefetch_ns / 1e6 + pre.run_ms << " ms = "
                                                          << lazy.run_ms / (pre.stats.prefetch_ns / 1e6 + pre.run_ms)
                                                          << "x faster than lazy (whole restore " << total_ms << " ms)");

    GuestRun async = restore_and_run(kvm, path, &lazy.log.pages, true);
    CHECK(async.sum == want);
    CHECK(async.stats.pages_copied + async.stats.zero_pages == lazy.stats.faults);
    MESSAGE("KVM prefetch (async, vCPU running): answered in " << async.run_ms << " ms = "
                                                              << lazy.run_ms / async.run_ms << "x faster than lazy; "
                                                              << async.stats.faults << " demand faults, "
                                                              << async.stats.prefetched_pages << " pages prefetched");
}

TEST_CASE("uffd: Userfaultfd rejects unaligned ranges; UffdMemory rejects a source of another size") {
    auto uffd = open_uffd();
    if (!uffd) return;
    GuestMemory mem(16 * kPage);
    CHECK_THROWS_AS(uffd->register_missing(mem.base() + 1, kPage), ConfigError);
    PageSource src;
    src.pages = 8;
    src.locate = [](uint64_t) { return PageLocation{}; };
    CHECK_THROWS_WITH_AS(UffdMemory(std::move(*uffd), mem.base(), mem.size(), src),
                         doctest::Contains("page source has 8 pages, memory has 16"), ConfigError);
}

TEST_CASE("uffd external handler: Firecracker's handshake JSON") {
    std::vector<UffdRegion> regions = {{0x7f0000000000, 3ull << 30, 0, 4096}, {0x7f00c0000000, 1ull << 30, 3ull << 30, 4096}};
    auto j = nlohmann::json::parse(uffd_handshake_json(regions));
    REQUIRE(j.is_array());
    REQUIRE(j.size() == 2);
    CHECK(j[1]["base_host_virt_addr"] == 0x7f00c0000000ull);
    CHECK(j[1]["size"] == 1ull << 30);
    CHECK(j[1]["offset"] == 3ull << 30);
    CHECK(j[1]["page_size"] == 4096);
    CHECK(j[1]["page_size_kib"] == 4096);  // Firecracker's deprecated alias, in bytes
    GuestMemory small(8 * kPage);
    auto r = uffd_regions_of(small);
    REQUIRE(r.size() == 1);
    CHECK(r[0].base_host_virt_addr == reinterpret_cast<uint64_t>(small.base()));
    CHECK(r[0].size == 8 * kPage);
    CHECK(r[0].offset == 0);
}

TEST_CASE("uffd external handler: tests/helpers/uffd_handler receives the uffd by SCM_RIGHTS and serves faults") {
    std::string helper = fs::read_symlink("/proc/self/exe").parent_path().string() + "/helpers/uffd_handler";
    if (::access(helper.c_str(), X_OK) != 0) {
        MESSAGE("skipped: " << helper << " is not built (make all)");
        return;
    }
    Userfaultfd uffd = [] {
        try {
            return Userfaultfd::open(true);
        } catch (const UnavailableError& e) {
            MESSAGE("skipped: " << e.what());
            throw;
        }
    }();
    TempDir t;
    const uint64_t pages = 768;
    MemFile f(t.path, pages, [](uint64_t p) { return p % 4 != 0; });
    GuestMemory mem(pages * kPage);
    uffd.register_missing(mem.base(), mem.size());

    std::string sock = t.path + "/uffd.sock";
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<char*> argv = {helper.data(), sock.data(), f.path.data(), nullptr};
    pid_t pid;
    REQUIRE(::posix_spawn(&pid, helper.c_str(), &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    auto read_line = [&] {
        std::string line;
        char c;
        while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
        return line;
    };
    CHECK(read_line() == "listening " + sock);

    UniqueFd conn = send_uffd_to_handler(sock, uffd_regions_of(mem), uffd.fd());
    // The VMM serves nothing itself: every first touch is served by the other process.
    std::vector<uint32_t> order = iota_pages(pages);
    std::shuffle(order.begin(), order.end(), std::mt19937(7));
    auto t0 = std::chrono::steady_clock::now();
    touch_from_thread(mem.base(), order);
    double ms = ms_since(t0);
    auto bad = first_mismatch(mem.base(), f);
    CHECK_MESSAGE(!bad, "page " << bad.value_or(0) << " differs from the source");

    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(read_line() == "served " + std::to_string(pages) + " faults, " + std::to_string(pages * kPage) +
                             " bytes, 0 already present");
    ::close(out[0]);
    MESSAGE("external handler process: " << ms * 1000 / pages << " us per 4 KiB fault");
}

TEST_CASE("uffd external handler: a socket nobody listens on is a SysError naming it") {
    auto uffd = open_uffd();
    if (!uffd) return;
    CHECK_THROWS_WITH_AS(send_uffd_to_handler("/nonexistent/uffd.sock", {}, uffd->fd()),
                         doctest::Contains("uffd handler /nonexistent/uffd.sock: connect"), SysError);
}
