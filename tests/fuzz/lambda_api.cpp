// routerd's Lambda API router (lib/route/lambda_api): authentication, path and
// qualifier parsing, the registry lookup, invoke checks, and the answers built from
// invoke results.  The input is a request as text (fuzz.h parse_request_text); one
// without an Authorization header is signed here with a known key at the current
// time, so mutations of paths, queries, headers and bodies get past SigV4.  The last
// byte picks an InvokeResult kind for invoke_response.
#include <filesystem>
#include <ctime>
#include <fstream>
#include <memory>

#include "base/error.h"
#include "hash/digest.h"
#include "http/sigv4.h"
#include "http/sigv4_verify.h"
#include "route/lambda_api.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;
using namespace kindling::route;

namespace {

struct Fixture {
    fuzz::TempDir dir;
    RouterMetrics metrics;
    std::unique_ptr<LambdaApi> api;
    Fixture() {
        fuzz::quiet();
        std::ofstream(dir.path + "/functions.json")
            << R"({"functions": [
  {"name": "hello", "tenant": "111122223333", "memory": 128, "timeout": 3, "concurrency": 2,
   "snapshot": {"dir": "/snap/hello"}},
  {"name": "multi", "tenant": "111122223333",
   "versions": {"1": {"dir": "/snap/m1"}, "2": {"snapshot": {"manifest": "ab", "store": "dir:/s"}}},
   "aliases": {"prod": "1", "live": "2"}},
  {"name": "other", "tenant": "444455556666", "snapshot": {"dir": "/snap/other"}}]})";
        std::ofstream(dir.path + "/credentials") << "AKIDKINDLINGTEST kindling/Secret+Key0123 111122223333\n"
                                                    "AKIDOTHER other-secret 444455556666\n";
        std::filesystem::permissions(dir.path + "/credentials", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
        api = std::make_unique<LambdaApi>(dir.path + "/functions.json", dir.path + "/credentials", metrics);
    }
};

// Signs `req` as the AWS SDK would: host and x-amz-date signed, payload unsigned.
void sign(HttpRequest& req) {
    std::string date = sigv4::amz_date(std::time(nullptr));
    req.headers.set("X-Amz-Date", date);
    if (!req.headers.has("Host")) req.headers.add("Host", "routerd");
    req.headers.set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD");
    sigv4::Request r;
    r.method = req.method;
    r.path = std::string(req.path());
    std::string_view q = req.query();
    while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view kv = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
        if (kv.empty()) continue;
        size_t eq = kv.find('=');
        r.query.emplace_back(percent_decode(kv.substr(0, eq)),
                             eq == std::string_view::npos ? "" : percent_decode(kv.substr(eq + 1)));
    }
    r.headers = {{"host", *req.headers.get("Host")}, {"x-amz-date", date}};
    r.payload_hash = "UNSIGNED-PAYLOAD";
    req.headers.set("Authorization",
                    sigv4::authorization(r, {"AKIDKINDLINGTEST", "kindling/Secret+Key0123", ""}, "us-east-1", "lambda"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Fixture* fx = new Fixture;
    HttpRequest req = fuzz::parse_request_text(fuzz::as_text(data, size));
    if (!req.headers.has("Authorization")) sign(req);
    auto routed = fx->api->route(req);
    if (auto* call = std::get_if<InvokeCall>(&routed)) {
        InvokeResult res;
        res.kind = static_cast<InvokeResult::Kind>(size ? data[size - 1] % 4 : 0);
        res.body = call->payload;
        res.message = call->version;
        res.log = req.body;
        (void)invoke_response(res, call->version, call->log_tail);
    }
    (void)LambdaApi::error_response(size ? 400 + data[0] % 100 : 400, req.target);
    return 0;
}
