#include "snapshot/access_log.h"

#include <bit>
#include <cstring>

#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"

namespace kindling {

static_assert(std::endian::native == std::endian::little, "access log codec assumes a little-endian host");

namespace {

constexpr char kMagic[8] = {'K', 'N', 'A', 'C', 'C', 'E', 'S', 'S'};
constexpr size_t kHeaderSize = 32;
constexpr uint32_t kPageSize = 4096;

template <class T>
void put(std::string& out, T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T get(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

}  // namespace

std::string encode_access_log(const AccessLog& log) {
    std::string out;
    out.reserve(kHeaderSize + 4 * log.pages.size() + 4);
    out.append(kMagic, sizeof kMagic);
    put<uint32_t>(out, kAccessLogVersion);
    put<uint32_t>(out, kPageSize);
    put<uint64_t>(out, log.mem_size);
    put<uint64_t>(out, log.pages.size());
    out.append(reinterpret_cast<const char*>(log.pages.data()), 4 * log.pages.size());
    put<uint32_t>(out, crc32c(0, out.data(), out.size()));
    return out;
}

AccessLog decode_access_log(std::span<const uint8_t> b, const std::string& what) {
    auto bad = [&](const std::string& why) { return DataError(what + ": access log: " + why); };
    if (b.size() < kHeaderSize + 4) throw bad("truncated (" + std::to_string(b.size()) + " bytes)");
    if (std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) throw bad("bad magic (not an access log)");
    uint32_t version = get<uint32_t>(b.data() + 8);
    if (version != kAccessLogVersion)
        throw bad("unsupported version " + std::to_string(version) + " (expected " +
                  std::to_string(kAccessLogVersion) + ")");
    uint32_t page_size = get<uint32_t>(b.data() + 12);
    if (page_size != kPageSize) throw bad("unsupported page size " + std::to_string(page_size));
    AccessLog log;
    log.mem_size = get<uint64_t>(b.data() + 16);
    uint64_t count = get<uint64_t>(b.data() + 24);
    if (log.mem_size % kPageSize != 0) throw bad("memory size " + std::to_string(log.mem_size) + " is not page-aligned");
    uint64_t page_count = log.mem_size / kPageSize;
    if (count > page_count || b.size() != kHeaderSize + 4 * count + 4)
        throw bad("length " + std::to_string(b.size()) + " does not match " + std::to_string(count) + " entries");
    uint32_t stored = get<uint32_t>(b.data() + b.size() - 4);
    uint32_t computed = crc32c(0, b.data(), b.size() - 4);
    if (stored != computed) throw bad("CRC32C mismatch");
    log.pages.resize(count);
    std::memcpy(log.pages.data(), b.data() + kHeaderSize, 4 * count);
    std::vector<uint64_t> seen((page_count + 63) / 64, 0);
    for (size_t i = 0; i < log.pages.size(); i++) {
        uint32_t p = log.pages[i];
        if (p >= page_count)
            throw bad("entry " + std::to_string(i) + ": page " + std::to_string(p) + " beyond memory of " +
                      std::to_string(page_count) + " pages");
        if (seen[p / 64] >> (p % 64) & 1)
            throw bad("entry " + std::to_string(i) + ": page " + std::to_string(p) + " repeated");
        seen[p / 64] |= 1ull << (p % 64);
    }
    return log;
}

void write_access_log(const std::string& path, const AccessLog& log) {
    write_file_atomic(path, encode_access_log(log));
}

AccessLog read_access_log(const std::string& path, uint64_t expect_mem_size) {
    std::vector<uint8_t> bytes = read_file_bytes(path);
    AccessLog log = decode_access_log(bytes, path);
    if (expect_mem_size != 0 && log.mem_size != expect_mem_size)
        throw DataError(path + ": access log: recorded on " + std::to_string(log.mem_size >> 20) +
                        " MiB of guest memory, this machine has " + std::to_string(expect_mem_size >> 20) + " MiB");
    return log;
}

}  // namespace kindling
