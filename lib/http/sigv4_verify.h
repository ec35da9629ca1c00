// Server side of AWS Signature Version 4 (routerd): checks the Authorization header
// of an incoming request with the same canonicaliser a client signs with
// (http/sigv4.h), against a credentials file that maps access keys to a secret and a
// tenant.
//
// Credentials file: one key per line, `ACCESS_KEY SECRET TENANT`, fields separated by
// spaces or tabs; blank lines and lines starting with '#' are ignored.  The tenant is
// an opaque name (routerd uses it as the account id in ARNs).
//
// What is checked, in order (each failure is a 403 with Lambda's error name):
//   Authorization present and well formed (AWS4-HMAC-SHA256 Credential=AK/DATE/
//   REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...)  -> IncompleteSignatureException
//                                                                      (MissingAuthenticationTokenException if absent)
//   SignedHeaders lower-case, strictly increasing (sorted, no repeats), at most
//   kMaxSignedHeaders names in kMaxSignedHeadersBytes -> IncompleteSignatureException
//   (checked before any other work, so verifying costs time linear in the request's
//   headers, not their product with SignedHeaders)
//   access key known                                        -> UnrecognizedClientException
//   service matches, host is signed, X-Amz-Date present, the credential date is
//   its day, |now - X-Amz-Date| <= max skew                   -> InvalidSignatureException
//   x-amz-content-sha256 (if sent) equals SHA-256(body)    -> InvalidSignatureException
//   recomputed signature equals the sent one (constant time) -> InvalidSignatureException
#pragma once

#include <chrono>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "http/http_server.h"

namespace kindling {

// Bounds on SignedHeaders.  The AWS SDKs and CLI sign fewer than ten headers.
inline constexpr size_t kMaxSignedHeaders = 64;
inline constexpr size_t kMaxSignedHeadersBytes = 4096;

struct AccessKey {
    std::string secret;
    std::string tenant;
};
using AccessKeys = std::unordered_map<std::string, AccessKey>;

// Parses the credentials file format above.  DataError names the line of a
// malformed entry or a repeated key.
AccessKeys parse_access_keys(const std::string& text, const std::string& what);
// Reads and parses a credentials file; SysError if it can't be read.
AccessKeys load_access_keys(const std::string& path);

struct SigV4Identity {
    std::string access_key;
    std::string tenant;
    std::string region;
};

struct SigV4Failure {
    int status = 403;
    std::string code;     // "InvalidSignatureException"
    std::string message;  // AWS's wording where there is one
};

struct SigV4Result {
    std::optional<SigV4Identity> identity;  // set when the request is authentic
    SigV4Failure failure;                   // otherwise
    bool ok() const { return identity.has_value(); }
};

class SigV4Verifier {
public:
    explicit SigV4Verifier(std::string service,
                           std::chrono::seconds max_skew = std::chrono::minutes(15));

    // Replaces the key set (SIGHUP reload); safe while verify() runs on other threads.
    void set_keys(AccessKeys keys);

    SigV4Result verify(const HttpRequest& req, std::time_t now) const;

    // The checks verify() makes from the header alone, up to and including "access
    // key known": the failure, or nothing when the body is worth reading.  For
    // refusing a request before its body arrives (routerd's HttpHeadCheck).
    std::optional<SigV4Failure> precheck(const HttpHeaders& headers) const;

private:
    std::shared_ptr<const AccessKeys> current_keys() const;

    std::string service_;
    std::chrono::seconds max_skew_;
    mutable std::mutex mu_;
    std::shared_ptr<const AccessKeys> keys_;
};

// "%41b" -> "Ab"; '+' is kept.  Invalid escapes are kept as they are.
std::string percent_decode(std::string_view s);

}  // namespace kindling
