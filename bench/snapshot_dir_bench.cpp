// bench/snapshot_dir: the cost of writing and reading snapshot layers (snapshot_dir.h)
// for one guest memory size.  A sparse guest (1% of pages hold data, half of the rest
// was read, so it is resident but zero) is written with the read-all scan, with the
// mincore skip and with fsync; the layer stack is opened; a dense guest (every page
// data) is written and its mem verified (CRC32C of every byte).  Each figure is the
// median of RUNS, and the ratios are against the read-all write of the same run.
//
// Usage: snapshot_dir-bench [MEM_MIB] [RUNS]     (defaults: 128, 5)
// Writes into a temporary directory under $TMPDIR (default /tmp), removed at exit.
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "kvm/guest_memory.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/vmstate.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kPage = kSnapshotPageSize;

struct TempDir {
    std::string path;
    TempDir() {
        const char* tmp = std::getenv("TMPDIR");
        std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/kindling-snapdir-bench.XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

LayerConfig config(uint64_t mib) {
    LayerConfig c;
    c.machine_kind = MachineKind::kNano;
    c.vcpu_count = 1;
    c.mem_size_mib = mib;
    return c;
}

std::vector<uint8_t> vmstate_for(uint64_t mem_size) {
    MachineState s;
    s.kind = MachineKind::kNano;
    s.mem_size = mem_size;
    VcpuState v;
    v.regs.rip = 0x100000;
    v.fpu = kvm_fpu{};  // as on a host without XSAVE: the smallest valid vCPU state
    s.vcpus.push_back(v);
    return encode_vmstate(s);
}

void fill_page(GuestMemory& m, uint64_t page) {
    auto* p = reinterpret_cast<uint64_t*>(m.base() + page * kPage);
    for (size_t i = 0; i < kPage / 8; ++i) p[i] = page * 0x9e3779b97f4a7c15ull + i;
}

// The median wall time of `runs` calls of `fn(i)`, in milliseconds.
double median_ms(int runs, const std::function<void(int)>& fn) {
    std::vector<double> ms;
    for (int i = 0; i < runs; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        fn(i);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const uint64_t mib = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 128;
    const int runs = argc > 2 ? std::atoi(argv[2]) : 5;
    if (mib < 1 || runs < 1) {
        std::fprintf(stderr, "usage: snapshot_dir-bench [MEM_MIB] [RUNS]\n");
        return 64;
    }
    try {
        TempDir t;
        GuestMemory mem(mib << 20);
        const uint64_t pages = mem.size() / kPage;
        for (uint64_t p = 0; p < pages; p += 100) fill_page(mem, p);
        for (uint64_t p = 0; p < pages / 2; ++p) (void)*reinterpret_cast<volatile uint8_t*>(mem.base() + p * kPage + 64);
        const std::vector<uint8_t> vs = vmstate_for(mem.size());

        // Each run writes a new layer: DIR must not exist yet.
        auto layer = [&](const char* name, int i) { return t.path + "/" + name + std::to_string(i); };
        WriteOptions fast;
        fast.fsync = false;
        WriteOptions skip = fast;
        skip.scan = MemScan::kSkipNonResident;
        const double read_all = median_ms(runs, [&](int i) { write_full_layer(layer("a", i), config(mib), vs, mem, fast); });
        const double skipped = median_ms(runs, [&](int i) { write_full_layer(layer("b", i), config(mib), vs, mem, skip); });
        const double synced = median_ms(runs, [&](int i) { write_full_layer(layer("c", i), config(mib), vs, mem); });
        const double open = median_ms(runs, [&](int i) { LayerStack::open(layer("a", i)); });

        for (uint64_t p = 0; p < pages; ++p) fill_page(mem, p);
        const double dense = median_ms(runs, [&](int i) { write_full_layer(layer("d", i), config(mib), vs, mem, fast); });
        const double verify = median_ms(runs, [&](int i) { LayerStack::open(layer("d", i)).verify_memory(); });

        std::printf("snapshot_dir: %llu MiB guest, median of %d runs\n", static_cast<unsigned long long>(mib), runs);
        std::printf("  1%% data   write, read-all scan   %8.1f ms  (baseline)\n", read_all);
        std::printf("  1%% data   write, mincore skip    %8.1f ms  %5.2fx\n", skipped, skipped / read_all);
        std::printf("  1%% data   write, with fsync      %8.1f ms  %5.2fx\n", synced, synced / read_all);
        std::printf("  1%% data   open layer stack       %8.1f ms  %5.2fx\n", open, open / read_all);
        std::printf("  100%% data write, read-all scan   %8.1f ms  %5.2fx\n", dense, dense / read_all);
        std::printf("  100%% data verify_memory          %8.1f ms  %5.2fx\n", verify, verify / read_all);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "snapshot_dir-bench: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
