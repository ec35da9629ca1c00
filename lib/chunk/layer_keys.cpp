#include "chunk/layer_keys.h"

#include <cctype>
#include <cstdlib>

#include "base/error.h"
#include "base/io.h"

namespace kindling {

const char* layer_kind_name(LayerKind k) {
    switch (k) {
    case LayerKind::kBase: return "base";
    case LayerKind::kRuntime: return "runtime";
    case LayerKind::kFunction: return "function";
    }
    return "unknown";
}

std::optional<LayerKind> parse_layer_kind(std::string_view s) {
    if (s == "base") return LayerKind::kBase;
    if (s == "runtime") return LayerKind::kRuntime;
    if (s == "function") return LayerKind::kFunction;
    return std::nullopt;
}

const char* secret_env_var(LayerKind k) {
    return k == LayerKind::kFunction ? "KINDLING_TENANT_KEY" : "KINDLING_CONVERGENCE_SECRET";
}

namespace {

std::optional<std::vector<uint8_t>> decode_hex_text(std::string_view text) {
    std::vector<uint8_t> out;
    int hi = -1;
    for (char c : text) {
        if (std::isspace(static_cast<unsigned char>(c))) continue;
        int v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        else return std::nullopt;
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(static_cast<uint8_t>(hi << 4 | v));
            hi = -1;
        }
    }
    if (hi >= 0) return std::nullopt;
    return out;
}

}  // namespace

Secret parse_secret_hex(std::string_view text, const std::string& what) {
    auto b = decode_hex_text(text);
    if (!b) throw ConfigError(what + ": not a hex string");
    Secret s(std::move(*b));
    if (s.bytes().size() < kMinSecretSize)
        throw ConfigError(what + ": secret too short (need at least " +
                          std::to_string(kMinSecretSize) + " bytes, " +
                          std::to_string(2 * kMinSecretSize) + " hex digits)");
    return s;
}

Secret load_secret_file(const std::string& path) {
    std::vector<uint8_t> raw = read_secret_file(path);
    std::string_view text(reinterpret_cast<const char*>(raw.data()), raw.size());
    auto hex = decode_hex_text(text);
    Secret s(hex && hex->size() >= kMinSecretSize ? std::move(*hex) : std::move(raw));
    if (hex) wipe(raw.data(), raw.size());
    if (s.bytes().size() < kMinSecretSize)
        throw ConfigError(path + ": key file too short (need at least " +
                          std::to_string(kMinSecretSize) + " raw bytes or " +
                          std::to_string(2 * kMinSecretSize) + " hex digits)");
    return s;
}

Secret load_layer_secret(LayerKind kind, const std::string& key_file) {
    if (!key_file.empty()) return load_secret_file(key_file);
    const char* var = secret_env_var(kind);
    const char* v = std::getenv(var);
    if (!v || !*v)
        throw ConfigError(std::string("no ") +
                          (kind == LayerKind::kFunction ? "tenant key" : "convergence secret") +
                          " for a " + layer_kind_name(kind) + " layer: set " + var +
                          " (hex) or give --key-file FILE");
    return parse_secret_hex(v, var);
}

namespace {
std::span<const uint8_t> as_bytes(const Key& k) { return {k.data(), k.size()}; }
}  // namespace

LayerKeys::LayerKeys(LayerKind kind, std::span<const uint8_t> root_secret) : kind_(kind) {
    const char* info = kind == LayerKind::kFunction ? "kindling tenant layer secret v1"
                                                    : "kindling convergence layer secret v1";
    layer_secret_ = hkdf_sha256(root_secret, "kindling", info);
    mac_key_ = hkdf_sha256(as_bytes(layer_secret_), "kindling", "manifest mac v1");
    table_key_ = hkdf_sha256(as_bytes(layer_secret_), "kindling", "manifest key table v1");
    siv_key_ = hkdf_sha256(as_bytes(layer_secret_), "kindling", "manifest key table siv v1");
}

LayerKeys::~LayerKeys() {
    wipe(layer_secret_.data(), layer_secret_.size());
    wipe(mac_key_.data(), mac_key_.size());
    wipe(table_key_.data(), table_key_.size());
    wipe(siv_key_.data(), siv_key_.size());
}

Key LayerKeys::chunk_key(const Digest& plain_hash) const {
    Digest d = hmac_sha256(as_bytes(layer_secret_), plain_hash.bytes);
    return d.bytes;
}

}  // namespace kindling
