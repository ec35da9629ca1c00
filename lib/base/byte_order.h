// Little-endian integer encoding: the one encoder for every on-disk and on-wire
// format kindling defines (vmstate, journal records, manifests, chunk headers).
// Written byte by byte, so it is correct on any host and needs no alignment.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

namespace kindling {

template <std::unsigned_integral T>
void store_le(uint8_t* p, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

template <std::unsigned_integral T>
T load_le(const uint8_t* p) {
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
    return v;
}

// Appends v's sizeof(T) bytes to a byte container (std::vector<uint8_t>, std::string).
template <std::unsigned_integral T, class Bytes>
void append_le(Bytes& out, T v) {
    for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<typename Bytes::value_type>(v >> (8 * i)));
}

}  // namespace kindling
