// routerd's function registry: the JSON forms routerd(1) documents, qualifier
// resolution, tenant scoping, and the errors a bad file gets.
#include <doctest/doctest.h>

#include <string>

#include "base/error.h"
#include "route/registry.h"

using namespace kindling;
using namespace kindling::route;

namespace {

const char* kRegistry = R"({"functions": [
  {"name": "hello", "tenant": "111111111111", "memory": 64, "timeout": 2.5, "concurrency": 3,
   "description": "says hello", "snapshot": {"dir": "/snap/hello"}},
  {"name": "multi", "tenant": "111111111111",
   "versions": {"1": {"snapshot": {"dir": "/snap/m1"}},
                "2": {"manifest": "abc", "store": "s3://bucket/chunks"},
                "10": {"dir": "/snap/m10"}},
   "aliases": {"prod": "2"}},
  {"name": "theirs", "tenant": "222222222222", "snapshot": {"dir": "/snap/t"}}
]})";

}  // namespace

TEST_CASE("registry: functions, defaults, versions and aliases") {
    auto reg = Registry::parse(kRegistry, "functions.json");
    const Function* hello = reg->find("111111111111", "hello");
    REQUIRE(hello);
    CHECK(hello->memory_mib == 64);
    CHECK(hello->timeout_s == 2.5);
    CHECK(hello->concurrency == 3);
    CHECK(hello->description == "says hello");
    CHECK(hello->versions.at("$LATEST").dir == "/snap/hello");
    CHECK(hello->resolve("") == "$LATEST");
    CHECK(hello->resolve("$LATEST") == "$LATEST");
    CHECK_FALSE(hello->resolve("1"));

    const Function* multi = reg->find("111111111111", "multi");
    REQUIRE(multi);
    CHECK(multi->memory_mib == 128);  // defaults
    CHECK(multi->timeout_s == 3.0);
    CHECK(multi->concurrency == 10);
    // $LATEST is the highest numbered version (numerically: 10 > 2).
    CHECK(multi->versions.at("$LATEST").dir == "/snap/m10");
    CHECK(multi->versions.at("2").manifest == "abc");
    CHECK(multi->versions.at("2").store == "s3://bucket/chunks");
    CHECK(multi->resolve("prod") == "2");
    CHECK(multi->resolve("1") == "1");
    CHECK_FALSE(multi->resolve("staging"));
}

TEST_CASE("registry: a function is found only by its tenant, except for event replay") {
    auto reg = Registry::parse(kRegistry, "functions.json");
    CHECK_FALSE(reg->find("111111111111", "theirs"));
    CHECK(reg->find("222222222222", "theirs"));
    CHECK(reg->find_any("theirs"));
    CHECK_FALSE(reg->find_any("nope"));
    auto mine = reg->of_tenant("111111111111");
    REQUIRE(mine.size() == 2);
    CHECK(mine[0]->name == "hello");
    CHECK(mine[1]->name == "multi");
    CHECK(reg->of_tenant("333333333333").empty());
}

TEST_CASE("registry: a bare array is accepted") {
    auto reg = Registry::parse(R"([{"name": "a", "tenant": "1", "snapshot": {"dir": "/s"}}])", "f.json");
    CHECK(reg->find("1", "a"));
}

TEST_CASE("registry: bad files are DataErrors naming the file and the function") {
    auto error_of = [](const std::string& text) -> std::string {
        try {
            Registry::parse(text, "f.json");
        } catch (const DataError& e) {
            return e.what();
        }
        return "";
    };
    CHECK(error_of("{").find("f.json") != std::string::npos);
    CHECK(error_of("[" + std::string(100000, '{') + std::string(100000, '}') + "]") ==
          "f.json: JSON nested deeper than 64 levels (at byte 64)");
    CHECK(error_of(R"({"functions": 3})").find("expected") != std::string::npos);
    CHECK(error_of(R"([{"name": "a:b", "tenant": "1", "snapshot": {"dir": "/s"}}])").find("bad function name") !=
          std::string::npos);
    CHECK(error_of(R"([{"name": "a", "tenant": "1", "timeout": 0, "snapshot": {"dir": "/s"}}])")
              .find("f.json: function a: timeout") != std::string::npos);
    CHECK(error_of(R"([{"name": "a", "tenant": "1"}])").find("function a: no versions") != std::string::npos);
    CHECK(error_of(R"([{"name": "a", "tenant": "1", "snapshot": {"manifest": "m"}}])").find("snapshot needs") !=
          std::string::npos);
    CHECK(error_of(R"([{"name": "a", "tenant": "1", "snapshot": {"dir": "/s"}, "aliases": {"p": "9"}}])")
              .find("alias p names no version") != std::string::npos);
    CHECK(error_of(R"([{"name": "a", "tenant": "1", "snapshot": {"dir": "/s"}},
                       {"name": "a", "tenant": "2", "snapshot": {"dir": "/s"}}])")
              .find("function a: defined twice") != std::string::npos);
    CHECK(error_of(R"([{"name": "a", "snapshot": {"dir": "/s"}}])").find("function a:") != std::string::npos);
}
