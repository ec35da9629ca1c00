#include "http/http_message.h"

#include <ostream>  // before Beast: status.hpp uses it without including it
#include <boost/beast/http/status.hpp>
#include <cstdio>

namespace kindling {

bool iequals_ascii(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        unsigned char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
        if (x != y) return false;
    }
    return true;
}

std::optional<std::string> HttpHeaders::get(std::string_view name) const {
    for (const auto& [k, v] : fields_)
        if (iequals_ascii(k, name)) return v;
    return std::nullopt;
}

void HttpHeaders::set(std::string_view name, std::string_view value) {
    remove(name);
    add(name, value);
}

void HttpHeaders::add(std::string_view name, std::string_view value) {
    fields_.emplace_back(std::string(name), std::string(value));
}

void HttpHeaders::remove(std::string_view name) {
    std::erase_if(fields_, [&](const Field& f) { return iequals_ascii(f.first, name); });
}

std::string_view HttpRequest::path() const {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
}

std::string_view HttpRequest::query() const {
    std::string_view t = target;
    size_t q = t.find('?');
    return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

HttpResponse HttpResponse::json(int status, std::string body) {
    HttpResponse r{status, {}, std::move(body)};
    r.headers.set("Content-Type", "application/json");
    return r;
}

std::string json_quote(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    return out + "\"";
}

const char* http_reason(int status) {
    namespace http = boost::beast::http;
    if (status < 100 || status > 999) return "";
    auto r = http::obsolete_reason(static_cast<http::status>(status));
    // Beast answers "<unknown-status>" for codes it doesn't know.
    return r.empty() || r.front() == '<' ? "" : r.data();
}

}  // namespace kindling
