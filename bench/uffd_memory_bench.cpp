// bench/uffd_memory: the userfaultfd restore backend (lib/snapshot/uffd_memory.h)
// without KVM.  A 64 MiB working set, every page data, served from a mem file to a
// thread that touches every page: lazy (one fault per 4 KiB page) against prefetch
// before start in 2 MiB and 4 KiB batches and an async prefetch racing the touches,
// with the file in the page cache and evicted from it (a snapshot not restored
// lately).  Ratios are against the lazy run with the file cached.
//
// Usage: uffd_memory-bench [MEM_MIB]     (default 64)
// The mem file is in a temporary directory under $TMPDIR (default /tmp).
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "base/io.h"
#include "kvm/guest_memory.h"
#include "snapshot/uffd_memory.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kPage = kUffdPageSize;
constexpr double kMiB = 1 << 20;

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// A mem file of `pages` pages, every one data (no two alike), removed at exit.
struct MemFile {
    std::string dir, path;
    UniqueFd fd;
    explicit MemFile(uint64_t pages) {
        const char* tmp = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/kindling-uffd-bench.XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw_errno("mkdtemp " + tmpl);
        dir = tmpl;
        path = dir + "/mem";
        UniqueFd w = open_file(path, O_WRONLY | O_CREAT | O_TRUNC);
        std::vector<uint64_t> page(kPage / 8);
        for (uint64_t p = 0; p < pages; p++) {
            for (size_t i = 0; i < page.size(); i++) page[i] = (p + 1) * 0x9E3779B97F4A7C15ull ^ i;
            pwrite_full(w.get(), page.data(), kPage, static_cast<off_t>(p * kPage), path);
        }
        fd = open_file(path, O_RDONLY);
    }
    ~MemFile() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    // Evicts the file from the page cache (clean after fdatasync), so the next reads
    // come from the disk.
    void drop_cache() const {
        ::fdatasync(fd.get());
        ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    }
};

// Touches one byte of every page in `order` from a new thread, as a vCPU would.
// Returns that thread's time from its first touch to its last (thread start and
// join excluded), in milliseconds.
double touch_pages(const uint8_t* mem, const std::vector<uint32_t>& order) {
    double ms = 0;
    std::thread vcpu([&] {
        const auto t0 = std::chrono::steady_clock::now();
        uint8_t sum = 0;
        for (uint32_t p : order) sum += *reinterpret_cast<const volatile uint8_t*>(mem + p * kPage + 17);
        ms = ms_since(t0);
        (void)sum;
    });
    vcpu.join();
    return ms;
}

}  // namespace

int main(int argc, char** argv) {
    const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 64;
    if (mib < 1) {
        std::fprintf(stderr, "usage: uffd_memory-bench [MEM_MIB]\n");
        return 64;
    }
    try {
        try {
            Userfaultfd::open(/*allow_user_mode_only=*/true);
        } catch (const UnavailableError& e) {
            std::printf("uffd_memory: skipped: %s\n", e.what());
            return 0;
        }
        const uint64_t pages = (mib << 20) / kPage;
        MemFile f(pages);
        std::vector<uint32_t> ws(pages);
        for (uint64_t i = 0; i < pages; i++) ws[i] = static_cast<uint32_t>(i);
        std::printf("uffd_memory: %llu MiB working set, every page data, touched from a thread\n",
                    static_cast<unsigned long long>(mib));

        auto lazy_run = [&](bool cold) {
            GuestMemory mem(pages * kPage);
            UffdMemory um(Userfaultfd::open(true), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
            um.start();
            if (cold) f.drop_cache();
            const double ms = touch_pages(mem.base(), ws);
            um.stop();
            UffdStats s = um.stats();
            std::printf("  lazy%-26s %8.1f ms  %6.2f us/fault end to end, handler %llu ns/fault (max %llu us), %llu faults\n",
                        cold ? " (cold cache)" : "", ms, ms * 1000 / static_cast<double>(pages),
                        static_cast<unsigned long long>(s.faults ? s.fault_ns_total / s.faults : 0),
                        static_cast<unsigned long long>(s.fault_ns_max / 1000), static_cast<unsigned long long>(s.faults));
            return ms;
        };
        const double lazy_ms = lazy_run(false);
        lazy_run(true);

        auto prefetch_run = [&](uint64_t batch, bool async, bool cold) {
            GuestMemory mem(pages * kPage);
            UffdMemory um(Userfaultfd::open(true), mem.base(), mem.size(), flat_file_source(f.fd.get(), f.path, mem.size()));
            if (cold) f.drop_cache();
            auto t0 = std::chrono::steady_clock::now();
            if (async) {
                um.start();
                um.start_prefetch(ws, {.batch_bytes = batch, .window_pages = 512});
                touch_pages(mem.base(), ws);  // the "guest" runs meanwhile
                um.wait_prefetch();
            } else {
                um.prefetch_all_before_start(ws, {.batch_bytes = batch, .window_pages = 0});
                um.start();
                touch_pages(mem.base(), ws);
            }
            double ms = ms_since(t0);
            um.stop();
            UffdStats s = um.stats();
            std::string label = std::string(async ? "async" : "sync") + " prefetch " + std::to_string(batch / 1024) +
                                " KiB" + (cold ? " (cold)" : "");
            std::printf("  %-30s %8.1f ms  %6.2fx lazy, %7.0f MiB/s ready+touched, prefetch alone %7.0f MiB/s, "
                        "%llu ioctls, %llu demand faults\n",
                        label.c_str(), ms, lazy_ms / ms, static_cast<double>(mib) / (ms / 1000),
                        static_cast<double>(pages * kPage) / kMiB / (static_cast<double>(s.prefetch_ns) / 1e9),
                        static_cast<unsigned long long>(s.prefetch_ioctls), static_cast<unsigned long long>(s.faults));
            return ms;
        };
        const double big = prefetch_run(2 << 20, false, false);
        const double small = prefetch_run(kPage, false, false);
        prefetch_run(2 << 20, true, false);
        prefetch_run(2 << 20, false, true);
        std::printf("  sync prefetch, 4 KiB batches / 2 MiB batches: %.2fx\n", small / big);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "uffd_memory-bench: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
