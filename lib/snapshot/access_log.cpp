#include "snapshot/access_log.h"

#include <algorithm>
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
constexpr uint64_t kMaxMemSize = (uint64_t{1} << 32) * kPageSize;

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
    // Page numbers are u32: a larger memory cannot be described, and nothing below may
    // size anything by mem_size (it is input) — only by the bytes actually read.
    if (log.mem_size > kMaxMemSize)
        throw bad("memory size " + std::to_string(log.mem_size) + " beyond the " +
                  std::to_string(kMaxMemSize >> 40) + " TiB u32 page numbers address");
    uint64_t page_count = log.mem_size / kPageSize;
    if (count > page_count || b.size() != kHeaderSize + 4 * count + 4)
        throw bad("length " + std::to_string(b.size()) + " does not match " + std::to_string(count) + " entries");
    uint32_t stored = get<uint32_t>(b.data() + b.size() - 4);
    uint32_t computed = crc32c(0, b.data(), b.size() - 4);
    if (stored != computed) throw bad("CRC32C mismatch");
    log.pages.resize(count);
    if (count) std::memcpy(log.pages.data(), b.data() + kHeaderSize, 4 * count);  // data() may be null
    for (size_t i = 0; i < log.pages.size(); i++)
        if (log.pages[i] >= page_count)
            throw bad("entry " + std::to_string(i) + ": page " + std::to_string(log.pages[i]) +
                      " beyond memory of " + std::to_string(page_count) + " pages");
    // Repeats: a sorted copy (memory in proportion to the file, not to mem_size); the
    // message names the entry that repeats the first page found twice.
    std::vector<uint32_t> sorted = log.pages;
    std::sort(sorted.begin(), sorted.end());
    if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
        auto first = std::find(log.pages.begin(), log.pages.end(), *dup);
        auto again = std::find(first + 1, log.pages.end(), *dup);
        throw bad("entry " + std::to_string(again - log.pages.begin()) + ": page " + std::to_string(*dup) +
                  " repeated");
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
