// base/tlv: the tagged-field writer and the bounds-checked reader.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/tlv.h"

using namespace kindling;

namespace {

struct Pair {
    uint32_t a;
    uint16_t b;
    uint16_t c;
};

std::string error_of(const std::vector<uint8_t>& bytes, void (*decode)(TlvFields&)) {
    TlvReader r(bytes, "/x/state");
    try {
        TlvFields f(r);
        decode(f);
    } catch (const DataError& e) {
        return e.what();
    }
    return "<accepted>";
}

}  // namespace

TEST_CASE("tlv: fields are tag, length, little-endian bytes") {
    TlvWriter w;
    w.integer<uint16_t>(7, 0x1234);
    CHECK(w.data() == std::vector<uint8_t>{7, 0, 2, 0, 0, 0, 0x34, 0x12});
    w.boolean(8, true);
    w.string(9, "hi");
    CHECK(w.size() == 8 + 7 + 8);

    TlvReader r(w.data(), "ctx");
    TlvFields f(r);
    CHECK(f.integer<uint16_t>(7, "seven") == 0x1234);
    CHECK(f.boolean(8, "eight"));
    CHECK(f.string(9, "nine", 10) == "hi");
    CHECK_FALSE(f.find(10));
    f.finish();
}

TEST_CASE("tlv: raw structs, arrays, nested bodies and repeated fields") {
    TlvWriter w;
    w.raw(1, Pair{1, 2, 3});
    const std::vector<Pair> list = {{4, 5, 6}, {7, 8, 9}};
    w.array(2, std::span(list));
    for (uint32_t i = 0; i < 3; ++i) {
        const size_t m = w.begin_field(3);
        w.integer<uint32_t>(1, i * 10);
        w.end_field(m);
    }
    w.array(4, std::span<const Pair>());

    TlvReader r(w.data(), "ctx");
    TlvFields f(r);
    Pair p = f.raw<Pair>(1, "pair");
    CHECK(p.a == 1);
    CHECK(p.c == 3);
    auto l = f.array<Pair>(2, "list");
    REQUIRE(l.size() == 2);
    CHECK(l[1].b == 8);
    auto nested = f.all(3);
    REQUIRE(nested.size() == 3);
    for (uint32_t i = 0; i < 3; ++i) {
        TlvReader nr(nested[i], "ctx: item");
        TlvFields nf(nr);
        CHECK(nf.integer<uint32_t>(1, "value") == i * 10);
        nf.finish();
    }
    CHECK(f.array<Pair>(4, "empty").empty());
    f.finish();
}

TEST_CASE("tlv: every malformed input is a DataError naming the context") {
    TlvWriter w;
    w.integer<uint32_t>(1, 5);
    w.integer<uint8_t>(2, 2);
    const std::vector<uint8_t> good = w.data();

    CHECK(error_of(good, [](TlvFields& f) { f.integer<uint32_t>(3, "three"); }) == "/x/state: missing field three");
    CHECK(error_of(good, [](TlvFields& f) { f.integer<uint64_t>(1, "one"); }) == "/x/state: one: 4 bytes, expected 8");
    CHECK(error_of(good, [](TlvFields& f) { f.boolean(2, "flag"); }) == "/x/state: flag: 2 is not a boolean");
    CHECK(error_of(good, [](TlvFields& f) { f.integer<uint32_t>(1, "one"); f.finish(); }) ==
          "/x/state: unknown field 2 (written by a newer kindling?)");
    CHECK(error_of(good, [](TlvFields& f) { f.array<Pair>(1, "pairs"); }) ==
          "/x/state: pairs: 4 bytes is not a whole number of 8-byte entries");
    CHECK(error_of(good, [](TlvFields& f) { f.string(1, "name", 3); }) == "/x/state: name of 4 bytes, at most 3");

    std::vector<uint8_t> twice = good;
    twice.insert(twice.end(), good.begin(), good.begin() + 10);
    CHECK(error_of(twice, [](TlvFields& f) { f.integer<uint32_t>(1, "one"); }) == "/x/state: field 1 appears twice");

    std::vector<uint8_t> over = good;
    over[2] = 200;  // field 1 claims 200 bytes
    CHECK(error_of(over, [](TlvFields&) {}) ==
          "/x/state: field 1 at offset 0 overruns its section (length 200, 11 bytes left)");
    // Every truncation fails inside the reader's span.
    for (size_t n = 1; n < good.size(); ++n) {
        CAPTURE(n);
        if (n == 10) continue;  // a whole first field: decodes, field 2 missing
        CHECK(error_of(std::vector<uint8_t>(good.begin(), good.begin() + static_cast<long>(n)), [](TlvFields&) {})
                  .rfind("/x/state: ", 0) == 0);
    }
}

TEST_CASE("tlv: the reader's raw integers and patches") {
    TlvWriter w;
    w.put<uint32_t>(0);
    w.put<uint64_t>(0x0102030405060708ull);
    w.patch<uint32_t>(0, 0xa1b2c3d4u);
    TlvReader r(w.data(), "hdr");
    CHECK(r.get<uint32_t>("magic") == 0xa1b2c3d4u);
    CHECK(r.get<uint64_t>("length") == 0x0102030405060708ull);
    CHECK(r.done());
    CHECK_THROWS_WITH_AS(r.get<uint8_t>("byte"), "hdr: truncated byte at offset 12 (0 bytes left, need 1)", DataError);
}
