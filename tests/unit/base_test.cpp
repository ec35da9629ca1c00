#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "base/io.h"
#include "devices/bus.h"
#include "kvm/guest_memory.h"

using namespace kindling;

TEST_CASE("write_file_atomic replaces the file and leaves no temp files") {
    char tmpl[] = "/tmp/kindling-unit.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string p = dir + "/f";
    write_file_atomic(p, "one");
    write_file_atomic(p, "two");
    CHECK(read_file(p) == "two");
    int n = 0;
    for (auto& e : std::filesystem::directory_iterator(dir)) (void)e, ++n;
    CHECK(n == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("read_file of a missing path names it and maps to EX_NOINPUT") {
    try {
        read_file("/nonexistent/kindling");
        FAIL("no throw");
    } catch (const SysError& e) {
        CHECK(std::string(e.what()).find("/nonexistent/kindling") != std::string::npos);
        CHECK(e.exit_code() == kExitNoInput);
    }
}

TEST_CASE("GuestMemory bounds checks are overflow safe") {
    GuestMemory m(1 << 20);
    CHECK(m.host_ptr(0, 1 << 20) != nullptr);
    CHECK(m.host_ptr(1, 1 << 20) == nullptr);
    CHECK(m.host_ptr((1 << 20) - 4, 4) != nullptr);
    CHECK(m.host_ptr((1 << 20) - 4, 5) == nullptr);
    CHECK(m.host_ptr(~0ull, 2) == nullptr);
    CHECK(m.host_ptr(8, ~0ull) == nullptr);
    CHECK(m.host_ptr(1 << 20, 0) != nullptr);  // empty range at the end is fine
    CHECK(m.host_ptr((1 << 20) + 1, 0) == nullptr);
}

namespace {
struct Recorder : BusDevice {
    uint64_t last = ~0ull;
    void read(uint64_t off, uint8_t* d, size_t n) override { last = off; }
    void write(uint64_t off, const uint8_t* d, size_t n) override { last = off; }
};
}  // namespace

TEST_CASE("Bus dispatches by range and refuses overlaps") {
    Bus bus;
    auto a = std::make_shared<Recorder>();
    bus.add(0x100, 0x10, a);
    CHECK_THROWS(bus.add(0x108, 4, a));
    CHECK_THROWS(bus.add(0xf8, 0x10, a));
    uint8_t b[4];
    CHECK(bus.write(0x104, b, 4));
    CHECK(a->last == 4);
    CHECK_FALSE(bus.read(0x10e, b, 4));  // straddles the end
    CHECK_FALSE(bus.read(0x200, b, 1));
}
