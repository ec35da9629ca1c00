// lib/snapshot access_log and snapfs's reading of it: a log claiming a huge memory
// is rejected before anything is sized by that claim (issue 13 finding 7).
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "fuse/snapfs.h"
#include "hash/crc32c.h"
#include "snapshot/access_log.h"

using namespace kindling;

namespace {

// A well-formed (CRC-valid) log header claiming `mem_size`, with `pages`.
std::vector<uint8_t> raw_log(uint64_t mem_size, const std::vector<uint32_t>& pages) {
    std::vector<uint8_t> b(32);
    std::memcpy(b.data(), "KNACCESS", 8);
    uint32_t version = 1, page_size = 4096;
    uint64_t count = pages.size();
    std::memcpy(b.data() + 8, &version, 4);
    std::memcpy(b.data() + 12, &page_size, 4);
    std::memcpy(b.data() + 16, &mem_size, 8);
    std::memcpy(b.data() + 24, &count, 8);
    for (uint32_t p : pages) b.insert(b.end(), reinterpret_cast<uint8_t*>(&p), reinterpret_cast<uint8_t*>(&p) + 4);
    uint32_t crc = crc32c(0, b.data(), b.size());
    b.insert(b.end(), reinterpret_cast<uint8_t*>(&crc), reinterpret_cast<uint8_t*>(&crc) + 4);
    return b;
}

}  // namespace

TEST_CASE("access log: a memory size beyond u32 page numbers is a DataError, not a huge allocation") {
    // 2^60 bytes = 2^48 pages: the old decoder sized a 32 TiB bitmap from it (bad_alloc).
    for (uint64_t mem : {uint64_t{1} << 60, (uint64_t{1} << 44) + 4096, UINT64_MAX - 4095}) {
        CAPTURE(mem);
        CHECK_THROWS_WITH_AS(decode_access_log(raw_log(mem, {0, 1}), "/x/access"),
                             doctest::Contains("/x/access: access log: memory size"), DataError);
    }
}

TEST_CASE("access log: the largest memory (2^32 pages) decodes with memory in proportion to the file") {
    uint64_t mem = uint64_t{1} << 44;
    AccessLog log = decode_access_log(raw_log(mem, {UINT32_MAX, 0, 7}), "/x/access");
    CHECK(log.mem_size == mem);
    CHECK(log.pages == std::vector<uint32_t>{UINT32_MAX, 0, 7});
    CHECK_THROWS_WITH_AS(decode_access_log(raw_log(mem, {9, UINT32_MAX, 9}), "/x/access"),
                         doctest::Contains("entry 2: page 9 repeated"), DataError);
}

TEST_CASE("snapfs: a hostile fc-launch page log is a DataError for --prefetch, never bad_alloc") {
    std::vector<SnapfsLayer> layers(1);
    layers[0].manifest.entries.push_back({"mem", false, 0600, 2 * uint64_t{kChunkSize}, 0, 2});
    layers[0].manifest.chunks.resize(2);
    CHECK_THROWS_AS(parse_snapfs_access_log(raw_log(uint64_t{1} << 60, {}), "access.log", layers), DataError);
    auto chunks = parse_snapfs_access_log(raw_log(uint64_t{1} << 44, {200, 0, 1, 5000000}), "access.log", layers);
    CHECK(chunks == std::vector<std::pair<uint32_t, uint32_t>>{{0, 1}, {0, 0}});
}
