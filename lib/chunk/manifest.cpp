#include "chunk/manifest.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "base/byte_order.h"
#include "base/error.h"

namespace kindling {

namespace {

constexpr char kMagic[8] = {'K', 'N', 'D', 'L', 'M', 'A', 'N', 'I'};
constexpr size_t kHeaderSize = 8 + 2 + 1 + 1 + 4 + 4 + 4 + kDigestSize;
constexpr size_t kKeyTableEntry = kKeySize + kDigestSize;
constexpr uint8_t kChunkZero = 1, kChunkCompressed = 2;
constexpr uint8_t kFlagHasParent = 1;
const char kTampered[] = "wrong key or tampered manifest";

class Writer {
public:
    void u8(uint8_t v) { out_.push_back(v); }
    void u16(uint16_t v) { append_le(out_, v); }
    void u32(uint32_t v) { append_le(out_, v); }
    void u64(uint64_t v) { append_le(out_, v); }
    void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
    void bytes(const void* p, size_t n) { bytes({static_cast<const uint8_t*>(p), n}); }
    std::vector<uint8_t>& out() { return out_; }

private:
    std::vector<uint8_t> out_;
};

class Reader {
public:
    explicit Reader(std::span<const uint8_t> b) : b_(b) {}
    uint8_t u8() { return bytes(1)[0]; }
    uint16_t u16() { return load_le<uint16_t>(bytes(2).data()); }
    uint32_t u32() { return load_le<uint32_t>(bytes(4).data()); }
    uint64_t u64() { return load_le<uint64_t>(bytes(8).data()); }
    std::span<const uint8_t> bytes(size_t n) {
        need(n);
        auto s = b_.subspan(pos_, n);
        pos_ += n;
        return s;
    }
    void copy(void* dst, size_t n) { std::memcpy(dst, bytes(n).data(), n); }
    size_t left() const { return b_.size() - pos_; }

private:
    void need(size_t n) {
        if (n > left()) throw DataError("manifest: truncated");
    }
    std::span<const uint8_t> b_;
    size_t pos_ = 0;
};

std::span<const uint8_t> key_bytes(const Key& k) { return {k.data(), k.size()}; }

// Constant-time comparison for MACs.
bool mac_equal(const uint8_t* a, const uint8_t* b, size_t n) {
    uint8_t d = 0;
    for (size_t i = 0; i < n; ++i) d |= a[i] ^ b[i];
    return d == 0;
}

}  // namespace

Manifest::~Manifest() {
    for (auto& c : chunks) wipe(c.key.data(), c.key.size());
}

bool is_safe_relative_path(const std::string& p) {
    if (p == ".") return true;
    if (p.empty() || p.front() == '/' || p.size() > 4096) return false;
    if (p.find('\0') != std::string::npos) return false;
    size_t pos = 0;
    while (pos <= p.size()) {
        size_t slash = p.find('/', pos);
        if (slash == std::string::npos) slash = p.size();
        std::string_view comp(p.data() + pos, slash - pos);
        if (comp.empty() || comp == "." || comp == "..") return false;
        pos = slash + 1;
    }
    return true;
}

std::vector<uint8_t> encode_manifest(const Manifest& m, const LayerKeys& keys) {
    if (m.kind != keys.kind()) throw std::logic_error("manifest kind differs from its keys");
    Writer w;
    w.bytes(kMagic, sizeof kMagic);
    w.u16(kManifestVersion);
    w.u8(static_cast<uint8_t>(m.kind));
    w.u8(m.parent ? kFlagHasParent : 0);
    w.u32(m.chunk_size);
    w.u32(m.zstd_version);
    w.u32(static_cast<uint32_t>(m.zstd_level));
    w.bytes(m.parent ? m.parent->bytes : Digest{}.bytes);

    w.u32(static_cast<uint32_t>(m.entries.size()));
    for (const auto& e : m.entries) {
        if (e.path.size() > 0xffff) throw DataError(e.path + ": path too long");
        w.u8(e.is_dir ? 1 : 0);
        w.u16(static_cast<uint16_t>(e.path.size()));
        w.bytes(e.path.data(), e.path.size());
        w.u32(e.mode);
        w.u64(e.size);
        w.u32(e.first_chunk);
        w.u32(e.chunk_count);
    }

    std::vector<uint8_t> table;
    w.u32(static_cast<uint32_t>(m.chunks.size()));
    for (const auto& c : m.chunks) {
        w.u64(c.offset);
        w.u8(static_cast<uint8_t>((c.zero ? kChunkZero : 0) | (c.compressed ? kChunkCompressed : 0)));
        w.u32(c.plain_len);
        w.u32(c.stored_len);
        w.bytes(c.zero ? Digest{}.bytes : c.id.bytes);
        if (!c.zero) {
            table.insert(table.end(), c.key.begin(), c.key.end());
            table.insert(table.end(), c.plain_hash.bytes.begin(), c.plain_hash.bytes.end());
        }
    }

    Digest siv = hmac_sha256(key_bytes(keys.key_table_siv_key()), table);
    GcmNonce nonce;
    std::memcpy(nonce.data(), siv.bytes.data(), nonce.size());
    std::vector<uint8_t> sealed(table.size() + kGcmTagSize);
    Aes256Gcm aes;
    aes.seal(keys.key_table_key(), nonce, table, sealed.data());
    wipe(table.data(), table.size());
    w.u32(static_cast<uint32_t>(table.size()));
    w.bytes(nonce);
    w.bytes(sealed);

    Digest mac = hmac_sha256(key_bytes(keys.manifest_mac_key()), w.out());
    w.bytes(mac.bytes);
    return std::move(w.out());
}

LayerKind peek_manifest_kind(std::span<const uint8_t> bytes) {
    if (bytes.size() < kHeaderSize + kDigestSize || std::memcmp(bytes.data(), kMagic, 8) != 0)
        throw DataError("not a kindling manifest");
    Reader r(bytes.subspan(8));
    uint16_t version = r.u16();
    if (version != kManifestVersion)
        throw DataError("manifest version " + std::to_string(version) + " not supported (this is " +
                        std::to_string(kManifestVersion) + ")");
    uint8_t kind = r.u8();
    if (kind > static_cast<uint8_t>(LayerKind::kFunction))
        throw DataError("manifest: unknown layer kind " + std::to_string(kind));
    return static_cast<LayerKind>(kind);
}

Manifest decode_manifest(std::span<const uint8_t> bytes, const LayerKeys& keys) {
    LayerKind kind = peek_manifest_kind(bytes);
    if (kind != keys.kind()) {
        // Base and runtime share the convergence secret; a function layer never does.
        bool conv_a = kind != LayerKind::kFunction, conv_b = keys.kind() != LayerKind::kFunction;
        if (conv_a != conv_b) throw DataError(kTampered);
    }
    size_t body = bytes.size() - kDigestSize;
    Digest mac = hmac_sha256(key_bytes(keys.manifest_mac_key()), bytes.first(body));
    if (!mac_equal(mac.bytes.data(), bytes.data() + body, kDigestSize)) throw DataError(kTampered);

    // Authenticated from here on; still validate everything, a manifest is input.
    Reader r(bytes.first(body));
    r.bytes(8 + 2 + 1);
    Manifest m;
    m.kind = kind;
    uint8_t flags = r.u8();
    m.chunk_size = r.u32();
    m.zstd_version = r.u32();
    m.zstd_level = static_cast<int32_t>(r.u32());
    Digest parent;
    r.copy(parent.bytes.data(), kDigestSize);
    if (flags & kFlagHasParent) m.parent = parent;
    // One encoding per manifest (its id is the hash of the bytes): no unknown flags,
    // no parent id without the flag (found by tests/fuzz/manifest).
    if ((flags & ~kFlagHasParent) || (!m.parent && !parent.is_zero()))
        throw DataError("manifest: unknown flags or a parent id without the has-parent flag");
    if (m.chunk_size != kChunkSize)
        throw DataError("manifest: chunk size " + std::to_string(m.chunk_size) + " not supported");

    uint32_t n_entries = r.u32();
    if (n_entries > r.left() / 23) throw DataError("manifest: entry count too large");
    std::set<std::string> seen;
    uint64_t next_chunk = 0;
    m.entries.reserve(n_entries);
    for (uint32_t i = 0; i < n_entries; ++i) {
        ManifestEntry e;
        uint8_t type = r.u8();
        if (type > 1) throw DataError("manifest: entry " + std::to_string(i) + ": unknown type");
        e.is_dir = type == 1;
        uint16_t plen = r.u16();
        auto p = r.bytes(plen);
        e.path.assign(reinterpret_cast<const char*>(p.data()), p.size());
        e.mode = r.u32();
        e.size = r.u64();
        e.first_chunk = r.u32();
        e.chunk_count = r.u32();
        if (!is_safe_relative_path(e.path))
            throw DataError("manifest: entry " + std::to_string(i) + ": unsafe path '" + e.path + "'");
        if (!seen.insert(e.path).second) throw DataError("manifest: duplicate path '" + e.path + "'");
        if (e.mode & ~07777u) throw DataError("manifest: " + e.path + ": bad mode");
        // Rounded up without e.size + kChunkSize - 1, which wraps near 2^64 to a want
        // of 0: a huge file with no chunks, whose reads would index past the list.
        uint64_t want = e.is_dir ? 0 : e.size / kChunkSize + (e.size % kChunkSize != 0);
        if ((e.is_dir && e.size != 0) || e.chunk_count != want || e.first_chunk != next_chunk)
            throw DataError("manifest: " + e.path + ": chunk range does not match its size");
        next_chunk += e.chunk_count;
        m.entries.push_back(std::move(e));
    }

    uint32_t n_chunks = r.u32();
    if (n_chunks != next_chunk) throw DataError("manifest: chunk count does not match the files");
    if (n_chunks > r.left() / 49) throw DataError("manifest: truncated chunk list");
    m.chunks.resize(n_chunks);
    size_t nonzero = 0;
    for (const auto& e : m.entries) {
        for (uint32_t k = 0; k < e.chunk_count; ++k) {
            ManifestChunk& c = m.chunks[e.first_chunk + k];
            c.offset = r.u64();
            uint8_t cf = r.u8();
            c.plain_len = r.u32();
            c.stored_len = r.u32();
            r.copy(c.id.bytes.data(), kDigestSize);
            c.zero = cf & kChunkZero;
            c.compressed = cf & kChunkCompressed;
            std::string where = e.path + ": chunk " + std::to_string(e.first_chunk + k);
            uint64_t off = uint64_t{k} * kChunkSize;
            uint64_t len = std::min<uint64_t>(kChunkSize, e.size - off);
            if ((cf & ~(kChunkZero | kChunkCompressed)) || c.offset != off || c.plain_len != len)
                throw DataError("manifest: " + where + ": bad offset, length or flags");
            if (c.zero ? (c.stored_len != 0 || c.compressed || !c.id.is_zero())
                       : (c.stored_len < kGcmTagSize ||
                          (!c.compressed && c.stored_len != c.plain_len + kGcmTagSize) ||
                          c.stored_len > ZSTD_compressBound(kChunkSize) + kGcmTagSize))
                throw DataError("manifest: " + where + ": bad stored length");
            if (!c.zero) ++nonzero;
        }
    }

    uint32_t table_len = r.u32();
    if (table_len != nonzero * kKeyTableEntry)
        throw DataError("manifest: key table size does not match the chunk list");
    GcmNonce nonce;
    r.copy(nonce.data(), nonce.size());
    auto sealed = r.bytes(size_t{table_len} + kGcmTagSize);
    if (r.left() != 0) throw DataError("manifest: trailing bytes");
    std::vector<uint8_t> table(table_len);
    Aes256Gcm aes;
    if (!aes.open(keys.key_table_key(), nonce, sealed, table.data())) {
        wipe(table.data(), table.size());
        throw DataError(kTampered);
    }
    size_t t = 0;
    for (auto& c : m.chunks) {
        if (c.zero) continue;
        std::memcpy(c.key.data(), table.data() + t, kKeySize);
        std::memcpy(c.plain_hash.bytes.data(), table.data() + t + kKeySize, kDigestSize);
        t += kKeyTableEntry;
    }
    wipe(table.data(), table.size());
    return m;
}

}  // namespace kindling
