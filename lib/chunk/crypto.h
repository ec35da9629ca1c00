// Thin RAII wrappers over OpenSSL's EVP interface: HMAC-SHA256, HKDF-SHA256 and
// AES-256-GCM.  Nothing here knows about chunks or layers.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "hash/digest.h"

namespace kindling {

inline constexpr size_t kKeySize = 32;
inline constexpr size_t kGcmNonceSize = 12;
inline constexpr size_t kGcmTagSize = 16;

using Key = std::array<uint8_t, kKeySize>;
using GcmNonce = std::array<uint8_t, kGcmNonceSize>;

struct CipherCtxDeleter {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

Digest hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data);

// RFC 5869 HKDF-SHA256, 32 bytes of output.
Key hkdf_sha256(std::span<const uint8_t> ikm, std::string_view salt, std::string_view info);

// Overwrites secret material before its memory is released (OPENSSL_cleanse).
void wipe(void* p, size_t n);

// AES-256-GCM with a reusable context; one instance per thread.
class Aes256Gcm {
public:
    Aes256Gcm();

    // Writes plain.size() bytes of ciphertext and then the 16-byte tag to `out`.
    void seal(const Key& key, const GcmNonce& nonce, std::span<const uint8_t> plain,
              uint8_t* out);
    // `sealed` is ciphertext || tag; writes sealed.size() - 16 bytes to `out`.
    // Returns false when the tag does not authenticate (wrong key or changed bytes).
    bool open(const Key& key, const GcmNonce& nonce, std::span<const uint8_t> sealed,
              uint8_t* out);

private:
    CipherCtxPtr ctx_;
    const EVP_CIPHER* cipher_;
};

}  // namespace kindling
