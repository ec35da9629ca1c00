#include "route/assign_client.h"

#include <curl/curl.h>

#include <memory>

namespace kindling::route {

namespace {

struct CurlDeleter {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
};

size_t on_body(char* p, size_t sz, size_t n, void* ud) {
    static_cast<std::string*>(ud)->append(p, sz * n);
    return sz * n;
}

}  // namespace

HttpResult AssignClient::request(const std::string& method, const std::string& path, const std::string& body,
                                 std::chrono::milliseconds timeout) const {
    thread_local std::unique_ptr<CURL, CurlDeleter> handle;
    thread_local std::string handle_socket;
    if (!handle || handle_socket != socket_) {
        handle.reset(curl_easy_init());
        handle_socket = socket_;
    }
    HttpResult out;
    CURL* c = handle.get();
    if (!c) return {0, "curl_easy_init failed"};
    curl_easy_reset(c);
    std::string url = "http://assignd" + path;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
    struct curl_slist* hdrs = nullptr;
    if (method == "POST") {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    CURLcode rc = curl_easy_perform(c);
    if (hdrs) curl_slist_free_all(hdrs);
    if (rc != CURLE_OK) return {0, "assignd " + socket_ + ": " + curl_easy_strerror(rc)};
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
    return out;
}

HttpResult AssignClient::post(const std::string& path, const std::string& json_body,
                              std::chrono::milliseconds timeout) const {
    return request("POST", path, json_body, timeout);
}

HttpResult AssignClient::get(const std::string& path) const {
    return request("GET", path, "", std::chrono::milliseconds(5000));
}

}  // namespace kindling::route
