// HttpServer over real Unix and TCP sockets, driven by a raw socket client so the
// bytes on the wire are what is checked.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/fd.h"
#include "base/io.h"
#include "http/http_server.h"

using namespace kindling;
using namespace std::chrono_literals;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-http.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

bool exists(const std::string& p) {
    struct stat st;
    return ::lstat(p.c_str(), &st) == 0;
}

struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
    bool has(const std::string& h) const { return headers.count(h) != 0; }
};

// A deliberately dumb HTTP/1.1 client: writes what it is told, parses responses
// with Content-Length framing, and never hangs (every wait has a timeout).
class Client {
public:
    static Client unix_socket(const std::string& path) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, path.c_str(), sizeof sun.sun_path - 1);
        REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
        return Client(std::move(fd));
    }
    // `from`: the loopback address to connect from (127.0.0.0/8 is all loopback).
    static Client tcp(uint16_t port, const char* from = nullptr) {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (from) {
            sockaddr_in src{};
            src.sin_family = AF_INET;
            REQUIRE(::inet_pton(AF_INET, from, &src.sin_addr) == 1);
            REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
        }
        sockaddr_in in{};
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&in), sizeof in) == 0);
        return Client(std::move(fd));
    }

    void send(const std::string& data) {
        write_full(fd_.get(), data.data(), data.size(), "test client write");
    }

    // Best effort: the server may already have closed (oversize bodies).
    void send_ignoring_errors(const std::string& data) {
        ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    }

    // One response, or nullopt if the connection closed/timed out first.
    std::optional<Response> read_response(bool head = false,
                                          std::chrono::milliseconds timeout = 5000ms) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        size_t end;
        while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
            if (!fill(deadline)) return std::nullopt;
        Response r;
        std::string head_text = buf_.substr(0, end);
        buf_.erase(0, end + 4);
        size_t line_end = head_text.find("\r\n");
        std::string status_line = head_text.substr(0, line_end);
        REQUIRE(status_line.rfind("HTTP/1.", 0) == 0);
        r.status = std::stoi(status_line.substr(9, 3));
        size_t pos = line_end;
        while (pos != std::string::npos && pos < head_text.size()) {
            size_t next = head_text.find("\r\n", pos + 2);
            std::string line = head_text.substr(pos + 2, next == std::string::npos
                                                             ? std::string::npos
                                                             : next - pos - 2);
            size_t colon = line.find(':');
            if (colon != std::string::npos) {
                std::string name = line.substr(0, colon);
                for (auto& c : name) c = static_cast<char>(std::tolower(c));
                std::string value = line.substr(colon + 1);
                value.erase(0, value.find_first_not_of(' '));
                r.headers[name] = value;
            }
            pos = next;
        }
        size_t len = r.has("content-length") ? std::stoul(r.headers["content-length"]) : 0;
        if (head) len = 0;
        while (buf_.size() < len)
            if (!fill(deadline)) return std::nullopt;
        r.body = buf_.substr(0, len);
        buf_.erase(0, len);
        return r;
    }

    // True if the server closes the connection (EOF or reset) within `timeout`.
    bool closed_within(std::chrono::milliseconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char c[4096];
            ssize_t n = ::recv(fd_.get(), c, sizeof c, 0);
            if (n <= 0) return true;
            buf_.append(c, static_cast<size_t>(n));
        }
    }

    int fd() const { return fd_.get(); }

private:
    explicit Client(UniqueFd fd) : fd_(std::move(fd)) {}

    bool fill(std::chrono::steady_clock::time_point deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char c[65536];
        ssize_t n = ::recv(fd_.get(), c, sizeof c, 0);
        if (n <= 0) return false;
        buf_.append(c, static_cast<size_t>(n));
        return true;
    }

    UniqueFd fd_;
    std::string buf_;
};

// Echoes the request back so tests can see what the handler got.
HttpResponse echo(const HttpRequest& req) {
    if (req.path() == "/throw") throw std::runtime_error("boom \"quoted\"");
    if (req.path() == "/empty") return HttpResponse::no_content();
    HttpResponse r;
    r.status = 200;
    r.headers.set("X-Method", req.method);
    r.headers.set("X-Path", std::string(req.path()));
    r.headers.set("X-Query", std::string(req.query()));
    r.headers.set("X-Token", req.headers.get("x-TOKEN").value_or("none"));
    r.body = req.body;
    return r;
}

std::string get(const std::string& target, const std::string& extra = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

std::string put(const std::string& target, const std::string& body) {
    return "PUT " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("HttpServer on a Unix socket keeps one connection alive across requests") {
    TempDir dir;
    std::string sock = dir.path + "/api.sock";
    HttpServer server(sock, echo);
    CHECK(server.is_unix());
    CHECK(server.address() == sock);
    CHECK(server.port() == 0);
    server.start();

    Client c = Client::unix_socket(sock);
    for (int i = 0; i < 5; ++i) {
        std::string body = "{\"n\": " + std::to_string(i) + "}";
        c.send("PUT /drives/d" + std::to_string(i) +
               "?x=1 HTTP/1.1\r\nHost: x\r\nx-token: t" + std::to_string(i) +
               "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->headers["x-method"] == "PUT");
        CHECK(r->headers["x-path"] == "/drives/d" + std::to_string(i));
        CHECK(r->headers["x-query"] == "x=1");
        CHECK(r->headers["x-token"] == "t" + std::to_string(i));
        CHECK(r->headers["server"] == "kindling");
        CHECK(r->body == body);
        CHECK(r->headers.count("connection") == 0);  // HTTP/1.1 default: keep-alive
    }
    // Two pipelined requests in one write come back in order.
    c.send(get("/a") + get("/b"));
    auto a = c.read_response(), b = c.read_response();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->headers["x-path"] == "/a");
    CHECK(b->headers["x-path"] == "/b");
    server.stop();
}

TEST_CASE("HttpServer on TCP port 0 reports the bound port and keeps alive") {
    HttpServer server("127.0.0.1:0", echo);
    CHECK(!server.is_unix());
    REQUIRE(server.port() != 0);
    CHECK(server.address() == "127.0.0.1:" + std::to_string(server.port()));
    server.start();
    Client c = Client::tcp(server.port());
    for (int i = 0; i < 3; ++i) {
        c.send(put("/x", std::string(1000 * (i + 1), 'a' + i)));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == std::string(1000 * (i + 1), 'a' + i));
    }
    // A 204 carries neither a body nor a Content-Length (RFC 9110 §8.6).
    c.send(get("/empty"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 204);
    CHECK(!r->has("content-length"));
    c.send(get("/after-204"));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->headers["x-path"] == "/after-204");
}

TEST_CASE("HttpServer answers an oversize body with 413 without reading it") {
    HttpServerOptions opts;
    opts.max_body_bytes = 1024;
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();

    SUBCASE("Content-Length over the limit") {
        Client c = Client::tcp(server.port());
        c.send("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
        c.send_ignoring_errors(std::string(100000, 'z'));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 413);
        CHECK(r->headers["content-type"] == "application/json");
        CHECK(r->body.find("1024") != std::string::npos);
        CHECK(r->headers["connection"] == "close");
        CHECK(c.closed_within(3000ms));
    }
    SUBCASE("a chunked body that grows past the limit") {
        Client c = Client::tcp(server.port());
        c.send("PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        std::string chunk = "400\r\n" + std::string(1024, 'q') + "\r\n";
        c.send_ignoring_errors(chunk + chunk + "0\r\n\r\n");
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 413);
    }
    SUBCASE("exactly at the limit is fine") {
        Client c = Client::tcp(server.port());
        c.send(put("/x", std::string(1024, 'k')));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body.size() == 1024);
    }
}

TEST_CASE("HttpServer answers oversize headers with 431 and bad requests with 400") {
    TempDir dir;
    HttpServerOptions opts;
    opts.max_header_bytes = 4096;
    HttpServer server(dir.path + "/s", echo, opts);
    server.start();
    {
        Client c = Client::unix_socket(dir.path + "/s");
        c.send_ignoring_errors(get("/x", "X-Big: " + std::string(8000, 'h') + "\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 431);
        CHECK(c.closed_within(3000ms));
    }
    {
        // Headers just under the limit still work.
        Client c = Client::unix_socket(dir.path + "/s");
        c.send(get("/x", "X-Big: " + std::string(3000, 'h') + "\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    {
        Client c = Client::unix_socket(dir.path + "/s");
        c.send("PUT /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n");
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 400);
        CHECK(c.closed_within(3000ms));
    }
}

TEST_CASE("HttpServer cuts off a slowloris client and idle keep-alive connections") {
    HttpServerOptions opts;
    opts.request_timeout = 300ms;
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();

    // One header byte every 50 ms never completes a request within 300 ms.
    Client slow = Client::tcp(server.port());
    auto t0 = std::chrono::steady_clock::now();
    std::string req = get("/slow", "X-Pad: " + std::string(200, 'p') + "\r\n");
    bool cut = false;
    for (char ch : req) {
        if (::send(slow.fd(), &ch, 1, MSG_NOSIGNAL) != 1) {
            cut = true;
            break;
        }
        if (slow.closed_within(50ms)) {
            cut = true;
            break;
        }
    }
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(cut);
    CHECK(took < 2s);

    // An idle connection after a good request is closed too.
    Client idle = Client::tcp(server.port());
    idle.send(get("/ok"));
    auto r = idle.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(idle.closed_within(2000ms));

    // The server still serves new clients.
    Client fresh = Client::tcp(server.port());
    fresh.send(get("/again"));
    r = fresh.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("HttpServer refuses a Unix socket path another server is listening on") {
    TempDir dir;
    std::string sock = dir.path + "/api.sock";
    HttpServer first(sock, echo);
    first.start();
    HttpServerOptions opts;
    opts.label = "API socket";
    try {
        HttpServer second(sock, echo, opts);
        FAIL("second server bound a path in use");
    } catch (const SysError& e) {
        CHECK(e.err() == EADDRINUSE);
        CHECK(std::string(e.what()) == sock + ": API socket path in use");
        CHECK(e.exit_code() == kExitCantCreate);
    }
    // The loser must not have removed the winner's socket.
    REQUIRE(exists(sock));
    Client c = Client::unix_socket(sock);
    c.send(get("/still-here"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("HttpServer replaces a stale socket file and removes its own on stop") {
    TempDir dir;
    std::string sock = dir.path + "/api.sock";
    {
        // A socket file whose server died: bound, never unlinked, nobody listening.
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::strncpy(sun.sun_path, sock.c_str(), sizeof sun.sun_path - 1);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0);
    }
    REQUIRE(exists(sock));
    HttpServer server(sock, echo);
    server.start();
    Client c = Client::unix_socket(sock);
    c.send(get("/fresh"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->headers["x-path"] == "/fresh");

    // stop() is prompt even with a client connected and the request timeout long.
    auto t0 = std::chrono::steady_clock::now();
    server.stop();
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(!exists(sock));
    CHECK(c.closed_within(1000ms));
    server.stop();  // idempotent
}

TEST_CASE("HttpServer takes a relative path without a colon as a Unix socket") {
    TempDir dir;
    auto old_cwd = std::filesystem::current_path();
    std::filesystem::current_path(dir.path);
    {
        HttpServer server("api.sock", echo);
        CHECK(server.is_unix());
        CHECK(exists(dir.path + "/api.sock"));
    }
    CHECK(!exists(dir.path + "/api.sock"));
    std::filesystem::current_path(old_cwd);
}

TEST_CASE("HttpServer removes its socket file when destroyed, started or not") {
    TempDir dir;
    std::string sock = dir.path + "/a.sock";
    {
        HttpServer server(sock, echo);
        CHECK(exists(sock));
    }
    CHECK(!exists(sock));
    {
        HttpServer server(sock, echo);
        server.start();
    }
    CHECK(!exists(sock));
}

TEST_CASE("HttpServer never deletes a non-socket file in its way") {
    TempDir dir;
    std::string path = dir.path + "/not-a-socket";
    write_file_atomic(path, "precious");
    try {
        HttpServer server(path, echo);
        FAIL("bound over a regular file");
    } catch (const SysError& e) {
        CHECK(e.err() == EEXIST);
        CHECK(std::string(e.what()).find(path) != std::string::npos);
    }
    CHECK(read_file(path) == "precious");
}

TEST_CASE("HttpServer turns a handler exception into a JSON 500 and keeps serving") {
    HttpServer server("127.0.0.1:0", echo);
    server.start();
    Client c = Client::tcp(server.port());
    c.send(get("/throw"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 500);
    CHECK(r->headers["content-type"] == "application/json");
    CHECK(r->body == "{\"error\": \"internal error: boom \\\"quoted\\\"\"}");
    c.send(get("/next"));
    r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("HttpServer uses the error formatter for its own error responses") {
    HttpServerOptions opts;
    opts.max_body_bytes = 10;
    opts.error_formatter = [](int status, const std::string& msg) {
        return HttpResponse::json(status, "{\"fault_message\": " + json_quote(msg) + "}");
    };
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();
    Client c = Client::tcp(server.port());
    c.send(put("/x", std::string(11, 'x')));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->body == "{\"fault_message\": \"request body exceeds 10 bytes\"}");
}

TEST_CASE("HttpServer: HEAD, Expect: 100-continue, HTTP/1.0 and Connection: close") {
    HttpServer server("127.0.0.1:0", echo);
    server.start();
    {
        Client c = Client::tcp(server.port());
        c.send("HEAD /h HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        auto r = c.read_response(/*head=*/true);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->headers["content-length"] == "5");
        // No body bytes follow: the next response parses cleanly.
        c.send(get("/after-head"));
        r = c.read_response();
        REQUIRE(r);
        CHECK(r->headers["x-path"] == "/after-head");
    }
    {
        Client c = Client::tcp(server.port());
        c.send("PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
        auto cont = c.read_response();
        REQUIRE(cont);
        CHECK(cont->status == 100);
        c.send("data");
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "data");
    }
    {
        Client c = Client::tcp(server.port());
        c.send("GET /old HTTP/1.0\r\n\r\n");
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(c.closed_within(2000ms));
    }
    {
        Client c = Client::tcp(server.port());
        c.send(get("/bye", "Connection: close\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->headers["connection"] == "close");
        CHECK(c.closed_within(2000ms));
    }
}

TEST_CASE("HttpServer async handlers may answer from another thread") {
    std::vector<std::thread> workers;
    std::mutex mu;
    HttpAsyncHandler handler = [&](const HttpRequest& req, HttpResponder respond) {
        if (req.path() == "/drop") return;  // responder dropped unanswered
        std::lock_guard lock(mu);
        workers.emplace_back([respond, path = std::string(req.path())] {
            std::this_thread::sleep_for(20ms);
            respond(HttpResponse::json(201, "\"" + path + "\""));
            respond(HttpResponse::json(202, "ignored"));  // only the first counts
        });
    };
    {
        HttpServer server("127.0.0.1:0", handler);
        server.start();
        Client c = Client::tcp(server.port());
        c.send(get("/later"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 201);
        CHECK(r->body == "\"/later\"");
        c.send(get("/drop"));
        r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 500);
        c.send(get("/again"));
        r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 201);

        // A response that arrives after stop() goes nowhere, harmlessly.
        Client late = Client::tcp(server.port());
        late.send(get("/late"));
        std::this_thread::sleep_for(5ms);
        server.stop();
    }
    std::lock_guard lock(mu);
    for (auto& t : workers) t.join();
}

TEST_CASE("HttpServer rejects bad listen addresses clearly") {
    CHECK_THROWS_AS(HttpServer("localhost:http", echo), ConfigError);
    CHECK_THROWS_AS(HttpServer("127.0.0.1:99999", echo), ConfigError);
    CHECK_THROWS_AS(HttpServer("[::1", echo), ConfigError);
    try {
        HttpServer server("/" + std::string(200, 'x') + "/s.sock", echo);
        FAIL("accepted an over-long Unix socket path");
    } catch (const SysError& e) {
        CHECK(e.err() == ENAMETOOLONG);
    }
}

TEST_CASE("HttpServer closes connections beyond max_connections") {
    HttpServerOptions opts;
    opts.max_connections = 2;
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();
    Client a = Client::tcp(server.port()), b = Client::tcp(server.port());
    for (Client* c : {&a, &b}) {
        c->send(get("/held"));
        REQUIRE(c->read_response());
    }
    Client extra = Client::tcp(server.port());
    CHECK(extra.closed_within(2000ms));
    // Once one closes, a new connection is served again.
    { Client gone = std::move(a); }
    std::optional<Response> r;
    for (int i = 0; i < 50 && !r; ++i) {
        Client again = Client::tcp(server.port());
        again.send_ignoring_errors(get("/again"));
        r = again.read_response(false, 200ms);
    }
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("HttpServer closes connections beyond max_connections_per_client, per client address") {
    HttpServerOptions opts;
    opts.max_connections = 10;
    opts.max_connections_per_client = 2;
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();
    Client a = Client::tcp(server.port(), "127.0.0.1"), b = Client::tcp(server.port(), "127.0.0.1");
    for (Client* c : {&a, &b}) {
        c->send(get("/held"));
        REQUIRE(c->read_response());
    }
    Client third = Client::tcp(server.port(), "127.0.0.1");
    CHECK(third.closed_within(2000ms));
    // Another client is still served while the first holds its share.
    Client other = Client::tcp(server.port(), "127.0.0.2");
    other.send(get("/other"));
    auto r = other.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    // Once one of the first client's closes, it may open another.
    { Client gone = std::move(a); }
    r.reset();
    for (int i = 0; i < 50 && !r; ++i) {
        Client again = Client::tcp(server.port(), "127.0.0.1");
        again.send_ignoring_errors(get("/again"));
        r = again.read_response(false, 200ms);
    }
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("HttpServer: a head check refuses a request before its body is sent") {
    HttpServerOptions opts;
    opts.max_body_bytes = 16 << 20;
    int checked = 0;
    opts.head_check = [&checked](const HttpRequest& head, std::optional<uint64_t> length) -> std::optional<HttpResponse> {
        ++checked;
        CHECK(head.body.empty());
        if (head.headers.get("X-Key").value_or("") != "good")
            return HttpResponse::json(403, "{\"error\": \"unknown key\"}");
        if (length && *length > 1000) return HttpResponse::json(413, "{\"error\": \"too large\"}");
        return std::nullopt;
    };
    HttpServer server("127.0.0.1:0", echo, opts);
    server.start();
    auto head = [](const char* key, size_t length) {
        return "PUT /x HTTP/1.1\r\nHost: x\r\nX-Key: " + std::string(key) +
               "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
    };
    SUBCASE("an unknown key: answered with only the header sent") {
        Client c = Client::tcp(server.port());
        c.send(head("bad", 8 << 20));
        auto r = c.read_response(false, 2000ms);
        REQUIRE(r);
        CHECK(r->status == 403);
        CHECK(r->headers["connection"] == "close");
        CHECK(c.closed_within(3000ms));
    }
    SUBCASE("a declared length past the check's limit: answered with only the header sent") {
        Client c = Client::tcp(server.port());
        c.send(head("good", 4000));
        auto r = c.read_response(false, 2000ms);
        REQUIRE(r);
        CHECK(r->status == 413);
    }
    SUBCASE("an accepted request reads its body and reaches the handler") {
        Client c = Client::tcp(server.port());
        c.send(head("good", 5) + "hello");
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "hello");
        CHECK(checked == 1);
    }
}

TEST_CASE("HttpServer's sockets are close-on-exec") {
    TempDir dir;
    HttpServer server(dir.path + "/s", echo);
    server.start();
    Client c = Client::unix_socket(dir.path + "/s");
    c.send(get("/x"));
    REQUIRE(c.read_response());
    // Every socket this process holds, ours and the server's, must carry FD_CLOEXEC.
    int sockets = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(e.path(), ec);
        if (ec || !target.string().starts_with("socket:")) continue;
        int fd = std::stoi(e.path().filename().string());
        if (fd == c.fd()) continue;
        ++sockets;
        CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    }
    CHECK(sockets >= 2);  // the listener and the accepted connection
}

TEST_CASE("HttpServer::watch waits on another fd on the I/O thread, again and again, with a deadline") {
    HttpServer server("127.0.0.1:0", echo);
    server.start();
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd a(sv[0]), b(sv[1]);
    std::shared_ptr<FdWatch> w = server.watch(a.get());
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int> got;  // 1 readable, 0 deadline
    auto on_io = [&](std::chrono::milliseconds wait) {
        server.at(std::chrono::steady_clock::now(), [&, wait] {
            w->when_readable(std::chrono::steady_clock::now() + wait, [&](bool readable) {
                char c;
                if (readable) CHECK(::recv(a.get(), &c, 1, MSG_DONTWAIT) == 1);
                std::lock_guard lk(mu);
                got.push_back(readable ? 1 : 0);
                cv.notify_all();
            });
        });
    };
    auto wait_for = [&](size_t n) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, std::chrono::seconds(5), [&] { return got.size() >= n; });
    };
    // Readiness that comes after the wait is queued, three times on one registration.
    for (int i = 0; i < 3; ++i) {
        on_io(std::chrono::milliseconds(5000));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        REQUIRE(::send(b.get(), "x", 1, 0) == 1);
        REQUIRE(wait_for(static_cast<size_t>(i + 1)));
        CHECK(got.back() == 1);
    }
    // Nothing to read: the deadline answers.
    auto t0 = std::chrono::steady_clock::now();
    on_io(std::chrono::milliseconds(50));
    REQUIRE(wait_for(4));
    CHECK(got.back() == 0);
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(50));
    // The watch destroyed while waiting: the callback is dropped, never called.
    on_io(std::chrono::milliseconds(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    server.at(std::chrono::steady_clock::now(), [&] { w.reset(); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard lk(mu);
    CHECK(got.size() == 4);
    server.stop();
}
