#include "hash/digest.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace kindling {

bool Digest::is_zero() const {
    for (uint8_t b : bytes)
        if (b) return false;
    return true;
}

std::string to_hex(std::span<const uint8_t> data) {
    static const char kHex[] = "0123456789abcdef";
    std::string s(data.size() * 2, '0');
    for (size_t i = 0; i < data.size(); ++i) {
        s[2 * i] = kHex[data[i] >> 4];
        s[2 * i + 1] = kHex[data[i] & 15];
    }
    return s;
}

std::string Digest::hex() const { return to_hex(bytes); }

std::optional<Digest> Digest::from_hex(std::string_view hex) {
    if (hex.size() != 2 * kDigestSize) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Digest d;
    for (size_t i = 0; i < kDigestSize; ++i) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        d.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return d;
}

Digest sha256(std::span<const uint8_t> data) {
    // Fetched once: the implicit fetch behind EVP_sha256() costs a lock per call in
    // OpenSSL 3.
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!md) throw std::runtime_error("OpenSSL has no SHA256");
    Digest d;
    unsigned int n = 0;
    if (!EVP_Digest(data.data(), data.size(), d.bytes.data(), &n, md, nullptr) || n != kDigestSize)
        throw std::runtime_error("EVP_Digest(SHA256) failed");
    return d;
}

}  // namespace kindling
