// Layer kinds and the keys derived from a layer's secret (DESIGN.md "Chunks,
// encryption, manifests").
//
//   base, runtime: root = the trust domain's convergence secret, so identical chunks
//                  get identical keys and ids across every function in the domain;
//   function:      root = the tenant's key, so tenants never share a chunk.
//
//   layer_secret      = HKDF-SHA256(root, salt "kindling", info "<label> layer secret v1")
//   chunk key         = HMAC-SHA256(layer_secret, SHA-256(plain))
//   manifest MAC key  = HKDF(layer_secret, info "manifest mac v1")
//   key-table key     = HKDF(layer_secret, info "manifest key table v1")
//   key-table SIV key = HKDF(layer_secret, info "manifest key table siv v1")
//
// The label differs between the convergence and the tenant derivations, so a tenant
// key that happens to equal a convergence secret still yields unrelated chunks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chunk/crypto.h"
#include "hash/digest.h"

namespace kindling {

enum class LayerKind : uint8_t { kBase = 0, kRuntime = 1, kFunction = 2 };

const char* layer_kind_name(LayerKind k);
std::optional<LayerKind> parse_layer_kind(std::string_view s);

// Secret bytes that are wiped when they go away.
class Secret {
public:
    Secret() = default;
    explicit Secret(std::vector<uint8_t> b) : bytes_(std::move(b)) {}
    Secret(Secret&& o) noexcept = default;
    Secret& operator=(Secret&& o) noexcept {
        if (this != &o) {
            clear();
            bytes_ = std::move(o.bytes_);
        }
        return *this;
    }
    Secret(const Secret&) = delete;
    Secret& operator=(const Secret&) = delete;
    ~Secret() { clear(); }

    std::span<const uint8_t> bytes() const { return bytes_; }
    bool empty() const { return bytes_.empty(); }

private:
    void clear() {
        if (!bytes_.empty()) wipe(bytes_.data(), bytes_.size());
        bytes_.clear();
    }
    std::vector<uint8_t> bytes_;
};

inline constexpr size_t kMinSecretSize = 16;

// Key files hold the secret as hex text (whitespace ignored) or as >= 16 raw bytes.
// Throws ConfigError (78) for an unusable file, SysError when it cannot be read.
Secret load_secret_file(const std::string& path);
// Hex text only (environment variables); `what` names the source in errors.
Secret parse_secret_hex(std::string_view text, const std::string& what);

// The environment variable that holds the root secret for a layer kind:
// KINDLING_CONVERGENCE_SECRET (base, runtime) or KINDLING_TENANT_KEY (function).
const char* secret_env_var(LayerKind k);

// The root secret for `kind`: `key_file` when given, else the kind's environment
// variable.  ConfigError naming both ways when neither is set.
Secret load_layer_secret(LayerKind kind, const std::string& key_file);

class LayerKeys {
public:
    LayerKeys(LayerKind kind, std::span<const uint8_t> root_secret);
    LayerKeys(LayerKeys&&) noexcept = default;
    LayerKeys(const LayerKeys&) = delete;
    LayerKeys& operator=(const LayerKeys&) = delete;
    ~LayerKeys();

    LayerKind kind() const { return kind_; }
    Key chunk_key(const Digest& plain_hash) const;
    const Key& manifest_mac_key() const { return mac_key_; }
    const Key& key_table_key() const { return table_key_; }
    const Key& key_table_siv_key() const { return siv_key_; }

private:
    LayerKind kind_;
    Key layer_secret_;
    Key mac_key_;
    Key table_key_;
    Key siv_key_;
};

}  // namespace kindling
