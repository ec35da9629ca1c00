#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "base/error.h"
#include "base/io.h"
#include "base/json_depth.h"
#include "base/log.h"
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

TEST_CASE("read_secret_file refuses a file group or others may read, naming it and its mode") {
    char tmpl[] = "/tmp/kn-secret-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "key", 3) == 3);
    ::close(fd);
    ::chmod(tmpl, 0600);
    CHECK(read_secret_file(tmpl).size() == 3);
    ::chmod(tmpl, 0640);
    CHECK_THROWS_WITH_AS(read_secret_file(tmpl),
                         (std::string(tmpl) + ": holds secrets but is mode 0640: make it private (chmod 600)").c_str(), ConfigError);
    ::chmod(tmpl, 0604);
    CHECK_THROWS_AS(read_secret_file(tmpl), ConfigError);
    ::unlink(tmpl);
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

TEST_CASE("byte order: little-endian store, load and append") {
    uint8_t b[8];
    store_le(b, uint32_t{0x11223344});
    CHECK(b[0] == 0x44);
    CHECK(b[3] == 0x11);
    CHECK(load_le<uint32_t>(b) == 0x11223344u);
    store_le(b, uint64_t{0x8877665544332211});
    CHECK(load_le<uint64_t>(b) == 0x8877665544332211ull);
    CHECK(load_le<uint16_t>(b + 6) == 0x8877);
    std::vector<uint8_t> v;
    append_le(v, uint16_t{0xbeef});
    std::string s;
    append_le(s, uint32_t{0x01020304});
    CHECK(v == std::vector<uint8_t>{0xef, 0xbe});
    CHECK(s == std::string("\x04\x03\x02\x01", 4));
}

TEST_CASE("check_json_depth: refuses nesting past the limit, naming the input and the limit") {
    auto nested = [](size_t n, char open = '[', char close = ']') {
        return std::string(n, open) + std::string(n, close);
    };
    CHECK_NOTHROW(check_json_depth(nested(kMaxJsonDepth), "x"));
    CHECK_NOTHROW(check_json_depth("{\"a\": [1, {\"b\": []}], \"c\": \"]]]\"}", "x"));
    try {
        check_json_depth(nested(kMaxJsonDepth + 1), "guest answer");
        FAIL("no throw");
    } catch (const DataError& e) {
        CHECK(std::string(e.what()) == "guest answer: JSON nested deeper than 64 levels (at byte 64)");
    }
    CHECK_THROWS_AS(check_json_depth(nested(kMaxJsonDepth + 1, '{', '}'), "x"), DataError);
    CHECK_THROWS_AS(check_json_depth("{\"a\":[{\"b\":[", "x", 3), DataError);
    CHECK_NOTHROW(check_json_depth("{\"a\":[{\"b\":1}]}", "x", 3));
    // Brackets in strings, escaped quotes included, are not nesting.
    std::string in_string = "[\"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"]";
    CHECK_NOTHROW(check_json_depth(in_string, "x"));
    CHECK(nlohmann::json::parse(in_string).size() == 1);
    // Closing more than was opened is the parser's business, not a way to go deeper.
    CHECK_THROWS_AS(check_json_depth("]]]]" + nested(kMaxJsonDepth + 1), "x"), DataError);
}

TEST_CASE("parse_json: a 100k-level document is refused at once; the parsed text round-trips") {
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_AS(parse_json<nlohmann::json>(deep, "x"), DataError);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(100));
    auto j = parse_json<nlohmann::json>("{\"k\": [1, 2, {\"z\": null}]}", "x");
    CHECK(j.dump() == "{\"k\":[1,2,{\"z\":null}]}");
    CHECK_THROWS_AS(parse_json<nlohmann::json>("{\"k\": ", "x"), nlohmann::json::parse_error);
}

TEST_CASE("LogThrottle: a burst per key, then one per interval, counting what it dropped") {
    using namespace std::chrono_literals;
    LogThrottle t(3, 1s);
    auto t0 = LogThrottle::Clock::time_point{} + 1h;
    static const char a[] = "a %d", b[] = "b %d";
    int emitted = 0;
    for (int i = 0; i < 1000; ++i) emitted += t.admit(a, t0).emit;
    CHECK(emitted == 3);
    CHECK(t.admit(b, t0).emit);  // another call site has its own bucket
    auto v = t.admit(a, t0 + 1s);
    CHECK(v.emit);
    CHECK(v.suppressed == 997);
    CHECK_FALSE(t.admit(a, t0 + 1s).emit);
    // A flood of 100k at 10k a second lets through the burst and ~1 a second.
    emitted = 0;
    for (int i = 0; i < 100000; ++i) emitted += t.admit(a, t0 + 2s + i * 100us).emit;
    CHECK(emitted <= 3 + 11);
}
