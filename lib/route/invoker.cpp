#include "route/invoker.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "assign/assign_api.h"
#include "base/error.h"
#include "base/json_depth.h"
#include "base/log.h"
#include "route/lambda_format.h"

namespace kindling::route {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

Invoker::Invoker(InvokerOptions options, RouterMetrics& metrics, const Clock& clock)
    : opts_(std::move(options)),
      metrics_(metrics),
      assign_(opts_.assignd_socket),
      leases_(std::chrono::milliseconds(opts_.lease_hold_ms), clock) {
    if (leases_.hold().count() > 0) lease_thread_ = std::thread([this] { lease_loop(); });
}

Invoker::~Invoker() { stop(); }

void Invoker::stop() {
    {
        std::lock_guard lk(stop_mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    stop_cv_.notify_all();
    if (lease_thread_.joinable()) lease_thread_.join();
}

Invocation Invoker::invoke(const Function& f, const std::string& version, const std::string& payload,
                           bool log_tail, const std::string& request_id) {
    auto t0 = SteadyClock::now();
    Lease l;
    bool held = false;
    // A sandbox this router holds from an earlier invoke: no assignd round trip.  One
    // whose fc-launch died meanwhile (its pooled connection hung up) goes back to
    // assignd to be destroyed.  With the function's limit of leases out, wait here.
    const std::string key = lease_key(f.name, version);
    auto wait_until = SteadyClock::now() + std::chrono::milliseconds(opts_.acquire_wait_ms);
    for (;;) {
        Lease h;
        LeaseCache::Take t = leases_.take(key, f.name, f.concurrency, wait_until, h);
        if (t == LeaseCache::Take::kThrottled) {
            metrics_.throttles++;
            return {throttled(f), std::nullopt, false};
        }
        if (t == LeaseCache::Take::kAcquire) break;
        if (pool_.alive(h.sandbox, h.vsock)) {
            l = std::move(h);
            l.cold = false;
            held = true;
            break;
        }
        pool_.forget(h.sandbox, h.vsock);
        release(h.id, "destroy");
        leases_.ended(f.name);
    }
    if (!held) {
        InvokeResult res;
        const Snapshot& snap = f.versions.at(version);
        json snapshot =
            snap.dir.empty() ? json{{"manifest", snap.manifest}, {"store", snap.store}} : json{{"dir", snap.dir}};
        json acq = {{"function", f.name},      {"version", version},          {"snapshot", snapshot},
                    {"mem_mib", f.memory_mib}, {"concurrency", f.concurrency}, {"wait_ms", opts_.acquire_wait_ms}};
        HttpResult a = assign_.post(kAssignAcquirePath, acq.dump(), std::chrono::milliseconds(60000));
        if (a.status == 200) {
            try {
                json j = parse_json<json>(a.body, "assignd acquire answer");
                l.function = f.name;
                l.key = key;
                l.sandbox = j.at("sandbox").get<std::string>();
                l.vsock = j.at("vsock").get<std::string>();
                l.id = j.at("lease").get<std::string>();
                l.cold = j.value("cold", false);
                l.instance = j.value("instance", "");
                l.drains = j.value("drains", uint64_t(0));
                note_assignd_epoch(l.instance, l.drains);
            } catch (const std::exception& e) {  // json::exception or DataError (too deep)
                a.status = 0;
                a.body = std::string("bad acquire answer: ") + e.what();
            }
        }
        if (a.status != 200) leases_.ended(f.name);
        if (a.status == 429) {
            metrics_.throttles++;
            res.kind = InvokeResult::kThrottled;
            res.message = "Rate Exceeded.";
            try {
                res.message = parse_json<json>(a.body, "assignd answer").value("message", res.message);
            } catch (const std::exception&) {
            }
            return {res, std::nullopt, false};
        }
        if (a.status != 200) {
            metrics_.service_errors++;
            res.kind = InvokeResult::kServiceError;
            res.message = "assignd acquire " + f.name + ":" + version + ": " +
                          (a.status ? "HTTP " + std::to_string(a.status) + " " : "") + a.body;
            log_error("%s", res.message.c_str());
            return {res, std::nullopt, false};
        }
    }
    (l.cold ? metrics_.cold_starts : metrics_.warm_starts)++;
    if (held) metrics_.held_lease_hits++;
    // A throw from here to settle() must not leave the sandbox busy for ever.
    struct LeaseGuard {
        Invoker& invoker;
        const Lease& lease;
        bool armed = true;
        ~LeaseGuard() {
            if (!armed) return;
            try {
                invoker.release(lease.id, "destroy");
            } catch (...) {
            }
            invoker.leases_.ended(lease.function);
        }
    } guard{*this, l};
    auto t_acq = SteadyClock::now();
    auto deadline = t_acq + std::chrono::microseconds(static_cast<int64_t>(f.timeout_s * 1e6));
    bool reused = false;
    GuestAnswer ans = pool_.invoke(l.sandbox, l.vsock, payload, deadline, &reused);
    guard.armed = false;
    return settle(f, version, l, std::move(ans), {t0, t_acq}, log_tail, reused, request_id, false);
}

Invocation Invoker::settle(const Function& f, const std::string& version, const Lease& l, GuestAnswer ans,
                           Timing timing, bool log_tail, bool reused, const std::string& rid, bool keep_for_caller) {
    Invocation out;
    InvokeResult& res = out.result;
    res.cold = l.cold;
    std::string outcome = "ok";
    switch (ans.kind) {
    case GuestAnswer::kOk:
        res.kind = InvokeResult::kOk;
        res.body = std::move(ans.body);
        break;
    case GuestAnswer::kErr: {
        metrics_.function_errors++;
        outcome = "error";
        res.kind = InvokeResult::kFunctionError;
        // A JSON object is the function's error as it gave it; anything else (not
        // JSON, not an object, nested past kMaxJsonDepth) is its text.
        json body;
        try {
            body = parse_json<json>(ans.body, "function error");
        } catch (const json::exception&) {
        } catch (const DataError&) {
        }
        if (!body.is_object()) body = {{"errorMessage", ans.body}, {"errorType", "Unhandled"}};
        res.body = to_text(body);
        break;
    }
    case GuestAnswer::kTooLarge:
        // Lambda's answer to a function whose response is past the limit.  The
        // connection it came on is closed, the sandbox kept.
        metrics_.function_errors++;
        outcome = "error";
        res.kind = InvokeResult::kFunctionError;
        res.body = to_text(json{{"errorMessage", "Response payload size exceeded maximum allowed payload size (" +
                                                     std::to_string(kMaxAnswerBytes) + " bytes)."},
                                {"errorType", "Function.ResponseSizeTooLarge"}});
        break;
    case GuestAnswer::kTimeout: {
        metrics_.timeouts++;
        metrics_.function_errors++;
        outcome = "destroy";
        res.kind = InvokeResult::kFunctionError;
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.2f", f.timeout_s);
        res.body = to_text(json{{"errorMessage", iso_now_ms() + " " + rid + " Task timed out after " + secs + " seconds"}});
        pool_.forget(l.sandbox, l.vsock);
        break;
    }
    case GuestAnswer::kBroken:
        metrics_.function_errors++;
        outcome = "destroy";
        res.kind = InvokeResult::kFunctionError;
        res.body = to_text(json{{"errorMessage", "RequestId: " + rid + " Error: Runtime exited: " + ans.body},
                                {"errorType", "Runtime.ExitError"}});
        pool_.forget(l.sandbox, l.vsock);
        break;
    }
    auto t_end = SteadyClock::now();
    if (log_tail) {
        char report[256];
        std::snprintf(report, sizeof report,
                      "END RequestId: %s\nREPORT RequestId: %s\tDuration: %.2f ms\tMemory Size: %u MB\t%s\n",
                      rid.c_str(), rid.c_str(),
                      std::chrono::duration<double, std::milli>(t_end - timing.acquired).count(), f.memory_mib,
                      l.cold ? "Init: restored sandbox (cold)" : "Warm sandbox");
        std::string log = console_tail(l.vsock) + "START RequestId: " + rid + " Version: " + version + "\n" + report;
        res.log = log.size() > kLogTail ? log.substr(log.size() - kLogTail) : log;
    }
    Epoch now = epoch_of(l.instance, l.drains);
    out.kept = keep_for_caller && outcome != "destroy" && now == Epoch::kCurrent;
    if (out.kept) {
        // The caller runs its next invoke on this lease at once.
    } else if (now == Epoch::kRestarted) {
        // Granted by an assignd that has since restarted: the new one counts this
        // sandbox idle and knows nothing of the lease.  Forget it.
        leases_.ended(f.name);
    } else {
        Lease keep = l;
        keep.cold = false;
        if (outcome == "destroy" || now == Epoch::kDrained || !leases_.put(std::move(keep)))
            out.release = LeaseRelease{l, outcome};
    }
    double secs = std::chrono::duration<double>(SteadyClock::now() - timing.arrived).count();
    metrics_.invoke_seconds.record(secs);
    log_verbose("invoke %s:%s sandbox %s %s%s: %s in %.3f ms", f.name.c_str(), version.c_str(), l.sandbox.c_str(),
                l.cold ? "cold" : "warm", reused ? " (pooled conn)" : "", outcome.c_str(), secs * 1e3);
    return out;
}

void Invoker::give_back(const LeaseRelease& r) {
    release(r.lease.id, r.outcome);
    leases_.ended(r.lease.function);
}

InvokeResult Invoker::throttled(const Function& f) const {
    InvokeResult res;
    res.kind = InvokeResult::kThrottled;
    res.message = "Rate Exceeded: function " + f.name + " has reached its concurrency limit (" +
                  std::to_string(f.concurrency) + ") and no sandbox freed up in " +
                  std::to_string(opts_.acquire_wait_ms) + " ms";
    return res;
}

void Invoker::release(const std::string& lease_id, const std::string& outcome) {
    HttpResult rel = assign_.post(kAssignReleasePath, to_text(json{{"lease", lease_id}, {"outcome", outcome}}),
                                  std::chrono::milliseconds(10000));
    if (rel.status != 204 && rel.status != 200)
        log_warn("assignd release %s (%s): %s %s", lease_id.c_str(), outcome.c_str(),
                 rel.status ? std::to_string(rel.status).c_str() : "", rel.body.c_str());
}

void Invoker::note_assignd_epoch(const std::string& instance, uint64_t drains) {
    std::vector<Lease> drained;
    {
        std::lock_guard lk(epoch_mu_);
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
    for (const Lease& h : drained) release(h.id, "ok");
}

Invoker::Epoch Invoker::epoch_of(const std::string& instance, uint64_t drains) {
    std::lock_guard lk(epoch_mu_);
    if (instance != instance_) return Epoch::kRestarted;
    return drains < drains_ ? Epoch::kDrained : Epoch::kCurrent;
}

void Invoker::lease_loop() {
    std::unique_lock lk(stop_mu_);
    while (!stopping_) {
        stop_cv_.wait_for(lk, std::clamp(leases_.hold() / 2, std::chrono::milliseconds(1),
                                         std::chrono::milliseconds(500)));
        lk.unlock();
        for (const Lease& h : leases_.expired()) release(h.id, "ok");
        // A held lease may be reused for ever under load, with no acquire to tell
        // that assignd restarted or drained: ask it while leases are out.
        if (leases_.out() > 0) {
            HttpResult r = assign_.get(kAssignInstancePath);
            if (r.status == 200) {
                try {
                    json j = parse_json<json>(r.body, "assignd instance answer");
                    note_assignd_epoch(j.value("instance", ""), j.value("drains", uint64_t(0)));
                } catch (const std::exception&) {
                }
            }
        }
        lk.lock();
    }
    lk.unlock();
    for (const Lease& h : leases_.take_all()) release(h.id, "ok");
}

}  // namespace kindling::route
