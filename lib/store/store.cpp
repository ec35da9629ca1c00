#include "store/store.h"

#include <cctype>
#include <limits>

#include "base/error.h"
#include "store/dir_store.h"
#include "store/s3_store.h"
#include "store/memcached_store.h"
#include "store/tiered_store.h"

namespace kindling {

std::optional<uint64_t> parse_size(const std::string& s) {
    if (s.empty()) return std::nullopt;
    size_t i = 0;
    uint64_t v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        uint64_t d = static_cast<uint64_t>(s[i] - '0');
        if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
        v = v * 10 + d;
        ++i;
    }
    if (i == 0) return std::nullopt;
    std::string unit = s.substr(i);
    int shift = 0;
    if (unit.empty() || unit == "B") shift = 0;
    else if (unit == "K" || unit == "KiB") shift = 10;
    else if (unit == "M" || unit == "MiB") shift = 20;
    else if (unit == "G" || unit == "GiB") shift = 30;
    else if (unit == "T" || unit == "TiB") shift = 40;
    else return std::nullopt;
    if (shift && v > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
    return v << shift;
}

namespace {

// "dir:/path?max=10G" -> path, {max: 10G}.
std::unique_ptr<Store> make_dir_store(const std::string& uri, const std::string& rest,
                                      const StoreOptions& opts) {
    UriParts parts = split_uri_options(rest);
    std::string path = parts.path;
    if (path.rfind("//", 0) == 0) path = path.substr(2);  // tolerate dir:///path
    if (path.empty()) throw UsageError("store " + uri + ": no directory (expected dir:/path)");
    uint64_t max = 0;
    for (const auto& [k, v] : parts.options) {
        if (k == "max") {
            auto n = parse_size(v);
            if (!n || *n == 0) throw UsageError("store " + uri + ": bad max size '" + v + "'");
            max = *n;
        } else {
            throw UsageError("store " + uri + ": unknown option '" + k + "' (dir: takes max=SIZE)");
        }
    }
    return std::make_unique<DirStore>(path, max, opts);
}

}  // namespace

UriParts split_uri_options(const std::string& rest) {
    UriParts parts;
    std::string query;
    if (auto q = rest.find('?'); q != std::string::npos) {
        parts.path = rest.substr(0, q);
        query = rest.substr(q + 1);
    } else {
        parts.path = rest;
    }
    size_t pos = 0;
    while (pos < query.size()) {
        size_t amp = query.find('&', pos);
        if (amp == std::string::npos) amp = query.size();
        std::string kv = query.substr(pos, amp - pos);
        pos = amp + 1;
        if (kv.empty()) continue;
        auto eq = kv.find('=');
        parts.options.emplace_back(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
    }
    return parts;
}

std::unique_ptr<Store> make_store(const std::string& uri, const StoreOptions& opts) {
    auto colon = uri.find(':');
    std::string scheme = colon == std::string::npos ? "" : uri.substr(0, colon);
    std::string rest = colon == std::string::npos ? "" : uri.substr(colon + 1);
    if (scheme == "dir") return make_dir_store(uri, rest, opts);
    if (scheme == "s3") return make_s3_store(uri);
    if (scheme == "memcached") return make_memcached_store(uri, rest);
    if (scheme == "tiered") return make_tiered_store(uri, rest, opts);
    throw UsageError("store " + uri + ": unknown store type (expected dir:/path)");
}

}  // namespace kindling
