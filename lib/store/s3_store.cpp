#include "store/s3_store.h"

#include <curl/curl.h>
#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

namespace {

constexpr long kBackoffBaseMs = 100;
constexpr long kBackoffCapMs = 2000;
// A sanity cap on one object (chunks are <= 512 KiB + overhead; manifests are small).
constexpr size_t kMaxObjectBytes = size_t(1) << 30;

// libcurl is loaded when the first s3:// store is made, not when the process starts:
// its dependency tree (some 30 shared libraries: TLS, Kerberos, LDAP, ...) costs
// every tool that can talk to S3 ~4.5 ms of start-up here, whether it does or not
// (snapfs mounting a dir: store, snap-fetch from memcached).
struct CurlApi {
    decltype(&::curl_global_init) global_init;
    decltype(&::curl_easy_init) easy_init;
    decltype(&::curl_easy_cleanup) easy_cleanup;
    decltype(&::curl_easy_reset) easy_reset;
    decltype(&::curl_easy_setopt) easy_setopt;
    decltype(&::curl_easy_perform) easy_perform;
    decltype(&::curl_easy_getinfo) easy_getinfo;
    decltype(&::curl_easy_strerror) easy_strerror;
    decltype(&::curl_slist_append) slist_append;
    decltype(&::curl_slist_free_all) slist_free_all;
};

CurlApi& curl() {  // filled by curl_init_once
    static CurlApi api{};
    return api;
}

void curl_init_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        void* lib = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!lib) throw UnavailableError(std::string("s3 store: cannot load libcurl: ") + ::dlerror());
        CurlApi& a = curl();
        auto sym = [lib](auto& fn, const char* name) {
            fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, name));
            if (!fn) throw UnavailableError(std::string("s3 store: libcurl.so.4 lacks ") + name);
        };
        sym(a.global_init, "curl_global_init");
        sym(a.easy_init, "curl_easy_init");
        sym(a.easy_cleanup, "curl_easy_cleanup");
        sym(a.easy_reset, "curl_easy_reset");
        sym(a.easy_setopt, "curl_easy_setopt");
        sym(a.easy_perform, "curl_easy_perform");
        sym(a.easy_getinfo, "curl_easy_getinfo");
        sym(a.easy_strerror, "curl_easy_strerror");
        sym(a.slist_append, "curl_slist_append");
        sym(a.slist_free_all, "curl_slist_free_all");
        if (a.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("libcurl: global init failed");
    });
}

std::string percent_decode(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() &&
            std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::string xml_unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '&') {
            out += s[i];
            continue;
        }
        static const std::pair<const char*, char> kEnt[] = {
            {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        bool done = false;
        for (const auto& [e, c] : kEnt) {
            if (s.substr(i).starts_with(e)) {
                out += c;
                i += std::char_traits<char>::length(e) - 1;
                done = true;
                break;
            }
        }
        if (!done) out += '&';
    }
    return out;
}

// Every <tag>text</tag> in an S3 XML answer (flat elements: Key, Code, ...).
std::vector<std::string> xml_all(std::string_view xml, const std::string& tag) {
    std::vector<std::string> out;
    std::string open = "<" + tag + ">", close = "</" + tag + ">";
    size_t pos = 0;
    while ((pos = xml.find(open, pos)) != std::string_view::npos) {
        size_t start = pos + open.size();
        size_t end = xml.find(close, start);
        if (end == std::string_view::npos) break;
        out.push_back(xml_unescape(xml.substr(start, end - start)));
        pos = end + close.size();
    }
    return out;
}

std::string xml_first(std::string_view xml, const std::string& tag) {
    auto all = xml_all(xml, tag);
    return all.empty() ? "" : all[0];
}

const char* reason_phrase(long status) {
    switch (status) {
    case 301: return "Moved Permanently";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

size_t write_body(char* p, size_t size, size_t n, void* ud) noexcept {
    // Nothing may throw through libcurl: a failed append ends the transfer
    // (CURLE_WRITE_ERROR) and the request reports it.
    try {
        auto* out = static_cast<std::vector<uint8_t>*>(ud);
        if (out->size() + size * n > kMaxObjectBytes) return 0;
        out->insert(out->end(), reinterpret_cast<uint8_t*>(p), reinterpret_cast<uint8_t*>(p) + size * n);
        return size * n;
    } catch (...) {
        return 0;
    }
}

bool retryable(CURLcode c) {
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

void sleep_backoff(int attempt) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    long cap = std::min(kBackoffCapMs, kBackoffBaseMs << std::min(attempt - 1, 10));
    // Half fixed, half random: spreads the retries of parallel workers apart.
    long ms = cap / 2 + static_cast<long>(rng() % static_cast<uint64_t>(cap / 2 + 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

S3Location parse_s3_uri(const std::string& uri) {
    if (uri.rfind("s3://", 0) != 0) throw UsageError("store " + uri + ": expected s3://bucket[/prefix]");
    UriParts parts = split_uri_options(uri.substr(5));
    const std::string& rest = parts.path;
    S3Location loc;
    auto slash = rest.find('/');
    loc.bucket = rest.substr(0, slash);
    loc.prefix = slash == std::string::npos ? "" : rest.substr(slash + 1);
    while (!loc.prefix.empty() && loc.prefix.back() == '/') loc.prefix.pop_back();
    while (!loc.prefix.empty() && loc.prefix.front() == '/') loc.prefix.erase(0, 1);
    if (loc.bucket.empty()) throw UsageError("store " + uri + ": no bucket (expected s3://bucket[/prefix])");
    for (char c : loc.bucket)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_'))
            throw UsageError("store " + uri + ": bad bucket name '" + loc.bucket + "'");
    for (const auto& [key, raw] : parts.options) {
        const std::string& k = key;  // clang 14 cannot capture a structured binding
        std::string v = percent_decode(raw);
        auto bad = [&] { return UsageError("store " + uri + ": bad " + k + " '" + v + "'"); };
        if (k == "endpoint") {
            while (!v.empty() && v.back() == '/') v.pop_back();
            if (v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) throw bad();
            std::string authority = v.substr(v.find("://") + 3);
            if (authority.empty() || authority.find('/') != std::string::npos ||
                authority.front() == ':' || authority.back() == ':')
                throw bad();  // a host[:port], no path
            loc.endpoint = v;
        } else if (k == "region") {
            if (v.empty()) throw bad();
            loc.region = v;
        } else if (k == "retries") {
            char* end = nullptr;
            long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || n < 1 || n > 20) throw bad();
            loc.retries = static_cast<int>(n);
        } else if (k == "timeout") {
            char* end = nullptr;
            double s = std::strtod(v.c_str(), &end);
            if (v.empty() || *end || !(s > 0) || s > 3600) throw bad();
            loc.timeout_ms = static_cast<long>(s * 1000);
            loc.connect_timeout_ms = std::min(loc.connect_timeout_ms, loc.timeout_ms);
        } else {
            throw UsageError("store " + uri + ": unknown option '" + k +
                             "' (s3: takes endpoint=URL, region=R, retries=N, timeout=SECS)");
        }
    }
    return loc;
}

std::unique_ptr<Store> make_s3_store(const std::string& uri) {
    S3Location loc = parse_s3_uri(uri);
    std::string name = "s3://" + loc.bucket + (loc.prefix.empty() ? "" : "/" + loc.prefix);
    return std::make_unique<S3Store>(uri, std::move(loc), sigv4::credentials_from_env(name));
}

struct S3Store::Response {
    CURLcode code = CURLE_OK;
    std::string curl_error;
    long status = 0;
    std::vector<uint8_t> body;
    std::string body_text() const { return {body.begin(), body.end()}; }
};

struct S3Store::Handle {
    std::unique_ptr<CURL, void (*)(CURL*)> curl{kindling::curl().easy_init(), kindling::curl().easy_cleanup};
    char errbuf[CURL_ERROR_SIZE] = {};
};

S3Store::S3Store(std::string uri, S3Location loc, sigv4::Credentials creds)
    : uri_(std::move(uri)), loc_(std::move(loc)), creds_(std::move(creds)) {
    curl_init_once();
    name_ = "s3://" + loc_.bucket + (loc_.prefix.empty() ? "" : "/" + loc_.prefix);
    if (loc_.region.empty()) {
        for (const char* n : {"AWS_REGION", "AWS_DEFAULT_REGION"})
            if (const char* v = std::getenv(n); v && *v && loc_.region.empty()) loc_.region = v;
        if (loc_.region.empty()) loc_.region = "us-east-1";
    }
    path_style_ = !loc_.endpoint.empty();
    if (path_style_) {
        base_url_ = loc_.endpoint;
        host_ = loc_.endpoint.substr(loc_.endpoint.find("://") + 3);
    } else {
        host_ = loc_.bucket + ".s3." + loc_.region + ".amazonaws.com";
        base_url_ = "https://" + host_;
    }
}

S3Store::~S3Store() = default;

std::string S3Store::object_key(const Digest& id) const {
    std::string h = id.hex();
    return (loc_.prefix.empty() ? "" : loc_.prefix + "/") + h.substr(0, 2) + "/" + h.substr(2);
}

std::unique_ptr<S3Store::Handle> S3Store::acquire() {
    {
        std::lock_guard<std::mutex> g(pool_mu_);
        if (!pool_.empty()) {
            auto h = std::move(pool_.back());
            pool_.pop_back();
            return h;
        }
    }
    auto h = std::make_unique<Handle>();
    if (!h->curl) throw Error(name_ + ": libcurl: cannot create a handle");
    return h;
}

void S3Store::release(std::unique_ptr<Handle> h) {
    std::lock_guard<std::mutex> g(pool_mu_);
    pool_.push_back(std::move(h));
}

S3Store::Response S3Store::attempt(Handle& h, const std::string& method, const std::string& key,
                                   const sigv4::Params& query, std::span<const uint8_t> body,
                                   bool want_body) {
    CURL* c = h.curl.get();
    // Reset keeps the handle's live connections and DNS cache: that is the reuse.
    curl().easy_reset(c);
    std::string path = path_style_ ? "/" + loc_.bucket + (key.empty() ? "" : "/" + key) : "/" + key;
    std::string payload_hash = body.empty() ? sigv4::kEmptyPayloadHash : to_hex(sha256(body).bytes);
    sigv4::Request sr{method, path, query,
                      {{"host", host_},
                       {"x-amz-content-sha256", payload_hash},
                       {"x-amz-date", sigv4::amz_date(std::time(nullptr))}},
                      payload_hash};
    if (!creds_.session_token.empty()) sr.headers.emplace_back("x-amz-security-token", creds_.session_token);
    std::string auth = sigv4::authorization(sr, creds_, loc_.region, "s3");

    std::string url = base_url_ + sigv4::uri_encode(path, false);
    for (size_t i = 0; i < query.size(); ++i)
        url += (i ? "&" : "?") + sigv4::uri_encode(query[i].first, true) + "=" +
               sigv4::uri_encode(query[i].second, true);

    struct SList {
        curl_slist* p = nullptr;
        ~SList() { curl().slist_free_all(p); }
        void add(const std::string& s) {
            curl_slist* n = curl().slist_append(p, s.c_str());
            if (!n) throw std::bad_alloc();
            p = n;
        }
    } hdrs;
    for (const auto& [n, v] : sr.headers) hdrs.add(n + ": " + v);
    hdrs.add("Authorization: " + auth);
    hdrs.add("Expect:");  // no 100-continue round trip before a PUT body
    if (method == "PUT") hdrs.add("Content-Type: application/octet-stream");

    Response r;
    r.body.clear();
    h.errbuf[0] = 0;
    curl().easy_setopt(c, CURLOPT_URL, url.c_str());
    curl().easy_setopt(c, CURLOPT_HTTPHEADER, hdrs.p);
    curl().easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
    curl().easy_setopt(c, CURLOPT_ERRORBUFFER, h.errbuf);
    curl().easy_setopt(c, CURLOPT_TIMEOUT_MS, loc_.timeout_ms);
    curl().easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, loc_.connect_timeout_ms);
    curl().easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl().easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl().easy_setopt(c, CURLOPT_WRITEFUNCTION, write_body);
    curl().easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
    if (method == "HEAD") {
        curl().easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method == "PUT") {
        curl().easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl().easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
        curl().easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    } else if (method != "GET") {
        curl().easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    (void)want_body;
    counters_.requests++;
    counters_.bytes_out += body.size();
    r.code = curl().easy_perform(c);
    if (r.code != CURLE_OK) {
        r.curl_error = h.errbuf[0] ? h.errbuf : curl().easy_strerror(r.code);
        return r;
    }
    curl().easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    long connects = 0;
    curl().easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
    counters_.connects += static_cast<uint64_t>(connects);
    counters_.bytes_in += r.body.size();
    return r;
}

S3Store::Response S3Store::request(const std::string& method, const std::string& key,
                                   const sigv4::Params& query, std::span<const uint8_t> body,
                                   bool want_body) {
    auto h = acquire();
    struct Release {
        S3Store* s;
        std::unique_ptr<Handle>& h;
        ~Release() {
            if (h) s->release(std::move(h));
        }
    } rel{this, h};
    Response r;
    for (int n = 1;; ++n) {
        r = attempt(*h, method, key, query, body, want_body);
        bool again = r.code != CURLE_OK ? retryable(r.code) : (r.status >= 500 || r.status == 429);
        if (!again || n >= loc_.retries) break;
        counters_.retries++;
        log_verbose("%s: %s %s: %s; retry %d of %d", name_.c_str(), method.c_str(), key.c_str(),
                  r.code != CURLE_OK ? r.curl_error.c_str() : std::to_string(r.status).c_str(), n,
                  loc_.retries - 1);
        sleep_backoff(n);
    }
    return r;
}

void S3Store::fail(const std::string& what, const Response& r) {
    std::string where = name_ + ": " + what + ": ";
    std::string after = loc_.retries > 1 ? " (after " + std::to_string(loc_.retries) + " attempts)" : "";
    if (r.code != CURLE_OK) {
        std::string msg = where + (loc_.endpoint.empty() ? host_ : loc_.endpoint) + ": " + r.curl_error;
        if (r.code == CURLE_COULDNT_CONNECT || r.code == CURLE_COULDNT_RESOLVE_HOST)
            throw UnavailableError(msg + after);
        if (retryable(r.code)) throw Error(msg + after, kExitTempFail);
        throw UnavailableError(msg);
    }
    std::string body = r.body_text();
    std::string code = xml_first(body, "Code"), message = xml_first(body, "Message");
    std::string status = std::to_string(r.status) + " " + reason_phrase(r.status);
    while (!status.empty() && status.back() == ' ') status.pop_back();
    std::string detail = code.empty() ? "" : " (" + code + (message.empty() ? "" : ": " + message) + ")";
    if (r.status == 403)
        throw Error(where + status + ": check AWS credentials" + detail, kExitNoPerm);
    if (r.status == 404 && code == "NoSuchBucket")
        throw UnavailableError(where + "no bucket '" + loc_.bucket + "'" + detail);
    if (r.status >= 500 || r.status == 429) throw Error(where + status + detail + after, kExitTempFail);
    throw UnavailableError(where + status + detail);
}

bool S3Store::has(const Digest& id) {
    std::string key = object_key(id);
    Response r = request("HEAD", key, {}, {}, false);
    if (r.code == CURLE_OK && r.status / 100 == 2) return true;
    if (r.code == CURLE_OK && r.status == 404) return false;
    fail("HEAD " + key, r);
}

std::optional<std::vector<uint8_t>> S3Store::get(const Digest& id) {
    std::string key = object_key(id);
    Response r = request("GET", key, {}, {}, true);
    if (r.code == CURLE_OK && r.status / 100 == 2) return std::move(r.body);
    if (r.code == CURLE_OK && r.status == 404 && xml_first(r.body_text(), "Code") != "NoSuchBucket")
        return std::nullopt;
    fail("GET " + key, r);
}

bool S3Store::put(const Digest& id, std::span<const uint8_t> data) {
    // Two workers putting the same chunk: the second waits for the first and then
    // finds the object, so exactly one put() reports it new (dedup counts stay exact).
    {
        std::unique_lock<std::mutex> lk(put_mu_);
        put_cv_.wait(lk, [&] { return !in_flight_.contains(id); });
        in_flight_.insert(id);
    }
    struct Done {
        S3Store* s;
        const Digest& id;
        ~Done() {
            {
                std::lock_guard<std::mutex> g(s->put_mu_);
                s->in_flight_.erase(id);
            }
            s->put_cv_.notify_all();
        }
    } done{this, id};
    if (has(id)) return false;
    std::string key = object_key(id);
    Response r = request("PUT", key, {}, data, false);
    if (r.code == CURLE_OK && r.status / 100 == 2) return true;
    fail("PUT " + key, r);
}

bool S3Store::remove(const Digest& id) {
    if (!has(id)) return false;
    std::string key = object_key(id);
    Response r = request("DELETE", key, {}, {}, false);
    if (r.code == CURLE_OK && (r.status / 100 == 2 || r.status == 404)) return r.status != 404;
    fail("DELETE " + key, r);
}

std::vector<Digest> S3Store::list() {
    std::vector<Digest> out;
    std::string prefix = loc_.prefix.empty() ? "" : loc_.prefix + "/";
    std::string token;
    for (;;) {
        // ListObjectsV2 (S3 API Reference): at most 1000 keys per page.
        sigv4::Params q{{"list-type", "2"}, {"max-keys", "1000"}};
        if (!prefix.empty()) q.emplace_back("prefix", prefix);
        if (!token.empty()) q.emplace_back("continuation-token", token);
        Response r = request("GET", "", q, {}, true);
        if (r.code != CURLE_OK || r.status / 100 != 2) fail("list " + prefix, r);
        std::string xml = r.body_text();
        for (const std::string& key : xml_all(xml, "Key")) {
            std::string rel = key.substr(std::min(prefix.size(), key.size()));
            if (key.rfind(prefix, 0) != 0 || rel.size() != 65 || rel[2] != '/') continue;
            if (auto d = Digest::from_hex(rel.substr(0, 2) + rel.substr(3))) out.push_back(*d);
        }
        token = xml_first(xml, "NextContinuationToken");
        if (xml_first(xml, "IsTruncated") != "true" || token.empty()) break;
    }
    return out;
}

}  // namespace kindling
