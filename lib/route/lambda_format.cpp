#include "route/lambda_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <random>
#include <vector>

#include "http/sigv4_verify.h"

namespace kindling::route {

using json = nlohmann::json;

std::string request_id() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    uint64_t a = rng(), b = rng();
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012" PRIx64, static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>(a >> 16) & 0xffff, static_cast<unsigned>(a) & 0xfff,
                  (static_cast<unsigned>(b >> 48) & 0x3fff) | 0x8000, static_cast<uint64_t>(b & 0xffffffffffffULL));
    return buf;
}

std::string arn(const std::string& region, const std::string& tenant, const std::string& name,
                const std::string& qualifier) {
    return "arn:aws:lambda:" + region + ":" + tenant + ":function:" + name + (qualifier.empty() ? "" : ":" + qualifier);
}

std::string to_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse lambda_error(int status, const std::string& code, const std::string& message,
                          const std::string& reason) {
    // Lambda's error shapes carry Type: User for the caller's errors, Service for ours.
    json body = {{"Type", status >= 500 ? "Service" : "User"}, {"message", message}};
    if (!reason.empty()) body["Reason"] = reason;
    HttpResponse r = HttpResponse::json(status, to_text(body));
    r.headers.set("X-Amzn-ErrorType", code);
    return r;
}

std::string query_param(std::string_view query, std::string_view name) {
    size_t pos = 0;
    while (pos <= query.size()) {
        size_t amp = query.find('&', pos);
        std::string_view kv = query.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
        size_t eq = kv.find('=');
        if (percent_decode(kv.substr(0, eq)) == name)
            return eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        pos = amp + 1;
    }
    return "";
}

std::string console_tail(const std::string& vsock) {
    std::vector<std::string> candidates;
    if (vsock.size() > 5 && vsock.compare(vsock.size() - 5, 5, ".sock") == 0)
    {
        candidates.push_back(vsock.substr(0, vsock.size() - 5) + ".console");
        candidates.push_back(vsock.substr(0, vsock.size() - 5) + ".log");  // assignd's run dir
    }
    candidates.push_back(vsock + ".console");
    for (const auto& p : candidates) {
        int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        std::string out;
        if (::fstat(fd, &st) == 0) {
            off_t start = st.st_size > static_cast<off_t>(kLogTail) ? st.st_size - kLogTail : 0;
            out.resize(static_cast<size_t>(st.st_size - start));
            ssize_t n = ::pread(fd, out.data(), out.size(), start);
            out.resize(n > 0 ? static_cast<size_t>(n) : 0);
        }
        ::close(fd);
        return out;
    }
    return "";
}

std::string base64(const std::string& in) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], k[v & 63]};
    }
    if (i + 1 == in.size()) {
        uint32_t v = uint8_t(in[i]) << 16;
        out += {k[v >> 18], k[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += {k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
    }
    return out;
}

std::string iso_now_ms() {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    struct tm tm {};
    gmtime_r(&t, &tm);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

}  // namespace kindling::route
