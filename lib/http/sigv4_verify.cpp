#include "http/sigv4_verify.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/io.h"
#include "hash/digest.h"
#include "http/sigv4.h"

namespace kindling {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

SigV4Result fail(std::string code, std::string message) {
    SigV4Result r;
    r.failure = SigV4Failure{403, std::move(code), std::move(message)};
    return r;
}

// "20150830T123600Z" -> seconds since the epoch; nullopt if malformed.
std::optional<std::time_t> parse_amz_date(std::string_view s) {
    if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
    for (size_t i = 0; i < 15; ++i)
        if (i != 8 && !std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
    auto num = [&](size_t pos, size_t n) { return std::atoi(std::string(s.substr(pos, n)).c_str()); };
    struct tm tm {};
    tm.tm_year = num(0, 4) - 1900;
    tm.tm_mon = num(4, 2) - 1;
    tm.tm_mday = num(6, 2);
    tm.tm_hour = num(9, 2);
    tm.tm_min = num(11, 2);
    tm.tm_sec = num(13, 2);
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return std::nullopt;
    return timegm(&tm);
}

struct AuthHeader {
    std::string access_key, date8, region, service, terminator;
    std::vector<std::string> signed_headers;
    std::string signed_headers_text;
    std::string signature;
};

std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t p = s.find(sep, start);
        out.emplace_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
        if (p == std::string_view::npos) break;
        start = p + 1;
    }
    return out;
}

// RFC 9110 §5.6.2 tchar, lower-case only: what a canonical header name may hold.
bool canonical_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// SignedHeaders must be what a signer produces (lower-case names, sorted, unique,
// ';'-separated) and bounded, so canonicalising costs O(request headers) whatever
// the client sends.  A message if not, checked before any canonicalisation work.
std::optional<std::string> signed_headers_problem(const AuthHeader& a) {
    if (a.signed_headers_text.size() > kMaxSignedHeadersBytes)
        return "SignedHeaders is " + std::to_string(a.signed_headers_text.size()) + " bytes long; at most " +
               std::to_string(kMaxSignedHeadersBytes) + " are accepted.";
    if (a.signed_headers.size() > kMaxSignedHeaders)
        return "SignedHeaders lists " + std::to_string(a.signed_headers.size()) + " headers; at most " +
               std::to_string(kMaxSignedHeaders) + " are accepted.";
    for (size_t i = 0; i < a.signed_headers.size(); ++i) {
        const std::string& n = a.signed_headers[i];
        if (n.empty() || !std::all_of(n.begin(), n.end(), canonical_name_char) ||
            (i > 0 && !(a.signed_headers[i - 1] < n)))
            return "SignedHeaders must be lowercase, sorted, unique and ';'-separated.";
    }
    return std::nullopt;
}

std::optional<AuthHeader> parse_authorization(std::string_view v) {
    v = trim(v);
    std::string_view alg = sigv4::kAlgorithm;
    if (v.substr(0, alg.size()) != alg || v.size() == alg.size() || v[alg.size()] != ' ')
        return std::nullopt;
    v.remove_prefix(alg.size() + 1);
    AuthHeader a;
    bool have_cred = false, have_sh = false, have_sig = false;
    for (const auto& part : split(v, ',')) {
        std::string_view p = trim(part);
        size_t eq = p.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        std::string_view k = p.substr(0, eq), val = p.substr(eq + 1);
        if (k == "Credential") {
            auto f = split(val, '/');
            if (f.size() != 5) return std::nullopt;
            a.access_key = f[0];
            a.date8 = f[1];
            a.region = f[2];
            a.service = f[3];
            a.terminator = f[4];
            have_cred = true;
        } else if (k == "SignedHeaders") {
            a.signed_headers_text = val;
            // Split only a list that can pass signed_headers_problem().
            if (val.size() <= kMaxSignedHeadersBytes) a.signed_headers = split(val, ';');
            have_sh = true;
        } else if (k == "Signature") {
            a.signature = val;
            have_sig = true;
        }
    }
    if (!have_cred || !have_sh || !have_sig || a.access_key.empty()) return std::nullopt;
    return a;
}

// The checks that need only the header: Authorization present and well formed,
// SignedHeaders within bounds, the access key known.  Sets `auth` and `key` (a
// failure when `key` stays null).
SigV4Result check_header(const HttpHeaders& headers, const AccessKeys& keys, std::optional<AuthHeader>& auth,
                         const AccessKey*& key) {
    auto auth_value = headers.get("authorization");
    if (!auth_value) return fail("MissingAuthenticationTokenException", "Missing Authentication Token");
    auth = parse_authorization(*auth_value);
    if (!auth)
        return fail("IncompleteSignatureException",
                    "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' "
                    "parameters (AWS4-HMAC-SHA256).");
    if (auto problem = signed_headers_problem(*auth)) return fail("IncompleteSignatureException", *problem);
    auto it = keys.find(auth->access_key);
    if (it == keys.end())
        return fail("UnrecognizedClientException", "The security token included in the request is invalid.");
    key = &it->second;
    return {};
}

}  // namespace

std::string percent_decode(std::string_view s) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size()) {
            int h = hex(s[i + 1]), l = hex(s[i + 2]);
            if (h >= 0 && l >= 0) {
                out += static_cast<char>(h * 16 + l);
                i += 2;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

AccessKeys parse_access_keys(const std::string& text, const std::string& what) {
    AccessKeys keys;
    std::istringstream in(text);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        ++n;
        std::istringstream ls(line);
        std::string ak, secret, tenant, extra;
        if (!(ls >> ak) || ak[0] == '#') continue;
        if (!(ls >> secret >> tenant) || (ls >> extra))
            throw DataError(what + ":" + std::to_string(n) +
                            ": expected `ACCESS_KEY SECRET TENANT`");
        if (!keys.emplace(ak, AccessKey{secret, tenant}).second)
            throw DataError(what + ":" + std::to_string(n) + ": access key " + ak + " given twice");
    }
    return keys;
}

AccessKeys load_access_keys(const std::string& path) {
    std::vector<uint8_t> text = read_secret_file(path);
    return parse_access_keys(std::string(text.begin(), text.end()), path);
}

SigV4Verifier::SigV4Verifier(std::string service, std::chrono::seconds max_skew)
    : service_(std::move(service)), max_skew_(max_skew), keys_(std::make_shared<AccessKeys>()) {}

std::shared_ptr<const AccessKeys> SigV4Verifier::current_keys() const {
    std::lock_guard lk(mu_);
    return keys_;
}

void SigV4Verifier::set_keys(AccessKeys keys) {
    auto p = std::make_shared<const AccessKeys>(std::move(keys));
    std::lock_guard lk(mu_);
    keys_ = std::move(p);
}

std::optional<SigV4Failure> SigV4Verifier::precheck(const HttpHeaders& headers) const {
    std::optional<AuthHeader> auth;
    const AccessKey* key = nullptr;
    auto keys = current_keys();
    SigV4Result r = check_header(headers, *keys, auth, key);
    if (!key) return r.failure;
    return std::nullopt;
}

SigV4Result SigV4Verifier::verify(const HttpRequest& req, std::time_t now) const {
    std::optional<AuthHeader> auth;
    const AccessKey* key = nullptr;
    auto keys = current_keys();
    if (SigV4Result r = check_header(req.headers, *keys, auth, key); !key) return r;
    if (auth->service != service_ || auth->terminator != "aws4_request")
        return fail("InvalidSignatureException",
                    "Credential should be scoped to correct service: '" + service_ + "'.");
    if (!std::binary_search(auth->signed_headers.begin(), auth->signed_headers.end(), "host"))
        return fail("InvalidSignatureException", "'Host' must be a signed header.");
    auto date_value = req.headers.get("x-amz-date");
    if (!date_value) return fail("IncompleteSignatureException", "Request is missing X-Amz-Date.");
    std::string amz_date(trim(*date_value));
    auto t = parse_amz_date(amz_date);
    if (!t) return fail("IncompleteSignatureException", "X-Amz-Date is not in ISO 8601 basic format.");
    if (amz_date.substr(0, 8) != auth->date8)
        return fail("InvalidSignatureException",
                    "Credential should be scoped to a valid date: '" + amz_date.substr(0, 8) + "'.");
    auto skew = std::chrono::seconds(now > *t ? now - *t : *t - now);
    if (skew > max_skew_)
        return fail("InvalidSignatureException",
                    "Signature expired: " + amz_date + " is now earlier or later than the server time " +
                        sigv4::amz_date(now) + " by more than " + std::to_string(max_skew_.count() / 60) +
                        " minutes.");

    std::string body_hash = to_hex(sha256({reinterpret_cast<const uint8_t*>(req.body.data()), req.body.size()}).bytes);
    std::string payload_hash = body_hash;
    if (auto sent = req.headers.get("x-amz-content-sha256")) {
        std::string s(trim(*sent));
        if (s != "UNSIGNED-PAYLOAD" && lower(s) != body_hash)
            return fail("InvalidSignatureException",
                        "The provided x-amz-content-sha256 header does not match what was computed.");
        payload_hash = s;
    }

    sigv4::Request r;
    r.method = req.method;
    // The path as sent, still encoded: the canonicaliser encodes it once more, which
    // is the double encoding SigV4 prescribes for every service but S3.
    r.path = std::string(req.path());
    std::string_view q = req.query();
    if (!q.empty()) {
        for (const auto& kv : split(q, '&')) {
            if (kv.empty()) continue;
            size_t eq = kv.find('=');
            if (eq == std::string::npos) r.query.emplace_back(percent_decode(kv), "");
            else r.query.emplace_back(percent_decode(kv.substr(0, eq)), percent_decode(kv.substr(eq + 1)));
        }
    }
    // One pass over the request's headers, each looked up in the sorted signed list:
    // O(headers x log kMaxSignedHeaders), however often a name repeats.  Repeated
    // headers keep their order (canonical_request joins them with ',').
    std::vector<bool> found(auth->signed_headers.size());
    for (const auto& [n, v] : req.headers) {
        std::string name = lower(n);
        auto it = std::lower_bound(auth->signed_headers.begin(), auth->signed_headers.end(), name);
        if (it == auth->signed_headers.end() || *it != name) continue;
        found[static_cast<size_t>(it - auth->signed_headers.begin())] = true;
        r.headers.emplace_back(std::move(name), v);
    }
    for (size_t i = 0; i < found.size(); ++i)
        if (!found[i])
            return fail("InvalidSignatureException",
                        "Signed header '" + auth->signed_headers[i] + "' is missing from the request.");
    r.payload_hash = payload_hash;
    // signed_headers_problem() made SignedHeaders exactly what the canonicaliser
    // derives from r.headers, so the signature covers the list as sent.
    std::string canonical = sigv4::canonical_request(r);
    std::string sts = sigv4::string_to_sign(amz_date, sigv4::scope(auth->date8, auth->region, auth->service),
                                            canonical);
    std::string expect =
        sigv4::signature(sigv4::signing_key(key->secret, auth->date8, auth->region, auth->service), sts);
    if (!sigv4::signatures_equal(expect, lower(auth->signature)))
        return fail("InvalidSignatureException",
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method. Consult the service "
                    "documentation for details.");
    SigV4Result ok;
    ok.identity = SigV4Identity{auth->access_key, key->tenant, auth->region};
    return ok;
}

}  // namespace kindling
