// The pieces of the Lambda API's wire format routerd writes: request ids, ARNs,
// Lambda-style error bodies, query parameters, the console tail for Log-Type: Tail,
// base64, timestamps.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "http/http_message.h"

namespace kindling::route {

inline constexpr size_t kLogTail = 4096;  // bytes of console in X-Amz-Log-Result

// A random request id in UUID form (x-amzn-RequestId).
std::string request_id();
std::string arn(const std::string& region, const std::string& tenant, const std::string& name,
                const std::string& qualifier = "");
// JSON text; invalid UTF-8 in names, qualifiers, headers or guest error text is
// replaced (U+FFFD) rather than thrown on by nlohmann's dump().
std::string to_text(const nlohmann::json& j);
// {"Type", "message"[, "Reason"]} with X-Amzn-ErrorType: code.
HttpResponse lambda_error(int status, const std::string& code, const std::string& message,
                          const std::string& reason = "");
// The percent-decoded value of `name` in a query string ("" if absent).
std::string query_param(std::string_view query, std::string_view name);
// The last kLogTail bytes of a sandbox's console (next to its vsock socket).
std::string console_tail(const std::string& vsock);
std::string base64(const std::string& in);
// Now as 2026-11-27T09:56:52.123Z.
std::string iso_now_ms();

}  // namespace kindling::route
