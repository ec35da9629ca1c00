// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4
// and SSE4.2's crc32 instruction.  check("123456789") = 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kindling {

// Continues a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a‖b).  Uses the SSE4.2
// crc32 instruction when the CPU has it, else a slicing-by-8 table.
uint32_t crc32c(uint32_t crc, const void* data, size_t n);

// The CRC after appending `n` zero bytes to data whose CRC is `crc`, in
// O(log n) — so a sparse file's CRC needs only its non-zero parts.
uint32_t crc32c_extend_zeros(uint32_t crc, uint64_t n);

// The portable table implementation (for tests and CPUs without SSE4.2).
uint32_t crc32c_portable(uint32_t crc, const void* data, size_t n);

}  // namespace kindling
