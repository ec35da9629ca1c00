// routerd's client of assignd: HTTP/JSON on assignd's Unix socket
// (assign/assign_api.h), through libcurl.
#pragma once

#include <chrono>
#include <string>

namespace kindling::route {

struct HttpResult {
    long status = 0;  // 0: transport failure (message in body)
    std::string body;
};

class AssignClient {
public:
    explicit AssignClient(std::string socket_path) : socket_(std::move(socket_path)) {}
    // One libcurl handle per calling thread (keep-alive to assignd).
    HttpResult post(const std::string& path, const std::string& json_body,
                    std::chrono::milliseconds timeout) const;
    HttpResult get(const std::string& path) const;

private:
    HttpResult request(const std::string& method, const std::string& path, const std::string& body,
                       std::chrono::milliseconds timeout) const;
    std::string socket_;
};

}  // namespace kindling::route
