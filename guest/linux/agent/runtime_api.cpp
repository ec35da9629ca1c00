#include "runtime_api.h"

#include <signal.h>
#include <spawn.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/log.h"

extern char** environ;

namespace kindling::agent {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kPrefix = "/2018-06-01/runtime/";
constexpr int kMaxJsonDepth = 64;

std::string new_request_id() {
    uint8_t b[16];
    if (::getrandom(b, sizeof b, 0) != sizeof b) throw_errno("getrandom");
    b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // RFC 9562 version 4
    b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
    char s[37];
    std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return s;
}

std::string lambda_error(const std::string& type, const std::string& message) {
    return json{{"errorMessage", message}, {"errorType", type}}.dump();
}

// The runtime's error body when it is a JSON object (depth-bounded), else one made
// from its text; `type` fills a missing errorType.
std::string error_body(const std::string& body, const std::string& type) {
    int depth = 0;
    bool too_deep = false;
    json j = json::parse(
        body,
        [&](int d, json::parse_event_t e, json&) {
            if (e == json::parse_event_t::object_start || e == json::parse_event_t::array_start) depth = d + 1;
            if (depth > kMaxJsonDepth) too_deep = true;
            return !too_deep;
        },
        false);
    if (too_deep || !j.is_object()) return lambda_error(type, body.substr(0, 4096));
    if (!j.contains("errorType")) j["errorType"] = type;
    return j.dump();
}

HttpResponse accepted() { return HttpResponse::json(202, R"({"status":"OK"})"); }

HttpResponse api_error(int status, const std::string& type, const std::string& message) {
    return HttpResponse::json(status, lambda_error(type, message));
}

std::string utc_now() {
    char buf[32];
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

struct RuntimeApi::Invocation {
    std::string id;
    std::string payload;
    SteadyClock::time_point deadline;
    int64_t deadline_epoch_ms = 0;
    bool delivered = false;
    std::optional<InvokeAnswer> answer;
};

RuntimeApi::RuntimeApi(RuntimeConfig config, std::function<void()> on_first_next)
    : cfg_(std::move(config)), on_first_next_(std::move(on_first_next)) {}

RuntimeApi::~RuntimeApi() {
    if (server_) server_->stop();
    std::lock_guard lk(mu_);
    kill_runtime_locked();
}

void RuntimeApi::start(const std::function<void()>& before_runtime) {
    HttpServerOptions o;
    o.label = "Runtime API";
    o.server_name = "kindling-agent";
    // Larger than the response limit, so an oversize answer reaches the handler and
    // fails its invocation with Function.ResponseSizeTooLarge instead of a bare 413.
    o.max_body_bytes = cfg_.max_response * 4;
    o.request_timeout = std::chrono::hours(24);  // the runtime long-polls /next
    server_ = std::make_unique<HttpServer>(
        cfg_.address, [this](const HttpRequest& r, HttpResponder respond) { handle_async(r, std::move(respond)); }, o);
    server_->start();
    if (before_runtime) before_runtime();
    std::lock_guard lk(mu_);
    start_runtime_locked();
}

void RuntimeApi::start_runtime_locked() {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    auto add = [&](const std::string& k, const std::string& v) { env_strings.push_back(k + "=" + v); };
    add("AWS_LAMBDA_RUNTIME_API", cfg_.address);
    add("LAMBDA_TASK_ROOT", cfg_.task_root);
    add("LAMBDA_RUNTIME_DIR", "/var/runtime");
    add("_HANDLER", cfg_.handler);
    add("AWS_LAMBDA_FUNCTION_NAME", cfg_.function_name);
    add("AWS_LAMBDA_FUNCTION_VERSION", cfg_.function_version);
    add("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", std::to_string(cfg_.memory_mb));
    for (const auto& [k, v] : cfg_.environment) add(k, v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string exe = cfg_.bootstrap;
    char* argv[] = {exe.data(), nullptr};

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);  // the agent blocks SIGCHLD for its signalfd
    posix_spawnattr_setpgroup(&attr, 0);       // its own group: a timeout kills its children too
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, cfg_.task_root.c_str());
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &attr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    counters_.runtime_starts++;
    init_error_.reset();
    if (rc != 0) {
        runtime_pid_ = -1;
        runtime_exited_ = true;
        exit_reason_ = "cannot start " + exe + ": " + std::strerror(rc);
        log_error("%s", exit_reason_.c_str());
        return;
    }
    runtime_pid_ = pid;
    runtime_exited_ = false;
    exit_reason_.clear();
    log_verbose("runtime %s started (pid %d)", exe.c_str(), pid);
}

void RuntimeApi::kill_runtime_locked() {
    if (runtime_pid_ > 0) ::kill(-runtime_pid_, SIGKILL);
    runtime_pid_ = -1;  // its exit is reaped later and ignored
    runtime_exited_ = true;
    if (parked_next_) {
        (*parked_next_)(api_error(500, "Runtime.Killed", "the runtime was stopped"));
        parked_next_.reset();
    }
}

void RuntimeApi::child_exited(pid_t pid, int status) {
    std::lock_guard lk(mu_);
    if (pid != runtime_pid_) return;
    runtime_pid_ = -1;
    runtime_exited_ = true;
    counters_.runtime_exits++;
    exit_reason_ = WIFSIGNALED(status) ? std::string("signal: ") + strsignal(WTERMSIG(status))
                                       : "exit status " + std::to_string(WEXITSTATUS(status));
    log_info("runtime exited (%s)", exit_reason_.c_str());
    if (parked_next_) {
        (*parked_next_)(api_error(500, "Runtime.Exited", "the runtime exited"));
        parked_next_.reset();
    }
    cv_.notify_all();
}

void RuntimeApi::note_restore(uint64_t generation) {
    std::lock_guard lk(mu_);
    restore_generation_ = generation;
}

RuntimeApi::Counters RuntimeApi::counters() const {
    std::lock_guard lk(mu_);
    return counters_;
}

InvokeAnswer RuntimeApi::invoke(const std::string& payload) {
    std::lock_guard serial(invoke_mu_);
    std::unique_lock lk(mu_);
    counters_.invokes++;
    if (runtime_exited_) start_runtime_locked();
    auto inv = std::make_unique<Invocation>();
    inv->id = new_request_id();
    inv->payload = payload;
    inv->deadline = SteadyClock::now() + cfg_.timeout;
    inv->deadline_epoch_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 (std::chrono::system_clock::now() + cfg_.timeout).time_since_epoch())
                                 .count();
    current_ = std::move(inv);
    if (parked_next_) {
        HttpResponder r = std::move(*parked_next_);
        parked_next_.reset();
        deliver_locked(std::move(r));
    }
    cv_.wait_until(lk, current_->deadline, [&] { return current_->answer || runtime_exited_ || init_error_; });

    InvokeAnswer a;
    const std::string id = current_->id;
    if (current_->answer) {
        a = std::move(*current_->answer);
    } else if (init_error_) {
        a = {false, error_body(*init_error_, "Runtime.InitError")};
        kill_runtime_locked();  // Lambda initialises again for the next invocation
    } else if (runtime_exited_) {
        a = {false, lambda_error("Runtime.ExitError", "RequestId: " + id + " Error: Runtime exited with error: " + exit_reason_)};
    } else {
        counters_.timeouts++;
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.2f", std::chrono::duration<double>(cfg_.timeout).count());
        a = {false, lambda_error("Sandbox.Timedout", utc_now() + " " + id + " Task timed out after " + secs + " seconds")};
        kill_runtime_locked();
    }
    if (!a.ok) counters_.errors++;
    current_.reset();
    return a;
}

void RuntimeApi::deliver_locked(HttpResponder respond) {
    HttpResponse r{200, {}, current_->payload};
    r.headers.set("Content-Type", "application/json");
    r.headers.set("Lambda-Runtime-Aws-Request-Id", current_->id);
    r.headers.set("Lambda-Runtime-Deadline-Ms", std::to_string(current_->deadline_epoch_ms));
    r.headers.set("Lambda-Runtime-Invoked-Function-Arn",
                  "arn:aws:lambda:" + cfg_.environment["AWS_REGION"] + ":000000000000:function:" + cfg_.function_name);
    r.headers.set("Lambda-Runtime-Trace-Id", "Root=1-00000000-" + current_->id.substr(0, 8) + ";Sampled=0");
    if (restore_generation_) r.headers.set("Kindling-Restore-Generation", std::to_string(restore_generation_));
    current_->delivered = true;
    respond(std::move(r));
}

void RuntimeApi::finish_locked(InvokeAnswer answer) {
    current_->answer = std::move(answer);
    cv_.notify_all();
}

void RuntimeApi::handle_async(const HttpRequest& req, HttpResponder respond) {
    std::string_view path = req.path();
    if (req.method == "GET" && path == std::string(kPrefix) + "invocation/next") {
        bool first = false;
        {
            std::lock_guard lk(mu_);
            first = !ready_reported_;
            ready_reported_ = true;
            if (current_ && !current_->delivered) {
                deliver_locked(std::move(respond));
            } else {
                if (parked_next_) (*parked_next_)(api_error(400, "InvalidRequest", "another /next replaced this one"));
                parked_next_ = std::move(respond);
            }
        }
        if (first && on_first_next_) on_first_next_();
        return;
    }
    respond(handle(req));
}

HttpResponse RuntimeApi::handle(const HttpRequest& req) {
    std::string_view path = req.path();
    if (req.method != "POST" || !path.starts_with(kPrefix))
        return api_error(404, "InvalidRequest", "no such Runtime API resource: " + req.method + " " + std::string(path));
    path.remove_prefix(kPrefix.size());
    std::lock_guard lk(mu_);
    if (path == "init/error") {
        init_error_ = error_body(req.body, req.headers.get("Lambda-Runtime-Function-Error-Type").value_or("Runtime.InitError"));
        log_info("runtime reported an init error");
        cv_.notify_all();
        return accepted();
    }
    constexpr std::string_view kInv = "invocation/";
    size_t slash = path.rfind('/');
    if (!path.starts_with(kInv) || slash <= kInv.size())
        return api_error(404, "InvalidRequest", "no such Runtime API resource: POST " + std::string(req.path()));
    std::string_view id = path.substr(kInv.size(), slash - kInv.size());
    std::string_view what = path.substr(slash + 1);
    if (what != "response" && what != "error")
        return api_error(404, "InvalidRequest", "no such Runtime API resource: POST " + std::string(req.path()));
    if (!current_ || !current_->delivered || current_->answer || id != current_->id)
        return api_error(400, "InvalidRequestID", "no invocation " + std::string(id) + " is waiting for an answer");
    if (what == "error") {
        finish_locked({false, error_body(req.body, req.headers.get("Lambda-Runtime-Function-Error-Type").value_or("Unhandled"))});
        return accepted();
    }
    if (req.body.size() > cfg_.max_response) {
        std::string msg = "Response payload size (" + std::to_string(req.body.size()) +
                          " bytes) exceeded maximum allowed payload size (" + std::to_string(cfg_.max_response) + " bytes).";
        finish_locked({false, lambda_error("Function.ResponseSizeTooLarge", msg)});
        return api_error(413, "RequestEntityTooLarge", msg);
    }
    finish_locked({true, req.body});
    return accepted();
}

}  // namespace kindling::agent
