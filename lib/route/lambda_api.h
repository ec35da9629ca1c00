// routerd's Lambda API (routerd(1) API): SigV4 authentication against the
// credentials file, then ListFunctions, GetFunction, and Invoke resolved against
// the function registry.  Everything but an accepted invoke is answered at once; an
// accepted invoke is returned for the router to run.  Also the Lambda-style bodies
// of the HTTP server's own errors and of invoke results.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>

#include "http/http_message.h"
#include "http/sigv4_verify.h"
#include "route/invocation.h"
#include "route/registry.h"
#include "route/router_metrics.h"

namespace kindling::route {

// Lambda's payload limits: a RequestResponse invoke's request and answer, and an
// Event invoke's request.
inline constexpr size_t kSyncPayloadLimit = 6 * 1024 * 1024;  // 6291456
inline constexpr size_t kEventPayloadLimit = 256 * 1024;

class LambdaApi {
public:
    // Loads both files (DataError/SysError naming the file on failure).
    LambdaApi(std::string functions_path, std::string credentials_path, RouterMetrics& metrics);

    // Re-reads the functions and credentials files; keeps the old ones on error.
    void reload();
    std::shared_ptr<const Registry> registry() const;

    // The answer to `req`, or the invoke it asks for (authenticated, function and
    // version resolved, payload within Lambda's limits).  Never blocks.
    std::variant<HttpResponse, InvokeCall> route(const HttpRequest& req) const;

    // Before a request's body is read (HttpHeadCheck): the refusal of a request
    // whose credentials are missing, malformed or of an unknown access key, or whose
    // Content-Length is past the payload limit of its invocation type.  Nothing for
    // GET /metrics.
    std::optional<HttpResponse> check_head(const HttpRequest& head, std::optional<uint64_t> content_length) const;

    // The body of an error the HTTP server answers itself (400, 413, 431, 500...).
    static HttpResponse error_response(int status, const std::string& message);

private:
    HttpResponse list_functions(const SigV4Identity& who) const;
    std::variant<HttpResponse, InvokeCall> invoke(const HttpRequest& req, std::shared_ptr<const Registry> reg,
                                                  const Function& f, const std::string& version) const;

    std::string functions_path_, credentials_path_;
    RouterMetrics& metrics_;
    SigV4Verifier verifier_;
    mutable std::mutex registry_mu_;
    std::shared_ptr<const Registry> registry_;
};

// The HTTP answer to an invoke's result: 200 with the payload (X-Amz-Function-Error
// for a function error), 429 throttled, 500 service error; X-Amz-Log-Result with
// `log_tail`.
HttpResponse invoke_response(const InvokeResult& res, const std::string& version, bool log_tail);

}  // namespace kindling::route
