#include "router.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "assign/assign_api.h"
#include "base/error.h"
#include "base/log.h"
#include "lambda_api.h"

namespace kindling::routerd {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kSyncPayloadLimit = 6 * 1024 * 1024;  // 6291456, Lambda's
constexpr size_t kEventPayloadLimit = 256 * 1024;
constexpr double kBucketBounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                    0.1,    0.2,   0.5,   1,     2,    5,    10};

json function_config(const Function& f, const std::string& region, const std::string& version) {
    return {{"FunctionName", f.name},
            {"FunctionArn", arn(region, f.tenant, f.name, version == "$LATEST" ? "" : version)},
            {"Runtime", "provided.al2"},
            {"Role", "arn:aws:iam::" + f.tenant + ":role/kindling"},
            {"Handler", "nano"},
            {"CodeSize", 0},
            {"Description", f.description},
            {"Timeout", f.timeout_s},
            {"MemorySize", f.memory_mib},
            {"LastModified", "1970-01-01T00:00:00.000+0000"},
            {"Version", version},
            {"PackageType", "Zip"},
            {"State", "Active"},
            {"Architectures", {"x86_64"}}};
}

}  // namespace


Router::Router(RouterOptions opts)
    : opts_(std::move(opts)),
      verifier_("lambda"),
      assign_(opts_.assignd_socket),
      leases_(std::chrono::milliseconds(opts_.lease_hold_ms)),
      queue_(opts_.queue_dir) {
    registry_ = Registry::load(opts_.functions_path);
    verifier_.set_keys(load_access_keys(opts_.credentials_path));
    if (!queue_.durable()) log_warn("no --queue-dir: Event invocations are kept in memory only");
    for (unsigned i = 0; i < std::max(1u, opts_.workers); ++i) workers_.emplace_back([this] { worker_loop(); });
    if (leases_.hold().count() > 0) lease_thread_ = std::thread([this] { lease_loop(); });
    auto now = Clock::now();
    for (auto& e : queue_.take_pending()) enqueue_event(std::move(e), 0, now);
    event_thread_ = std::thread([this] { event_loop(); });
}

Router::~Router() { stop(); }

void Router::stop() {
    {
        std::lock_guard lk(jobs_mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    jobs_cv_.notify_all();
    lease_cv_.notify_all();
    {
        std::lock_guard lk(ev_mu_);
    }
    ev_cv_.notify_all();
    for (auto& t : workers_) t.join();
    if (event_thread_.joinable()) event_thread_.join();
    if (lease_thread_.joinable()) lease_thread_.join();
}

void Router::reload() {
    try {
        auto reg = Registry::load(opts_.functions_path);
        auto keys = load_access_keys(opts_.credentials_path);
        {
            std::lock_guard lk(reg_mu_);
            registry_ = reg;
        }
        verifier_.set_keys(std::move(keys));
        log_info("reloaded %s and %s", opts_.functions_path.c_str(), opts_.credentials_path.c_str());
    } catch (const Error& e) {
        log_error("reload failed, keeping the previous configuration: %s", e.what());
    }
}

std::shared_ptr<const Registry> Router::registry() const {
    std::lock_guard lk(reg_mu_);
    return registry_;
}

void Router::submit(std::function<void()> job) {
    {
        std::lock_guard lk(jobs_mu_);
        jobs_.push_back(std::move(job));
    }
    jobs_cv_.notify_one();
}

void Router::worker_loop() {
    for (;;) {
        std::function<void()> job;
        {
            std::unique_lock lk(jobs_mu_);
            jobs_cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
        }
        try {
            job();
        } catch (const std::exception& e) {
            log_error("worker: %s", e.what());
        }
    }
}

namespace {
// A worker serving a client request answers it before releasing the sandbox to
// assignd: the release is one more HTTP round trip the client need not wait for
// (a later acquire that finds the sandbox still busy waits for this release).
thread_local bool t_defer_release = false;
thread_local std::function<void()> t_after_response;

// The HTTP server's I/O thread first tries a request itself: everything but an invoke
// answers at once, and a sync invoke on a sandbox this router holds is sent and its
// answer awaited on the same thread (FdWatch::when_readable), with no worker and no
// thread hand-over.  What would block (an assignd round trip, an Event's fsync, a
// Log-Type Tail) goes to a worker with the function already resolved (on_worker).
thread_local bool t_on_io = false;
thread_local HttpResponder* t_respond = nullptr;  // the I/O thread's request, for start_fast
constexpr int kStatusNeedsWorker = -1, kStatusDeferred = -2;
const HttpResponse kNeedsWorker{kStatusNeedsWorker, {}, {}};
const HttpResponse kDeferred{kStatusDeferred, {}, {}};
}  // namespace

void Router::handle(const HttpRequest& req, HttpResponder respond) {
    if (server_) {
        t_on_io = true;
        t_respond = &respond;
        HttpResponse r;
        try {
            r = route(req);
        } catch (const std::exception& e) {
            r = kNeedsWorker;  // the worker path logs and answers it
        }
        t_respond = nullptr;
        if (r.status == kStatusDeferred) return;  // start_fast took `respond`
        if (r.status != kStatusNeedsWorker) {
            if (!r.headers.has("x-amzn-RequestId")) r.headers.set("x-amzn-RequestId", request_id());
            respond(std::move(r));
            return;
        }
    }
    on_worker(req.method + " " + req.target, std::move(respond), [this, req] { return route(req); });
}

void Router::on_worker(std::string what, HttpResponder respond, std::function<HttpResponse()> make) {
    submit([this, what = std::move(what), respond = std::move(respond), make = std::move(make)] {
        std::string rid = request_id();
        HttpResponse r;
        t_defer_release = true;
        struct AfterResponse {
            ~AfterResponse() {
                t_defer_release = false;
                if (auto f = std::exchange(t_after_response, nullptr)) f();
            }
        } after;
        try {
            r = make();
        } catch (const std::exception& e) {
            log_error("%s: %s", what.c_str(), e.what());
            service_errors_++;
            r = lambda_error(500, "ServiceException", e.what());
        }
        if (!r.headers.has("x-amzn-RequestId")) r.headers.set("x-amzn-RequestId", rid);
        respond(std::move(r));
    });
}

HttpResponse Router::error_response(int status, const std::string& message) const {
    switch (status) {
    case 413: return lambda_error(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation");
    case 400: return lambda_error(400, "InvalidRequestContentException", message);
    case 431: return lambda_error(431, "RequestHeaderFieldsTooLarge", message);
    default: return lambda_error(status, status >= 500 ? "ServiceException" : "InvalidRequestContentException", message);
    }
}

HttpResponse Router::route(const HttpRequest& req) {
    std::string path(req.path());
    if (path == "/metrics" && req.method == "GET") {
        HttpResponse r{200, {}, metrics()};
        r.headers.set("Content-Type", "text/plain; version=0.0.4");
        return r;
    }
    auto auth = verifier_.verify(req, std::time(nullptr));
    if (!auth.ok()) {
        auth_failures_++;
        log_verbose("%s %s from %s: %s", req.method.c_str(), req.target.c_str(), req.peer.c_str(),
                    auth.failure.code.c_str());
        HttpResponse r = lambda_error(auth.failure.status, auth.failure.code, auth.failure.message);
        return r;
    }
    const SigV4Identity& who = *auth.identity;
    const std::string prefix = "/2015-03-31/functions";
    if (path.rfind(prefix, 0) != 0)
        return lambda_error(404, "UnknownOperationException", "Unknown operation " + req.method + " " + path);
    std::string rest = path.substr(prefix.size());
    if ((rest.empty() || rest == "/") && req.method == "GET") {
        json list = json::array();
        for (const Function* f : registry()->of_tenant(who.tenant))
            list.push_back(function_config(*f, who.region, "$LATEST"));
        return HttpResponse::json(200, to_text(json{{"Functions", list}}));
    }
    if (rest.empty() || rest[0] != '/')
        return lambda_error(404, "UnknownOperationException", "Unknown operation " + req.method + " " + path);
    rest.erase(0, 1);
    std::string op;
    size_t slash = rest.find('/');
    std::string name_part = percent_decode(rest.substr(0, slash));
    if (slash != std::string::npos) op = rest.substr(slash + 1);
    // Name forms: NAME, NAME:QUALIFIER, ACCOUNT:function:NAME[:Q], arn:aws:lambda:REGION:ACCOUNT:function:NAME[:Q].
    std::string name = name_part, path_qualifier;
    {
        std::vector<std::string> parts;
        size_t s = 0;
        for (;;) {
            size_t c = name_part.find(':', s);
            parts.push_back(name_part.substr(s, c == std::string::npos ? std::string::npos : c - s));
            if (c == std::string::npos) break;
            s = c + 1;
        }
        auto fn = std::find(parts.begin(), parts.end(), "function");
        if (fn != parts.end() && fn + 1 != parts.end()) {
            name = *(fn + 1);
            if (fn + 2 != parts.end()) path_qualifier = *(fn + 2);
        } else if (parts.size() == 2) {
            name = parts[0];
            path_qualifier = parts[1];
        }
    }
    std::string qualifier = query_param(req.query(), "Qualifier");
    if (!path_qualifier.empty() && !qualifier.empty() && path_qualifier != qualifier)
        return lambda_error(400, "InvalidParameterValueException",
                            "The derived qualifier from the function name does not match the specified qualifier.");
    if (qualifier.empty()) qualifier = path_qualifier;

    auto reg = registry();
    const Function* f = reg->find(who.tenant, name);
    std::optional<std::string> version = f ? f->resolve(qualifier) : std::nullopt;
    if (!f || !version) {
        not_found_++;
        return lambda_error(404, "ResourceNotFoundException",
                            "Function not found: " + arn(who.region, who.tenant, name, qualifier));
    }
    if (op.empty() && req.method == "GET") {
        json cfg = function_config(*f, who.region, *version);
        const Snapshot& s = f->versions.at(*version);
        json out = {{"Configuration", cfg},
                    {"Code", {{"RepositoryType", "kindling"}, {"Location", s.dir.empty() ? s.store + "#" + s.manifest : s.dir}}},
                    {"Concurrency", {{"ReservedConcurrentExecutions", f->concurrency}}}};
        return HttpResponse::json(200, to_text(out));
    }
    if (op == "invocations" && req.method == "POST") {
        HttpResponse r = invoke(req, who, name, *version);
        return r;
    }
    return lambda_error(404, "UnknownOperationException", "Unknown operation " + req.method + " " + path);
}

HttpResponse Router::invoke(const HttpRequest& req, const SigV4Identity& who, const std::string& name,
                            const std::string& version) {
    std::string type = req.headers.get("X-Amz-Invocation-Type").value_or("RequestResponse");
    if (type != "RequestResponse" && type != "Event" && type != "DryRun")
        return lambda_error(400, "InvalidParameterValueException",
                            "1 validation error detected: Value '" + type +
                                "' at 'invocationType' failed to satisfy constraint: Member must satisfy enum "
                                "value set: [Event, RequestResponse, DryRun]");
    size_t limit = type == "Event" ? kEventPayloadLimit : kSyncPayloadLimit;
    if (req.body.size() > limit) {
        too_large_++;
        return lambda_error(413, "RequestTooLargeException",
                            "Request must be smaller than " + std::to_string(limit) +
                                " bytes for the InvokeFunction operation");
    }
    auto reg = registry();
    const Function* f = reg->find(who.tenant, name);
    if (!f) return lambda_error(404, "ResourceNotFoundException", "Function not found: " + arn(who.region, who.tenant, name));
    if (type == "DryRun") {
        invokes_dry_++;
        HttpResponse r{204, {}, {}};
        r.headers.set("X-Amz-Executed-Version", version);
        return r;
    }
    std::function<HttpResponse()> work;
    auto lt = req.headers.get("X-Amz-Log-Type");
    bool tail = lt && *lt == "Tail";
    if (type == "Event") {
        work = [this, reg, f, version, body = req.body] {
            invokes_event_++;
            QueuedEvent e{request_id(), f->name, version, body};
            queue_.append(e);  // fsync'ed before the 202
            enqueue_event(e, 0, Clock::now());
            HttpResponse r{202, {}, {}};
            r.headers.set("x-amzn-RequestId", e.id);
            return r;
        };
    } else {
        if (t_on_io && !tail && start_fast(reg, *f, version, req.body, *t_respond)) return kDeferred;
        work = [this, reg, f, version, body = req.body, tail] {
            invokes_sync_++;
            return to_response(run(*f, version, body, tail), version, tail);
        };
    }
    if (!t_on_io) return work();
    // On the I/O thread, what blocks (the Event's fsync, an acquire) goes to a worker,
    // routed and authenticated once.
    on_worker("invoke " + f->name, std::move(*t_respond), std::move(work));
    return kDeferred;
}

HttpResponse Router::to_response(const InvokeResult& res, const std::string& version, bool tail) const {
    HttpResponse r;
    switch (res.kind) {
    case InvokeResult::kThrottled:
        return lambda_error(429, "TooManyRequestsException", res.message,
                            "ReservedFunctionConcurrentInvocationLimitExceeded");
    case InvokeResult::kServiceError: return lambda_error(500, "ServiceException", res.message);
    case InvokeResult::kOk: r = HttpResponse{200, {}, res.body}; break;
    case InvokeResult::kFunctionError:
        r = HttpResponse{200, {}, res.body};
        r.headers.set("X-Amz-Function-Error", "Unhandled");
        break;
    }
    r.headers.set("Content-Type", "application/json");
    r.headers.set("X-Amz-Executed-Version", version);
    if (tail) r.headers.set("X-Amz-Log-Result", base64(res.log));
    return r;
}

Router::InvokeResult Router::run(const Function& f, const std::string& version, const std::string& payload,
                                 bool tail) {
    InvokeResult res;
    auto t0 = Clock::now();
    std::string rid = request_id();
    std::string key = f.name + '\0' + version;
    std::string sandbox, vsock, lease, instance;
    uint64_t drains = 0;
    bool cold = false, held = false;
    // A sandbox this router holds from an earlier invoke: no assignd round trip.  One
    // whose fc-launch died meanwhile (its pooled connection hung up) goes back to
    // assignd to be destroyed.  With the function's limit of leases out, wait here.
    auto wait_until = Clock::now() + std::chrono::milliseconds(opts_.acquire_wait_ms);
    for (;;) {
        HeldLease h;
        LeaseCache::Take t = leases_.take(key, f.name, f.concurrency, wait_until, h);
        if (t == LeaseCache::Take::kThrottled) {
            throttles_++;
            return throttled(f);
        }
        if (t == LeaseCache::Take::kAcquire) break;
        if (pool_.alive(h.sandbox, h.vsock)) {
            sandbox = std::move(h.sandbox), vsock = std::move(h.vsock), lease = std::move(h.lease);
            instance = std::move(h.instance);
            drains = h.drains;
            held = true;
            break;
        }
        pool_.forget(h.sandbox, h.vsock);
        release(h.lease, "destroy");
        leases_.ended(f.name);
    }
    if (!held) {
        const Snapshot& snap = f.versions.at(version);
        json snapshot =
            snap.dir.empty() ? json{{"manifest", snap.manifest}, {"store", snap.store}} : json{{"dir", snap.dir}};
        json acq = {{"function", f.name},      {"version", version},          {"snapshot", snapshot},
                    {"mem_mib", f.memory_mib}, {"concurrency", f.concurrency}, {"wait_ms", opts_.acquire_wait_ms}};
        HttpResult a = assign_.post(kAssignAcquirePath, acq.dump(), std::chrono::milliseconds(60000));
        if (a.status == 200) {
            try {
                json j = json::parse(a.body);
                sandbox = j.at("sandbox").get<std::string>();
                vsock = j.at("vsock").get<std::string>();
                lease = j.at("lease").get<std::string>();
                cold = j.value("cold", false);
                instance = j.value("instance", "");
                drains = j.value("drains", uint64_t(0));
                assignd_epoch(instance, drains);
            } catch (const json::exception& e) {
                a.status = 0;
                a.body = std::string("bad acquire answer: ") + e.what();
            }
        }
        if (a.status != 200) leases_.ended(f.name);
        if (a.status == 429) {
            throttles_++;
            res.kind = InvokeResult::kThrottled;
            res.message = "Rate Exceeded.";
            try {
                res.message = json::parse(a.body).value("message", res.message);
            } catch (const json::exception&) {
            }
            return res;
        }
        if (a.status != 200) {
            service_errors_++;
            res.kind = InvokeResult::kServiceError;
            res.message = "assignd acquire " + f.name + ":" + version + ": " +
                          (a.status ? "HTTP " + std::to_string(a.status) + " " : "") + a.body;
            log_error("%s", res.message.c_str());
            return res;
        }
    }
    (cold ? cold_ : warm_)++;
    if (held) held_hits_++;
    // A throw from here to the release below must not leave the sandbox busy for ever.
    struct LeaseGuard {
        Router& r;
        const std::string& lease;
        const std::string& function;
        bool armed = true;
        ~LeaseGuard() {
            if (!armed) return;
            try {
                r.release(lease, "destroy");
            } catch (...) {
            }
            r.leases_.ended(function);
        }
    } guard{*this, lease, f.name};
    auto t_acq = Clock::now();
    auto deadline = t_acq + std::chrono::microseconds(static_cast<int64_t>(f.timeout_s * 1e6));
    bool reused = false;
    GuestAnswer ans = pool_.invoke(sandbox, vsock, payload, deadline, &reused);
    guard.armed = false;
    Lease l{key, sandbox, vsock, lease, instance, drains, cold};
    return settle(f, version, l, std::move(ans), t0, t_acq, tail, reused, rid, nullptr);
}

Router::InvokeResult Router::settle(const Function& f, const std::string& version, const Lease& l, GuestAnswer ans,
                                    Clock::time_point t0, Clock::time_point t_acq, bool tail, bool reused,
                                    const std::string& rid, bool* kept) {
    InvokeResult res;
    res.cold = l.cold;
    const std::string &key = l.key, &sandbox = l.sandbox, &vsock = l.vsock, &lease = l.lease;
    const std::string& instance = l.instance;
    uint64_t drains = l.drains;
    bool cold = l.cold;
    std::string outcome = "ok";
    switch (ans.kind) {
    case GuestAnswer::kOk:
        res.kind = InvokeResult::kOk;
        res.body = std::move(ans.body);
        break;
    case GuestAnswer::kErr: {
        function_errors_++;
        outcome = "error";
        res.kind = InvokeResult::kFunctionError;
        json body;
        try {
            body = json::parse(ans.body);
            if (!body.is_object()) throw json::type_error::create(302, "not an object", nullptr);
        } catch (const json::exception&) {
            body = {{"errorMessage", ans.body}, {"errorType", "Unhandled"}};
        }
        res.body = to_text(body);
        break;
    }
    case GuestAnswer::kTimeout: {
        timeouts_++;
        function_errors_++;
        outcome = "destroy";
        res.kind = InvokeResult::kFunctionError;
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.2f", f.timeout_s);
        res.body = to_text(json{{"errorMessage", iso_now_ms() + " " + rid + " Task timed out after " + secs + " seconds"}});
        pool_.forget(sandbox, vsock);
        break;
    }
    case GuestAnswer::kBroken:
        function_errors_++;
        outcome = "destroy";
        res.kind = InvokeResult::kFunctionError;
        res.body = to_text(json{{"errorMessage", "RequestId: " + rid + " Error: Runtime exited: " + ans.body},
                                {"errorType", "Runtime.ExitError"}});
        pool_.forget(sandbox, vsock);
        break;
    }
    auto t_end = Clock::now();
    if (tail) {
        char report[256];
        std::snprintf(report, sizeof report,
                      "END RequestId: %s\nREPORT RequestId: %s\tDuration: %.2f ms\tMemory Size: %u MB\t%s\n",
                      rid.c_str(), rid.c_str(), std::chrono::duration<double, std::milli>(t_end - t_acq).count(),
                      f.memory_mib, cold ? "Init: restored sandbox (cold)" : "Warm sandbox");
        std::string log = console_tail(vsock) + "START RequestId: " + rid + " Version: " + version + "\n" + report;
        res.log = log.size() > kLogTail ? log.substr(log.size() - kLogTail) : log;
    }
    // Kept for the next invoke (before the answer goes out, so a client's next
    // request finds it), else handed back to assignd after the answer.
    Epoch now = epoch(instance, drains);
    if (kept) *kept = outcome != "destroy" && now == Epoch::kCurrent;
    if (kept && *kept) {
        // The caller runs the next invoke on this lease at once.
    } else if (now == Epoch::kRestarted) {
        // Granted by an assignd that has since restarted: the new one counts this
        // sandbox idle and knows nothing of the lease.  Forget it.
        leases_.ended(f.name);
    } else if (outcome == "destroy" || now == Epoch::kDrained ||
               !leases_.put(key, HeldLease{f.name, sandbox, vsock, lease, instance, drains, Clock::now()})) {
        auto give_back = [this, lease, outcome, fn = f.name] {
            release(lease, outcome);
            leases_.ended(fn);
        };
        if (t_on_io) submit(give_back);  // never an assignd round trip on the I/O thread
        else if (t_defer_release) t_after_response = give_back;
        else give_back();
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    int b = 0;
    while (b < kBuckets && secs > kBucketBounds[b]) ++b;
    latency_buckets_[b]++;
    latency_count_++;
    latency_sum_us_ += static_cast<uint64_t>(secs * 1e6);
    log_verbose("invoke %s:%s sandbox %s %s%s: %s in %.3f ms", f.name.c_str(), version.c_str(), sandbox.c_str(),
                cold ? "cold" : "warm", reused ? " (pooled conn)" : "", outcome.c_str(), secs * 1e3);
    return res;
}

Router::InvokeResult Router::throttled(const Function& f) const {
    InvokeResult res;
    res.kind = InvokeResult::kThrottled;
    res.message = "Rate Exceeded: function " + f.name + " has reached its concurrency limit (" +
                  std::to_string(f.concurrency) + ") and no sandbox freed up in " +
                  std::to_string(opts_.acquire_wait_ms) + " ms";
    return res;
}

void Router::release(const std::string& lease, const std::string& outcome) {
    HttpResult rel = assign_.post(kAssignReleasePath, to_text(json{{"lease", lease}, {"outcome", outcome}}),
                                  std::chrono::milliseconds(10000));
    if (rel.status != 204 && rel.status != 200)
        log_warn("assignd release %s (%s): %s %s", lease.c_str(), outcome.c_str(),
                 rel.status ? std::to_string(rel.status).c_str() : "", rel.body.c_str());
}

void Router::assignd_epoch(const std::string& instance, uint64_t drains) {
    std::vector<HeldLease> drained;
    {
        std::lock_guard lk(instance_mu_);
        if (instance == instance_ && drains == drains_) return;
        if (instance != instance_) {
            // assignd restarted: the leases this router holds are void, and the
            // restarted assignd counts their sandboxes idle.  Forget them (releasing
            // would 404).
            if (!instance_.empty()) {
                auto gone = leases_.take_all();
                log_info("assignd restarted (instance %s -> %s): %zu held leases void", instance_.c_str(),
                         instance.c_str(), gone.size());
            }
        } else if (drains > drains_) {
            // A drain: give every held sandbox back, so assignd stops the drained ones.
            drained = leases_.take_all();
        }
        instance_ = instance;
        drains_ = std::max(drains_, drains);
    }
    for (const HeldLease& h : drained) release(h.lease, "ok");
}

Router::Epoch Router::epoch(const std::string& instance, uint64_t drains) {
    std::lock_guard lk(instance_mu_);
    if (instance != instance_) return Epoch::kRestarted;
    return drains < drains_ ? Epoch::kDrained : Epoch::kCurrent;
}

void Router::lease_loop() {
    std::unique_lock lk(jobs_mu_);
    while (!stopping_) {
        lease_cv_.wait_for(lk, std::clamp(leases_.hold() / 2, std::chrono::milliseconds(1),
                                          std::chrono::milliseconds(500)));
        lk.unlock();
        for (const HeldLease& h : leases_.expired(Clock::now())) release(h.lease, "ok");
        // A held lease may be reused for ever under load, with no acquire to tell
        // that assignd restarted or drained: ask it while leases are out.
        if (leases_.out() > 0) {
            HttpResult r = assign_.get(kAssignInstancePath);
            if (r.status == 200) {
                try {
                    json j = json::parse(r.body);
                    assignd_epoch(j.value("instance", ""), j.value("drains", uint64_t(0)));
                } catch (const json::exception&) {
                }
            }
        }
        lk.lock();
    }
    lk.unlock();
    for (const HeldLease& h : leases_.take_all()) release(h.lease, "ok");
}

void Router::enqueue_event(QueuedEvent e, int attempt, Clock::time_point when) {
    {
        std::lock_guard lk(ev_mu_);
        events_.push_back(Delayed{when, std::move(e), attempt});
    }
    ev_cv_.notify_one();
}

void Router::event_loop() {
    std::unique_lock lk(ev_mu_);
    for (;;) {
        {
            std::lock_guard jl(jobs_mu_);
            if (stopping_) return;
        }
        auto now = Clock::now();
        auto next = now + std::chrono::seconds(1);
        for (size_t i = 0; i < events_.size();) {
            if (events_[i].when <= now) {
                Delayed d = std::move(events_[i]);
                events_.erase(events_.begin() + static_cast<long>(i));
                submit([this, d = std::move(d)] {
                    auto reg = registry();
                    const Function* f = reg->find_any(d.e.function);
                    if (!f || !f->versions.count(d.e.version)) {
                        log_warn("event %s: function %s:%s no longer exists; dropped", d.e.id.c_str(),
                                 d.e.function.c_str(), d.e.version.c_str());
                        events_dropped_++;
                        queue_.done(d.e.id);
                        return;
                    }
                    InvokeResult r = run(*f, d.e.version, d.e.payload, false);
                    if (r.kind == InvokeResult::kOk) {
                        log_verbose("event %s: %s:%s done", d.e.id.c_str(), f->name.c_str(), d.e.version.c_str());
                        queue_.done(d.e.id);
                    } else if (d.attempt < 2) {
                        event_retries_++;
                        auto delay = std::chrono::milliseconds(opts_.event_retry_delay_ms) * (1 << d.attempt);
                        log_info("event %s: %s:%s failed (attempt %d); retrying in %lld ms", d.e.id.c_str(),
                                 f->name.c_str(), d.e.version.c_str(), d.attempt + 1,
                                 static_cast<long long>(delay.count()));
                        enqueue_event(d.e, d.attempt + 1, Clock::now() + delay);
                    } else {
                        events_dropped_++;
                        log_warn("event %s: %s:%s failed 3 times; dropped", d.e.id.c_str(), f->name.c_str(),
                                 d.e.version.c_str());
                        queue_.done(d.e.id);
                    }
                });
                continue;
            }
            next = std::min(next, events_[i].when);
            ++i;
        }
        ev_cv_.wait_until(lk, next);
    }
}

std::string Router::metrics() const {
    std::string out;
    auto line = [&](const char* name, const char* labels, uint64_t v) {
        out += std::string(name) + labels + " " + std::to_string(v) + "\n";
    };
    out += "# TYPE kindling_routerd_invocations_total counter\n";
    line("kindling_routerd_invocations_total", "{type=\"RequestResponse\"}", invokes_sync_);
    line("kindling_routerd_invocations_total", "{type=\"Event\"}", invokes_event_);
    line("kindling_routerd_invocations_total", "{type=\"DryRun\"}", invokes_dry_);
    out += "# TYPE kindling_routerd_errors_total counter\n";
    line("kindling_routerd_errors_total", "{kind=\"function\"}", function_errors_);
    line("kindling_routerd_errors_total", "{kind=\"timeout\"}", timeouts_);
    line("kindling_routerd_errors_total", "{kind=\"auth\"}", auth_failures_);
    line("kindling_routerd_errors_total", "{kind=\"not_found\"}", not_found_);
    line("kindling_routerd_errors_total", "{kind=\"too_large\"}", too_large_);
    line("kindling_routerd_errors_total", "{kind=\"service\"}", service_errors_);
    out += "# TYPE kindling_routerd_throttles_total counter\n";
    line("kindling_routerd_throttles_total", "", throttles_);
    out += "# TYPE kindling_routerd_sandbox_starts_total counter\n";
    line("kindling_routerd_sandbox_starts_total", "{start=\"cold\"}", cold_);
    line("kindling_routerd_sandbox_starts_total", "{start=\"warm\"}", warm_);
    out += "# TYPE kindling_routerd_held_lease_hits_total counter\n";
    line("kindling_routerd_held_lease_hits_total", "", held_hits_);
    out += "# TYPE kindling_routerd_held_leases gauge\n";
    line("kindling_routerd_held_leases", "", leases_.held());
    out += "# TYPE kindling_routerd_event_retries_total counter\n";
    line("kindling_routerd_event_retries_total", "", event_retries_);
    line("kindling_routerd_events_dropped_total", "", events_dropped_);
    out += "# TYPE kindling_routerd_invoke_duration_seconds histogram\n";
    uint64_t cum = 0;
    for (int i = 0; i <= kBuckets; ++i) {
        cum += latency_buckets_[i];
        char le[32];
        if (i < kBuckets) std::snprintf(le, sizeof le, "%g", kBucketBounds[i]);
        else std::snprintf(le, sizeof le, "+Inf");
        out += "kindling_routerd_invoke_duration_seconds_bucket{le=\"" + std::string(le) + "\"} " +
               std::to_string(cum) + "\n";
    }
    char sum[64];
    std::snprintf(sum, sizeof sum, "%.6f", static_cast<double>(latency_sum_us_) / 1e6);
    out += "kindling_routerd_invoke_duration_seconds_sum " + std::string(sum) + "\n";
    line("kindling_routerd_invoke_duration_seconds_count", "", latency_count_);
    return out;
}

}  // namespace kindling::routerd
