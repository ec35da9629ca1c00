// The order in which a restored guest first touched its pages (`fc-launch
// --record-access FILE`), replayed by `--prefetch FILE` to install the working set in
// large batches before or while the vCPUs run (DESIGN.md "Snapshots").
//
// File format, version 1, all integers little-endian:
//   offset  size     field
//        0     8     magic "KNACCESS"
//        8     4     version (1)
//       12     4     page size in bytes (4096)
//       16     8     mem_size: bytes of guest memory the log was recorded on, a
//                    multiple of 4096, at most 2^32 pages (16 TiB)
//       24     8     count: number of page entries
//       32  4*count  page numbers (u32, guest page = byte offset in `mem` / 4096), in
//                    first-touch order, each at most once, each < mem_size / 4096
//  32+4*count  4     CRC32C of every byte before it
// Readers reject any other magic, version or page size, a wrong length, a bad CRC,
// an out-of-range or repeated page — a log is a hint, but a wrong hint must not
// pass silently.  Decoding allocates in proportion to the bytes given, never to
// the mem_size they claim.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kindling {

inline constexpr uint32_t kAccessLogVersion = 1;

struct AccessLog {
    uint64_t mem_size = 0;
    std::vector<uint32_t> pages;  // first-touch order
};

std::string encode_access_log(const AccessLog& log);
// DataError naming `what` (the file) on any malformed input.
AccessLog decode_access_log(std::span<const uint8_t> bytes, const std::string& what);

// Written atomically (write_file_atomic).
void write_access_log(const std::string& path, const AccessLog& log);
// Reads and decodes PATH; with a non-zero `expect_mem_size`, a log recorded on a
// machine of another size is a DataError too.
AccessLog read_access_log(const std::string& path, uint64_t expect_mem_size = 0);

}  // namespace kindling
