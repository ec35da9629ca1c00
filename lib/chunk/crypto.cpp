#include "chunk/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include <climits>
#include <stdexcept>
#include <string>

namespace kindling {

namespace {

[[noreturn]] void openssl_failed(const char* what) {
    throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

const EVP_MD* sha256_md() {
    static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!md) openssl_failed("fetch SHA256");
    return md;
}

struct KdfDeleter {
    void operator()(EVP_KDF_CTX* c) const { EVP_KDF_CTX_free(c); }
};

}  // namespace

void wipe(void* p, size_t n) { OPENSSL_cleanse(p, n); }

Digest hmac_sha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
    Digest d;
    unsigned int n = 0;
    if (!HMAC(sha256_md(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
              d.bytes.data(), &n) ||
        n != kDigestSize)
        openssl_failed("HMAC-SHA256");
    return d;
}

Key hkdf_sha256(std::span<const uint8_t> ikm, std::string_view salt, std::string_view info) {
    static EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
    if (!kdf) openssl_failed("fetch HKDF");
    std::unique_ptr<EVP_KDF_CTX, KdfDeleter> ctx(EVP_KDF_CTX_new(kdf));
    if (!ctx) openssl_failed("EVP_KDF_CTX_new");
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()),
                                          ikm.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()),
                                          salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                          info.size()),
        OSSL_PARAM_construct_end(),
    };
    Key out;
    if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) openssl_failed("HKDF");
    return out;
}

Aes256Gcm::Aes256Gcm() : ctx_(EVP_CIPHER_CTX_new()) {
    static EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (!c) openssl_failed("fetch AES-256-GCM");
    if (!ctx_) openssl_failed("EVP_CIPHER_CTX_new");
    cipher_ = c;
}

void Aes256Gcm::seal(const Key& key, const GcmNonce& nonce, std::span<const uint8_t> plain,
                     uint8_t* out) {
    if (plain.size() > INT_MAX) throw std::length_error("AES-GCM input too large");
    EVP_CIPHER_CTX* c = ctx_.get();
    int n = 0, fin = 0;
    // The default GCM IV length is 12 bytes, which is what GcmNonce holds.
    if (EVP_EncryptInit_ex(c, cipher_, nullptr, key.data(), nonce.data()) != 1 ||
        EVP_EncryptUpdate(c, out, &n, plain.data(), static_cast<int>(plain.size())) != 1 ||
        EVP_EncryptFinal_ex(c, out + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, kGcmTagSize, out + plain.size()) != 1)
        openssl_failed("AES-256-GCM encrypt");
}

bool Aes256Gcm::open(const Key& key, const GcmNonce& nonce, std::span<const uint8_t> sealed,
                     uint8_t* out) {
    if (sealed.size() < kGcmTagSize) return false;
    size_t len = sealed.size() - kGcmTagSize;
    if (len > INT_MAX) return false;
    EVP_CIPHER_CTX* c = ctx_.get();
    int n = 0, fin = 0;
    if (EVP_DecryptInit_ex(c, cipher_, nullptr, key.data(), nonce.data()) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, kGcmTagSize,
                            const_cast<uint8_t*>(sealed.data() + len)) != 1 ||
        EVP_DecryptUpdate(c, out, &n, sealed.data(), static_cast<int>(len)) != 1)
        openssl_failed("AES-256-GCM decrypt");
    return EVP_DecryptFinal_ex(c, out + n, &fin) == 1;
}

}  // namespace kindling
