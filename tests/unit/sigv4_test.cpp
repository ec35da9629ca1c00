// lib/http sigv4: AWS's published examples (the SigV4 test suite's get-vanilla, the
// S3 API Reference's GET Object and ListObjects examples), encoding, header rules.
#include <doctest/doctest.h>

#include <cstdlib>

#include "base/error.h"
#include "http/sigv4.h"

using namespace kindling;
using namespace kindling::sigv4;

TEST_CASE("sigv4: get-vanilla from the AWS SigV4 test suite") {
    Request r{"GET", "/", {}, {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
              kEmptyPayloadHash};
    CHECK(canonical_request(r) ==
          "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    std::string sc = scope("20150830", "us-east-1", "service");
    CHECK(string_to_sign("20150830T123600Z", sc, canonical_request(r)) ==
          "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
          "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    Credentials c{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
    CHECK(authorization(r, c, "us-east-1", "service") ==
          "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
          "SignedHeaders=host;x-amz-date, "
          "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST_CASE("sigv4: S3 GET Object example (Range header, payload hash)") {
    Request r{"GET",
              "/test.txt",
              {},
              {{"Host", "examplebucket.s3.amazonaws.com"},
               {"Range", "bytes=0-9"},
               {"x-amz-content-sha256", kEmptyPayloadHash},
               {"x-amz-date", "20130524T000000Z"}},
              kEmptyPayloadHash};
    std::string cr = canonical_request(r);
    CHECK(string_to_sign("20130524T000000Z", scope("20130524", "us-east-1", "s3"), cr) ==
          "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
          "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    Credentials c{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
    CHECK(authorization(r, c, "us-east-1", "s3") ==
          "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
          "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
          "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("sigv4: S3 GET Bucket (list objects) example: sorted, encoded query") {
    Request r{"GET",
              "/",
              {{"prefix", "J"}, {"max-keys", "2"}},
              {{"Host", "examplebucket.s3.amazonaws.com"},
               {"x-amz-date", "20130524T000000Z"},
               {"x-amz-content-sha256", kEmptyPayloadHash}},
              kEmptyPayloadHash};
    Credentials c{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
    CHECK(canonical_request(r).find("\nmax-keys=2&prefix=J\n") != std::string::npos);
    CHECK(authorization(r, c, "us-east-1", "s3").ends_with(
        "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
}

TEST_CASE("sigv4: encoding and header canonicalisation") {
    CHECK(uri_encode("a b/c~d_e.f-g", false) == "a%20b/c~d_e.f-g");
    CHECK(uri_encode("a b/c", true) == "a%20b%2Fc");
    CHECK(uri_encode("\xc3\xa9+=&", true) == "%C3%A9%2B%3D%26");
    Request r{"PUT", "/b/k", {}, {{"X-Amz-Meta-A", "  two   words "}, {"x-amz-meta-a", "x"}, {"Host", "h:1"}}, "UNSIGNED-PAYLOAD"};
    CHECK(canonical_request(r) == "PUT\n/b/k\n\nhost:h:1\nx-amz-meta-a:two words,x\n\nhost;x-amz-meta-a\nUNSIGNED-PAYLOAD");
    CHECK(amz_date(1440938160) == "20150830T123600Z");
    CHECK(signatures_equal("abc", "abc"));
    CHECK_FALSE(signatures_equal("abc", "abd"));
    CHECK_FALSE(signatures_equal("abc", "ab"));
}

TEST_CASE("sigv4: credentials from the environment") {
    const char* saved_id = std::getenv("AWS_ACCESS_KEY_ID");
    const char* saved_secret = std::getenv("AWS_SECRET_ACCESS_KEY");
    std::string id = saved_id ? saved_id : "", secret = saved_secret ? saved_secret : "";
    ::unsetenv("AWS_ACCESS_KEY_ID");
    ::setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
    try {
        credentials_from_env("s3://b");
        FAIL("no exception");
    } catch (const ConfigError& e) {
        CHECK(e.exit_code() == 78);
        CHECK(std::string(e.what()).find("s3://b: no AWS credentials: set AWS_ACCESS_KEY_ID") == 0);
    }
    ::setenv("AWS_ACCESS_KEY_ID", "k", 1);
    CHECK(credentials_from_env("x").secret_key == "s");
    if (saved_id) ::setenv("AWS_ACCESS_KEY_ID", id.c_str(), 1); else ::unsetenv("AWS_ACCESS_KEY_ID");
    if (saved_secret) ::setenv("AWS_SECRET_ACCESS_KEY", secret.c_str(), 1); else ::unsetenv("AWS_SECRET_ACCESS_KEY");
}
