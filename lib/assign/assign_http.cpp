#include "assign/assign_http.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "assign/assign_api.h"
#include "assign/assigner.h"
#include "assign/journal.h"
#include "base/error.h"
#include "base/json_depth.h"
#include "base/metrics.h"

namespace kindling {

using json = nlohmann::json;

namespace {

constexpr const char* kMetricsPath = "/metrics";

json parse_body(const HttpRequest& req) {
    check_json_depth(req.body, "request body");
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw DataError("request body is not a JSON object");
    return j;
}

std::string get_string(const json& j, const char* name, bool required, std::string def = "") {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) {
        if (required) throw DataError(std::string("missing \"") + name + "\"");
        return def;
    }
    if (!it->is_string()) throw DataError(std::string("\"") + name + "\" must be a string");
    return it->get<std::string>();
}

int64_t get_int(const json& j, const char* name, int64_t def, int64_t lo, int64_t hi) {
    auto it = j.find(name);
    if (it == j.end() || it->is_null()) return def;
    if (!it->is_number_integer()) throw DataError(std::string("\"") + name + "\" must be an integer");
    int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
        throw DataError(std::string("\"") + name + "\" must be in " + std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

AcquireRequest parse_acquire(const HttpRequest& req) {
    json j = parse_body(req);
    AcquireRequest r;
    r.function = get_string(j, "function", true);
    if (r.function.empty() || r.function.size() > 256) throw DataError("\"function\" must be 1..256 characters");
    r.version = get_string(j, "version", false, "$LATEST");
    auto snap = j.find("snapshot");
    if (snap == j.end() || !snap->is_object()) throw DataError("missing \"snapshot\" object");
    if (snap->contains("manifest")) {
        r.manifest = get_string(*snap, "manifest", true);
        r.store = get_string(*snap, "store", true);
        if (r.manifest.size() != 64 || r.manifest.find_first_not_of("0123456789abcdef") != std::string::npos)
            throw DataError("snapshot manifest must be 64 lowercase hex digits");
        if (r.store.empty()) throw DataError("snapshot store must not be empty");
    } else {
        r.snapshot_dir = get_string(*snap, "dir", true);
        if (r.snapshot_dir.empty() || r.snapshot_dir[0] != '/') throw DataError("snapshot dir must be an absolute path");
    }
    r.concurrency = static_cast<size_t>(get_int(j, "concurrency", 1000, 1, 1000000));
    r.wait_ms = get_int(j, "wait_ms", 0, 0, 900000);
    get_int(j, "mem_mib", 128, 1, 1 << 20);
    return r;
}

}  // namespace

HttpResponse AssignHttpApi::error(int status, const std::string& error, const std::string& message) {
    return HttpResponse::json(status, json{{"error", error}, {"message", message}}.dump());
}

HttpResponse AssignHttpApi::server_error(int status, const std::string& message) {
    return error(status, status == 400 ? "InvalidRequestContentException" : "ServiceException", message);
}

void AssignHttpApi::handle(const HttpRequest& req, HttpResponder respond) {
    std::string_view path = req.path();
    try {
        if (path == kAssignAcquirePath && req.method == "POST") return acquire(req, respond);
        if (path == kAssignReleasePath && req.method == "POST") return respond(release(req));
        if (path == kAssignSandboxesPath && req.method == "GET") return respond(sandboxes());
        if (path == kAssignDrainPath && req.method == "POST") return respond(drain(req));
        if (path == kMetricsPath && req.method == "GET") return respond(metrics());
        if (path == kAssignInstancePath && req.method == "GET") return respond(instance());
        if (path == kAssignAcquirePath || path == kAssignReleasePath || path == kAssignSandboxesPath ||
            path == kAssignDrainPath || path == kAssignInstancePath || path == kMetricsPath)
            return respond(error(405, "MethodNotAllowed", req.method + " " + std::string(path)));
        respond(error(404, "NotFound", "no such endpoint: " + std::string(path)));
    } catch (const DataError& e) {
        respond(error(400, "InvalidRequestContentException", e.what()));
    }
}

// Moves `respond` away only once the request parsed: a DataError still answers 400
// through it.
void AssignHttpApi::acquire(const HttpRequest& req, HttpResponder& respond) {
    AcquireRequest r = parse_acquire(req);
    if (!r.snapshot_dir.empty()) assigner_.check_snapshot_dir(r.snapshot_dir);
    assigner_.acquire(std::move(r), [respond = std::move(respond), &a = assigner_](AcquireResult res) {
        switch (res.kind) {
        case AcquireResult::kAcquired: {
            json j = {{"sandbox", res.sandbox}, {"vsock", res.vsock},       {"lease", res.lease},
                      {"cold", res.cold},       {"instance", a.instance()}, {"drains", res.drains}};
            if (res.cold) j["restore_ms"] = std::round(res.restore_ms * 1000) / 1000;
            return respond(HttpResponse::json(200, j.dump()));
        }
        case AcquireResult::kThrottled: return respond(error(429, "TooManyRequestsException", res.message));
        case AcquireResult::kUnavailable: return respond(error(503, "ServiceException", res.message));
        }
    });
}

HttpResponse AssignHttpApi::release(const HttpRequest& req) {
    json j = parse_body(req);
    std::string lease = get_string(j, "lease", true);
    std::string outcome = get_string(j, "outcome", false, "ok");
    ReleaseOutcome o;
    if (outcome == "ok") o = ReleaseOutcome::kOk;
    else if (outcome == "error") o = ReleaseOutcome::kError;
    else if (outcome == "destroy") o = ReleaseOutcome::kDestroy;
    else throw DataError("\"outcome\" must be ok, error or destroy");
    std::string unknown = assigner_.release(lease, o);
    if (!unknown.empty()) return error(404, "ResourceNotFoundException", "lease " + lease + ": " + unknown);
    return HttpResponse::no_content();
}

HttpResponse AssignHttpApi::sandboxes() {
    json arr = json::array();
    for (const SandboxInfo& i : assigner_.sandboxes()) {
        const Sandbox& s = i.sandbox;
        arr.push_back({{"id", s.id},
                       {"function", s.function},
                       {"version", s.version},
                       {"state", sandbox_state_name(s.state)},
                       {"pid", s.pid},
                       {"vsock", s.vsock},
                       {"invokes", s.invokes},
                       {"last_used_ms", i.last_used_ms}});
    }
    return HttpResponse::json(200, arr.dump());
}

HttpResponse AssignHttpApi::drain(const HttpRequest& req) {
    std::string fn;
    if (!req.body.empty()) fn = get_string(parse_body(req), "function", false);
    DrainResult r = assigner_.drain(fn);
    return HttpResponse::json(200, json{{"stopped", r.stopped}, {"stopping_on_release", r.stopping_on_release}}.dump());
}

HttpResponse AssignHttpApi::instance() {
    return HttpResponse::json(200, json{{"instance", assigner_.instance()}, {"drains", assigner_.drains()}}.dump());
}

HttpResponse AssignHttpApi::metrics() {
    JournalStats js = journal_.stats();
    AssignStats st = assigner_.stats();
    MetricsText m;
    m.family("kindling_assign_sandboxes", "gauge", "Sandboxes on this host by state.");
    for (SandboxState s : {SandboxState::kCreating, SandboxState::kIdle, SandboxState::kBusy, SandboxState::kDead})
        m.sample("kindling_assign_sandboxes", uint64_t{st.sandboxes[static_cast<int>(s)]}, "state",
                 sandbox_state_name(s));
    m.family("kindling_assign_acquires_total", "counter", "Acquires served, warm (an idle sandbox) or cold (restored).");
    m.sample("kindling_assign_acquires_total", st.acquires_warm, "kind", "warm");
    m.sample("kindling_assign_acquires_total", st.acquires_cold, "kind", "cold");
    m.gauge("kindling_assign_acquires_waiting", "Acquires waiting for a sandbox to free up.", st.waiting);
    m.counter("kindling_assign_throttles_total", "Acquires answered 429.", st.throttles);
    m.counter("kindling_assign_restores_total", "Sandboxes restored.", st.restores);
    m.counter("kindling_assign_restore_failures_total", "Placements that failed.", st.restore_failures);
    m.histogram("kindling_assign_restore_seconds", "Spawn of fc-launch until its vsock socket accepts.",
                assigner_.restore_seconds());
    m.counter("kindling_assign_deaths_total", "Sandboxes whose fc-launch died unasked.", st.deaths);
    m.counter("kindling_assign_reaped_total", "Idle sandboxes stopped after the idle TTL.", st.reaped);
    m.counter("kindling_assign_journal_appends_total", "Journal records appended.", js.appends);
    m.counter("kindling_assign_journal_syncs_total", "Journal fdatasyncs (group commits).", js.syncs);
    m.counter("kindling_assign_journal_compactions_total", "Journal rewrites as the live table.", js.compactions);
    m.gauge("kindling_assign_journal_bytes", "Journal file size.", js.bytes);
    HttpResponse r{200, {}, m.text()};
    r.headers.set("Content-Type", MetricsText::kContentType);
    return r;
}

}  // namespace kindling
