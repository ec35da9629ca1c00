#include "http/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "base/error.h"
#include "hash/digest.h"

namespace kindling::sigv4 {

namespace {

std::array<uint8_t, 32> hmac(std::span<const uint8_t> key, std::string_view data) {
    std::array<uint8_t, 32> out{};
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len) ||
        len != out.size())
        throw Error("sigv4: HMAC-SHA256 failed");
    return out;
}

std::span<const uint8_t> bytes_of(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Header values: leading and trailing spaces removed, inner runs of spaces made one.
std::string trim_value(std::string_view v) {
    std::string out;
    bool space = false;
    for (char c : v) {
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (space && !out.empty()) out += ' ';
        space = false;
        out += c;
    }
    return out;
}

// Lowercased names with their trimmed values, sorted by name; repeated names joined
// with ',' in their original order (the spec's rule for multi-value headers).
std::vector<std::pair<std::string, std::string>> canonical_headers(const Params& headers) {
    std::vector<std::pair<std::string, std::string>> hs;
    for (const auto& [n, v] : headers) hs.emplace_back(lower(n), trim_value(v));
    std::stable_sort(hs.begin(), hs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& h : hs) {
        if (!out.empty() && out.back().first == h.first) out.back().second += "," + h.second;
        else out.push_back(std::move(h));
    }
    return out;
}

}  // namespace

Credentials credentials_from_env(const std::string& what) {
    auto env = [](const char* n) {
        const char* v = std::getenv(n);
        return std::string(v ? v : "");
    };
    Credentials c{env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_SESSION_TOKEN")};
    if (c.access_key.empty() || c.secret_key.empty()) {
        std::string missing = c.access_key.empty() ? "AWS_ACCESS_KEY_ID" : "";
        if (c.secret_key.empty()) missing += std::string(missing.empty() ? "" : " and ") + "AWS_SECRET_ACCESS_KEY";
        throw ConfigError(what + ": no AWS credentials: set " + missing +
                          " (and AWS_SESSION_TOKEN for temporary credentials)");
    }
    return c;
}

std::string uri_encode(std::string_view s, bool encode_slash) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encode_slash)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 15];
        }
    }
    return out;
}

std::string amz_date(std::time_t t) {
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    return buf;
}

std::string signed_headers(const Params& headers) {
    std::string out;
    for (const auto& h : canonical_headers(headers)) {
        if (!out.empty()) out += ';';
        out += h.first;
    }
    return out;
}

std::string canonical_request(const Request& r) {
    std::string out = r.method + "\n";
    out += uri_encode(r.path.empty() ? "/" : r.path, false) + "\n";
    std::vector<std::pair<std::string, std::string>> q;
    for (const auto& [k, v] : r.query) q.emplace_back(uri_encode(k, true), uri_encode(v, true));
    std::sort(q.begin(), q.end());
    for (size_t i = 0; i < q.size(); ++i) out += (i ? "&" : "") + q[i].first + "=" + q[i].second;
    out += "\n";
    for (const auto& h : canonical_headers(r.headers)) out += h.first + ":" + h.second + "\n";
    out += "\n" + signed_headers(r.headers) + "\n" + r.payload_hash;
    return out;
}

std::string scope(std::string_view date8, std::string_view region, std::string_view service) {
    return std::string(date8) + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
    return std::string(kAlgorithm) + "\n" + std::string(amz_date) + "\n" + std::string(scope) + "\n" +
           to_hex(sha256(bytes_of(canonical_request)).bytes);
}

std::array<uint8_t, 32> signing_key(std::string_view secret, std::string_view date8,
                                    std::string_view region, std::string_view service) {
    std::string k0 = "AWS4" + std::string(secret);
    auto k_date = hmac(bytes_of(k0), date8);
    OPENSSL_cleanse(k0.data(), k0.size());
    auto k_region = hmac(k_date, region);
    auto k_service = hmac(k_region, service);
    return hmac(k_service, "aws4_request");
}

std::string signature(const std::array<uint8_t, 32>& key, std::string_view sts) {
    return to_hex(hmac(key, sts));
}

std::string authorization(const Request& r, const Credentials& c, std::string_view region,
                          std::string_view service) {
    std::string date;
    for (const auto& [n, v] : r.headers)
        if (lower(n) == "x-amz-date") date = trim_value(v);
    if (date.size() < 8) throw Error("sigv4: request has no x-amz-date header");
    std::string sc = scope(date.substr(0, 8), region, service);
    std::string sts = string_to_sign(date, sc, canonical_request(r));
    std::string sig = signature(signing_key(c.secret_key, date.substr(0, 8), region, service), sts);
    return std::string(kAlgorithm) + " Credential=" + c.access_key + "/" + sc +
           ", SignedHeaders=" + signed_headers(r.headers) + ", Signature=" + sig;
}

bool signatures_equal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kindling::sigv4
