// lib/http sigv4_verify: requests signed by the real AWS CLI (v1.45, botocore 1.43)
// captured once with a fixed date, requests signed with http/sigv4, and every failure.
#include <doctest/doctest.h>

#include <cstring>

#include <chrono>
#include <memory>

#include "base/error.h"
#include "http/sigv4.h"
#include "http/sigv4_verify.h"

using namespace kindling;

namespace {

// Linear work on these inputs takes a few ms (quadratic took seconds); ASan+UBSan
// builds (make check's build-san) run it ~5x slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr auto kLinearBound = std::chrono::milliseconds(500);
#else
constexpr auto kLinearBound = std::chrono::milliseconds(100);
#endif

constexpr char kKey[] = "AKIDKINDLINGTEST";
constexpr char kSecret[] = "kindling/Secret+Key0123";

std::unique_ptr<SigV4Verifier> make_verifier() {
    auto v = std::make_unique<SigV4Verifier>("lambda");
    v->set_keys(parse_access_keys(std::string("# test keys\n\n") + kKey + " " + kSecret +
                                     " 111122223333\nAKIDOTHER  other-secret\t444455556666\n",
                                 "creds"));
    return v;
}

std::time_t at(const char* amz) {
    struct tm tm {};
    strptime(amz, "%Y%m%dT%H%M%SZ", &tm);
    return timegm(&tm);
}

// `aws lambda invoke --function-name hello --qualifier '$LATEST' --payload '{"a": 1, "s": "x y"}'`
HttpRequest cli_invoke() {
    HttpRequest r;
    r.method = "POST";
    r.target = "/2015-03-31/functions/hello/invocations?Qualifier=%24LATEST";
    r.headers.add("Host", "127.0.0.1:39175");
    r.headers.add("Accept-Encoding", "identity");
    r.headers.add("User-Agent", "aws-cli/1.45.11 md/Botocore#1.43.11");
    r.headers.add("X-Amz-Date", "20261127T084934Z");
    r.headers.add("Authorization",
                  "AWS4-HMAC-SHA256 Credential=AKIDKINDLINGTEST/20261127/us-east-1/lambda/aws4_request, "
                  "SignedHeaders=host;x-amz-date, "
                  "Signature=bdc63eb3bf3384d1ae15645590dca79632a9523a50894a87399033d102d7e6ea");
    r.headers.add("amz-sdk-invocation-id", "fe95ef9b-1a75-4c2e-8bdd-e09454837372");
    r.headers.add("Content-Length", "20");
    r.body = "{\"a\": 1, \"s\": \"x y\"}";
    return r;
}

}  // namespace

TEST_CASE("sigv4_verify: a request signed by the AWS CLI verifies") {
    auto vp = make_verifier();
    auto& v = *vp;
    auto res = v.verify(cli_invoke(), at("20261127T085000Z"));
    REQUIRE(res.ok());
    CHECK(res.identity->tenant == "111122223333");
    CHECK(res.identity->access_key == kKey);
    CHECK(res.identity->region == "us-east-1");
}

TEST_CASE("sigv4_verify: AWS CLI get-function with an ARN (path double-encoded)") {
    HttpRequest r;
    r.method = "GET";
    r.target = "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A111122223333%3Afunction%3Ahello"
               "?Qualifier=prod";
    r.headers.add("Host", "127.0.0.1:40331");
    r.headers.add("X-Amz-Date", "20261127T084937Z");
    r.headers.add("Authorization",
                  "AWS4-HMAC-SHA256 Credential=AKIDKINDLINGTEST/20261127/us-east-1/lambda/aws4_request, "
                  "SignedHeaders=host;x-amz-date, "
                  "Signature=aa6b14995de38aad3b3dfb8cd62e5e7d20d5ce31e07311d4e6511a47e933e357");
    auto vp = make_verifier();
    auto& v = *vp;
    CHECK(v.verify(r, at("20261127T084937Z")).ok());
}

TEST_CASE("sigv4_verify: tampering and wrong keys fail with Lambda's error names") {
    auto vp = make_verifier();
    auto& v = *vp;
    std::time_t now = at("20261127T085000Z");
    SUBCASE("body changed") {
        auto r = cli_invoke();
        r.body[2] = 'b';
        auto res = v.verify(r, now);
        CHECK(!res.ok());
        CHECK(res.failure.status == 403);
        CHECK(res.failure.code == "InvalidSignatureException");
    }
    SUBCASE("query changed") {
        auto r = cli_invoke();
        r.target = "/2015-03-31/functions/hello/invocations?Qualifier=1";
        CHECK(v.verify(r, now).failure.code == "InvalidSignatureException");
    }
    SUBCASE("path changed") {
        auto r = cli_invoke();
        r.target = "/2015-03-31/functions/hellp/invocations?Qualifier=%24LATEST";
        CHECK(v.verify(r, now).failure.code == "InvalidSignatureException");
    }
    SUBCASE("host changed") {
        auto r = cli_invoke();
        r.headers.set("Host", "127.0.0.1:1");
        CHECK(v.verify(r, now).failure.code == "InvalidSignatureException");
    }
    SUBCASE("unknown key") {
        auto r = cli_invoke();
        auto a = *r.headers.get("Authorization");
        a.replace(a.find("AKIDKINDLINGTEST"), 16, "AKIDNOBODY000000");
        r.headers.set("Authorization", a);
        CHECK(v.verify(r, now).failure.code == "UnrecognizedClientException");
    }
    SUBCASE("wrong secret for a known key") {
        SigV4Verifier w("lambda");
        w.set_keys(parse_access_keys(std::string(kKey) + " not-the-secret 111122223333\n", "creds"));
        CHECK(w.verify(cli_invoke(), now).failure.code == "InvalidSignatureException");
    }
    SUBCASE("clock skew beyond 15 minutes, either way") {
        CHECK(v.verify(cli_invoke(), at("20261127T090435Z")).failure.code == "InvalidSignatureException");
        CHECK(v.verify(cli_invoke(), at("20261127T083433Z")).failure.code == "InvalidSignatureException");
        CHECK(v.verify(cli_invoke(), at("20261127T090433Z")).ok());
    }
    SUBCASE("missing and malformed Authorization") {
        auto r = cli_invoke();
        r.headers.remove("Authorization");
        CHECK(v.verify(r, now).failure.code == "MissingAuthenticationTokenException");
        r.headers.set("Authorization", "AWS4-HMAC-SHA256 Credential=x");
        CHECK(v.verify(r, now).failure.code == "IncompleteSignatureException");
        r.headers.set("Authorization", "Basic Zm9vOmJhcg==");
        CHECK(v.verify(r, now).failure.code == "IncompleteSignatureException");
    }
    SUBCASE("other service") {
        auto r = cli_invoke();
        auto a = *r.headers.get("Authorization");
        a.replace(a.find("/lambda/"), 8, "/s3/");
        r.headers.set("Authorization", a);
        CHECK(v.verify(r, now).failure.code == "InvalidSignatureException");
    }
}

TEST_CASE("sigv4_verify: requests signed with http/sigv4, x-amz-content-sha256") {
    auto vp = make_verifier();
    auto& v = *vp;
    std::time_t now = 1790000000;
    std::string date = sigv4::amz_date(now);
    std::string body = "{\"k\":\"v\"}";
    sigv4::Request sr{"POST", "/2015-03-31/functions/f%3A1/invocations", {{"Qualifier", "$LATEST"}},
                      {{"host", "localhost:9"}, {"x-amz-date", date}}, ""};
    HttpRequest r;
    r.method = "POST";
    r.target = "/2015-03-31/functions/f%3A1/invocations?Qualifier=%24LATEST";
    r.headers.add("Host", "localhost:9");
    r.headers.add("X-Amz-Date", date);
    r.body = body;
    // Unsigned payload declared and signed: accepted whatever the body.
    sr.headers.emplace_back("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    sr.payload_hash = "UNSIGNED-PAYLOAD";
    r.headers.add("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    r.headers.add("Authorization", sigv4::authorization(sr, {kKey, kSecret, ""}, "eu-west-1", "lambda"));
    auto res = v.verify(r, now);
    REQUIRE(res.ok());
    CHECK(res.identity->region == "eu-west-1");
    // A declared hash that is not the body's -> rejected before the signature.
    r.headers.set("x-amz-content-sha256", std::string(64, 'a'));
    auto bad = v.verify(r, now);
    CHECK(bad.failure.code == "InvalidSignatureException");
    CHECK(bad.failure.message.find("x-amz-content-sha256") != std::string::npos);
}

TEST_CASE("sigv4_verify: credentials file errors and reload") {
    CHECK_THROWS_AS(parse_access_keys("AK only-two\n", "f"), DataError);
    CHECK_THROWS_AS(parse_access_keys("AK s t extra\n", "f"), DataError);
    CHECK_THROWS_AS(parse_access_keys("AK s t\nAK s2 t2\n", "f"), DataError);
    CHECK(parse_access_keys("  # comment\n\n", "f").empty());
    SigV4Verifier v("lambda");
    CHECK(v.verify(cli_invoke(), at("20261127T085000Z")).failure.code == "UnrecognizedClientException");
    v.set_keys(parse_access_keys(std::string(kKey) + " " + kSecret + " t1\n", "f"));
    CHECK(v.verify(cli_invoke(), at("20261127T085000Z")).ok());
    CHECK(percent_decode("a%24b%2fc%zz%4") == "a$b/c%zz%4");
}

TEST_CASE("sigv4_verify: SignedHeaders must be sorted, unique, lower-case and bounded") {
    auto vp = make_verifier();
    auto& v = *vp;
    std::time_t now = at("20261127T085000Z");
    auto with_signed = [](const std::string& list) {
        auto r = cli_invoke();
        auto a = *r.headers.get("Authorization");
        size_t p = a.find("SignedHeaders=") + 14;
        a.replace(p, a.find(',', p) - p, list);
        r.headers.set("Authorization", a);
        return r;
    };
    auto code_of = [&](const HttpRequest& r) { return v.verify(r, now).failure.code; };
    CHECK(code_of(with_signed("x-amz-date;host")) == "IncompleteSignatureException");
    CHECK(code_of(with_signed("host;host;x-amz-date")) == "IncompleteSignatureException");
    CHECK(code_of(with_signed("Host;x-amz-date")) == "IncompleteSignatureException");
    CHECK(code_of(with_signed("host;;x-amz-date")) == "IncompleteSignatureException");
    CHECK(code_of(with_signed("host; x-amz-date")) == "IncompleteSignatureException");
    std::string many = "host";
    for (int i = 0; i < int(kMaxSignedHeaders); ++i) many += ";x-h" + std::to_string(1000 + i);
    auto res = v.verify(with_signed(many), now);
    CHECK(res.failure.code == "IncompleteSignatureException");
    CHECK(res.failure.message.find("at most 64") != std::string::npos);
    // The original list still verifies.
    CHECK(v.verify(with_signed("host;x-amz-date"), now).ok());
}

TEST_CASE("sigv4_verify: repeated SignedHeaders x duplicate headers is rejected fast") {
    // The attack: 5000 SignedHeaders entries and 5000 copies of the header they name
    // made canonicalisation build 25 million pairs (seconds of CPU, hundreds of MiB)
    // before the signature was checked.
    auto vp = make_verifier();
    auto& v = *vp;
    std::time_t now = at("20261127T085000Z");
    auto r = cli_invoke();
    std::string list = "host";
    for (int i = 0; i < 5000; ++i) list += ";x-a";
    list += ";x-amz-date";
    auto a = *r.headers.get("Authorization");
    size_t p = a.find("SignedHeaders=") + 14;
    a.replace(p, a.find(',', p) - p, list);
    r.headers.set("Authorization", a);
    for (int i = 0; i < 5000; ++i) r.headers.add("X-A", "v");
    auto t0 = std::chrono::steady_clock::now();
    auto res = v.verify(r, now);
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(res.failure.code == "IncompleteSignatureException");
    CHECK(took < kLinearBound);

    // Duplicates of a signed header alone are linear too (and fail the signature).
    auto d = cli_invoke();
    for (int i = 0; i < 20000; ++i) d.headers.add("Host", "127.0.0.1:39175");
    t0 = std::chrono::steady_clock::now();
    res = v.verify(d, now);
    took = std::chrono::steady_clock::now() - t0;
    CHECK(res.failure.code == "InvalidSignatureException");
    CHECK(took < kLinearBound);
}

TEST_CASE("sigv4_verify: precheck refuses from the header alone what verify would, up to the key") {
    auto vp = make_verifier();
    HttpRequest r = cli_invoke();
    CHECK_FALSE(vp->precheck(r.headers));  // a known key: the body is worth reading
    r.body = "tampered";                    // the precheck does not look at the body
    CHECK_FALSE(vp->precheck(r.headers));
    HttpHeaders unknown = r.headers;
    auto auth = *unknown.get("Authorization");
    auth.replace(auth.find(kKey), std::strlen(kKey), "AKIDNOBODY000000");
    unknown.set("Authorization", auth);
    auto f = vp->precheck(unknown);
    REQUIRE(f);
    CHECK(f->code == "UnrecognizedClientException");
    HttpHeaders none;
    REQUIRE(vp->precheck(none));
    CHECK(vp->precheck(none)->code == "MissingAuthenticationTokenException");
    HttpHeaders bad;
    bad.add("Authorization", "AWS4-HMAC-SHA256 nonsense");
    REQUIRE(vp->precheck(bad));
    CHECK(vp->precheck(bad)->code == "IncompleteSignatureException");
}
