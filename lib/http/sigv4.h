// AWS Signature Version 4 (AWS General Reference, "Signing AWS API requests";
// S3 API Reference, "Authenticating Requests: Using the Authorization Header").
// Split into the steps of the spec so a server (routerd) can verify a signature
// with the same canonicaliser a client signs with:
//   canonical_request -> string_to_sign -> signing_key -> signature -> authorization
// Only the header form (Authorization: AWS4-HMAC-SHA256 ...) is implemented, with the
// payload hash given by the caller (hex SHA-256 or "UNSIGNED-PAYLOAD"); S3-style
// canonical URIs (each path segment encoded once, no dot-segment normalisation).
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kindling::sigv4 {

inline constexpr char kAlgorithm[] = "AWS4-HMAC-SHA256";
// Hex SHA-256 of the empty string: the payload hash of GET, HEAD and DELETE.
inline constexpr char kEmptyPayloadHash[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Credentials {
    std::string access_key;
    std::string secret_key;
    std::string session_token;  // empty: none (sent as x-amz-security-token)
};

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optional) AWS_SESSION_TOKEN.  Throws
// ConfigError (78) naming the variables when either of the first two is unset or
// empty; `what` prefixes the message (e.g. the store URI).
Credentials credentials_from_env(const std::string& what);

using Params = std::vector<std::pair<std::string, std::string>>;

struct Request {
    std::string method;   // "GET"
    std::string path;     // absolute path, not encoded: "/bucket/ab/cdef"
    Params query;         // names and values not encoded
    Params headers;       // every header to sign; must include host and x-amz-date
    std::string payload_hash;  // hex SHA-256 of the body, or "UNSIGNED-PAYLOAD"
};

// RFC 3986 percent-encoding of everything but unreserved characters (A-Z a-z 0-9
// - _ . ~), uppercase hex; '/' kept when !encode_slash (for paths).
std::string uri_encode(std::string_view s, bool encode_slash);

// "20150830T123600Z" for `t` (UTC).
std::string amz_date(std::time_t t);

// "host;x-amz-date": lowercased names, sorted, ';'-joined.
std::string signed_headers(const Params& headers);
// Method, URI, query, headers, signed headers and payload hash, '\n'-separated.
std::string canonical_request(const Request& r);
// "20150830/us-east-1/service/aws4_request"
std::string scope(std::string_view date8, std::string_view region, std::string_view service);
std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);
std::array<uint8_t, 32> signing_key(std::string_view secret, std::string_view date8,
                                    std::string_view region, std::string_view service);
// Hex HMAC-SHA256(signing key, string to sign).
std::string signature(const std::array<uint8_t, 32>& key, std::string_view string_to_sign);

// The Authorization header value for `r`, whose x-amz-date header gives the time.
std::string authorization(const Request& r, const Credentials& c, std::string_view region,
                          std::string_view service);

// Constant-time comparison for a verifier.
bool signatures_equal(std::string_view a, std::string_view b);

}  // namespace kindling::sigv4
