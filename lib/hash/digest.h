// SHA-256 digests: chunk ids, manifest ids, plain-text hashes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kindling {

inline constexpr size_t kDigestSize = 32;

// A SHA-256 value.  Chunk ids and manifest ids are digests of stored bytes, so any
// store can check an object against its name without keys (DESIGN.md "Chunks").
struct Digest {
    std::array<uint8_t, kDigestSize> bytes{};

    bool operator==(const Digest&) const = default;
    auto operator<=>(const Digest&) const = default;
    bool is_zero() const;
    std::string hex() const;
    // 64 lowercase or uppercase hex digits; nullopt for anything else.
    static std::optional<Digest> from_hex(std::string_view hex);
};

using ChunkId = Digest;

Digest sha256(std::span<const uint8_t> data);

// The store-side integrity check: does `data` hash to `id`?
inline bool object_matches(const Digest& id, std::span<const uint8_t> data) {
    return sha256(data) == id;
}

struct DigestHash {
    size_t operator()(const Digest& d) const {
        size_t h;
        static_assert(sizeof h <= kDigestSize);
        __builtin_memcpy(&h, d.bytes.data(), sizeof h);
        return h;
    }
};

std::string to_hex(std::span<const uint8_t> data);

}  // namespace kindling
