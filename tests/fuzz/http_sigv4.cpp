// The HTTP request parser (lib/http: Beast behind HttpServer, the session's limits and
// error answers) and the SigV4 verifier (lib/http/sigv4_verify) as routerd runs them:
// the input is the bytes a client sends on one connection of a real HttpServer (a
// Unix socket), whose handler verifies each request against a known key at a fixed
// time.  The corpus holds a request the AWS CLI signed (it verifies) and variants.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <ctime>
#include <memory>

#include "base/fd.h"
#include "base/unix_socket.h"
#include "http/http_server.h"
#include "http/sigv4_verify.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

constexpr std::time_t kNow = 1795769400;  // 2026-11-27T08:50:00Z, the corpus's signing time

struct Server {
    fuzz::TempDir dir;
    SigV4Verifier verifier{"lambda"};
    std::unique_ptr<HttpServer> http;
    std::string path = dir.path + "/http.sock";

    Server() {
        fuzz::quiet();
        verifier.set_keys(parse_access_keys("AKIDKINDLINGTEST kindling/Secret+Key0123 111122223333\n"
                                            "AKIDOTHER other-secret 444455556666\n",
                                            "fuzz credentials"));
        HttpServerOptions opts;
        opts.request_timeout = std::chrono::milliseconds(300);
        opts.write_timeout = std::chrono::milliseconds(300);
        opts.max_body_bytes = 64 * 1024;
        http = std::make_unique<HttpServer>("unix:" + path, [this](const HttpRequest& req) {
            SigV4Result r = verifier.verify(req, kNow);
            if (!r.ok()) return HttpResponse::json(r.failure.status, json_quote(r.failure.code));
            return HttpResponse::json(200, json_quote(r.identity->tenant));
        }, opts);
        http->start();
    }
};

// Sends everything, half-closes, reads until the server closes (or 2 s pass).
void exchange(const std::string& path, const uint8_t* data, size_t size) {
    UniqueFd fd = connect_unix(path);
    timeval tv{2, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t sent = 0;
    while (sent < size) {
        ssize_t n = ::send(fd.get(), data + sent, size - sent, MSG_NOSIGNAL);
        if (n <= 0) break;  // the server closed early (an error answer) or stalled
        sent += static_cast<size_t>(n);
    }
    ::shutdown(fd.get(), SHUT_WR);
    char buf[4096];
    while (::recv(fd.get(), buf, sizeof buf, 0) > 0) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Server* server = new Server;  // lives until exit: the I/O thread keeps running
    exchange(server->path, data, size);
    return 0;
}
