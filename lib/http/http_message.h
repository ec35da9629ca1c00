// HTTP messages as the daemons' handlers see them: plain structs with no Beast in
// sight (http_session.cpp converts), plus the small helpers their bodies need.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kindling {

// Header fields in arrival order; names compare case-insensitively (RFC 9110 §5.1).
class HttpHeaders {
public:
    using Field = std::pair<std::string, std::string>;

    // The first field with this name, if any.
    std::optional<std::string> get(std::string_view name) const;
    bool has(std::string_view name) const { return get(name).has_value(); }
    // Replaces every field with this name by one field.
    void set(std::string_view name, std::string_view value);
    void add(std::string_view name, std::string_view value);
    void remove(std::string_view name);

    std::vector<Field>::const_iterator begin() const { return fields_.begin(); }
    std::vector<Field>::const_iterator end() const { return fields_.end(); }
    size_t size() const { return fields_.size(); }
    bool empty() const { return fields_.empty(); }

private:
    std::vector<Field> fields_;
};

struct HttpRequest {
    std::string method;  // "GET", "PUT", ... as sent
    std::string target;  // request-target as sent: "/drives/root?x=1"
    HttpHeaders headers;
    std::string body;
    std::string peer;    // "1.2.3.4:5678", "[::1]:5678", or "unix" — for logs

    std::string_view path() const;   // target up to '?'
    std::string_view query() const;  // after '?', empty if none
};

struct HttpResponse {
    int status = 200;
    HttpHeaders headers;
    std::string body;

    // Content-Type: application/json.
    static HttpResponse json(int status, std::string body);
    static HttpResponse no_content() { return HttpResponse{204, {}, {}}; }
};

// ASCII case-insensitive equality (header names, tokens such as "close").
bool iequals_ascii(std::string_view a, std::string_view b);

// JSON-escapes `s` into a quoted JSON string.
std::string json_quote(std::string_view s);

// "Not Found" for 404, "" for an unknown code.
const char* http_reason(int status);

}  // namespace kindling
