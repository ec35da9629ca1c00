// Shared by the libFuzzer targets in tests/fuzz (one per input format or device the
// outside world drives).  Each target defines LLVMFuzzerTestOneInput; `make fuzz`
// links it with libFuzzer (clang), `make check` with replay/main.cpp (g++, under
// ASan+UBSan) to run every file of tests/fuzz/corpus/NAME once.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "base/log.h"
#include "http/http_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace kindling::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// Takes fixed-size fields from the front of the input; past the end they read as 0.
class Input {
public:
    Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
    template <class T>
    T take() {
        T v{};
        size_t k = n_ < sizeof v ? n_ : sizeof v;
        std::memcpy(&v, p_, k);
        p_ += k;
        n_ -= k;
        return v;
    }
    std::span<const uint8_t> bytes(size_t want) {
        size_t k = n_ < want ? n_ : want;
        std::span<const uint8_t> s(p_, k);
        p_ += k;
        n_ -= k;
        return s;
    }
    std::span<const uint8_t> rest() { return bytes(n_); }
    size_t left() const { return n_; }

private:
    const uint8_t* p_;
    size_t n_;
};

// An HTTP request written as text (the seeds stay readable):
//   METHOD SP TARGET LF, then "Name: value" lines, an empty line, the body.
// Anything missing is empty.  CR before LF is dropped.
inline HttpRequest parse_request_text(std::string_view t) {
    HttpRequest req;
    auto line = [&t]() {
        size_t nl = t.find('\n');
        std::string_view l = t.substr(0, nl);
        t = nl == std::string_view::npos ? std::string_view{} : t.substr(nl + 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        return l;
    };
    std::string_view first = line();
    size_t sp = first.find(' ');
    req.method = std::string(first.substr(0, sp));
    if (sp != std::string_view::npos) req.target = std::string(first.substr(sp + 1));
    while (!t.empty()) {
        std::string_view l = line();
        if (l.empty()) break;
        size_t colon = l.find(':');
        std::string_view name = l.substr(0, colon), value;
        if (colon != std::string_view::npos) value = l.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        req.headers.add(name, value);
    }
    req.body = std::string(t);
    req.peer = "fuzz";
    return req;
}

// A private directory for targets that need files, removed at exit: in $TMPDIR, else
// /dev/shm (the journal's fdatasync per input costs nothing on tmpfs), else /tmp.
class TempDir {
public:
    TempDir() {
        const char* base = getenv("TMPDIR");
        if (!base || !*base) base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        std::string t = base + std::string("/kindling-fuzz.XXXXXX");
        path = ::mkdtemp(t.data()) ? t : "";
    }
    ~TempDir() {
        std::error_code ec;
        if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
    std::string path;
};

// Library logging off: a fuzzer's input makes every warning fire.
inline void quiet() { log_init("fuzz", LogLevel::kQuiet); }

}  // namespace kindling::fuzz
