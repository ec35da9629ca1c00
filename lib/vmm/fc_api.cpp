#include "vmm/fc_api.h"

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "base/error.h"
#include "base/json_depth.h"
#include "base/log.h"
#include "base/tool.h"
#include "seccomp/thread_filter.h"

namespace kindling {

namespace {

using json = nlohmann::json;

// Answered with 400 and {"fault_message": what()}.
class BadRequest : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Firecracker reports body errors with this prefix (its serde messages follow).
constexpr const char* kDeserializeError =
    "An error occurred when deserializing the json body of a request: ";

[[noreturn]] void bad_body(const std::string& what) { throw BadRequest(kDeserializeError + what); }

std::string describe(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean `" + v.dump() + "`";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer `" + v.dump() + "`";
    case json::value_t::number_float: return "floating point `" + v.dump() + "`";
    case json::value_t::string: return "string " + v.dump();
    case json::value_t::array: return "sequence";
    case json::value_t::object: return "map";
    default: return "value";
    }
}

// One JSON object body, read field by field.  Fields not in `known` are refused up
// front, as Firecracker's deserializer does (serde deny_unknown_fields).  An
// optional field sent as null counts as absent (serde's Option).
class Body {
public:
    Body(const std::string& text, std::initializer_list<std::string_view> known) {
        try {
            j_ = parse_json<json>(text, "request body");
        } catch (const DataError& e) {  // nested past kMaxJsonDepth
            bad_body(e.what());
        } catch (const json::exception& e) {  // parse_error, or out_of_range: a number like 1e999
            // Drop nlohmann's "[json.exception.parse_error.101] " tag.
            std::string msg = e.what();
            if (size_t p = msg.find("] "); msg.starts_with("[json.exception") && p != std::string::npos)
                msg.erase(0, p + 2);
            bad_body(msg);
        }
        if (!j_.is_object()) bad_body("invalid type: " + describe(j_) + ", expected a map");
        for (const auto& [key, value] : j_.items()) {
            bool ok = false;
            for (auto k : known) ok = ok || k == key;
            if (ok) continue;
            std::string expected;
            for (auto k : known) expected += (expected.empty() ? "`" : ", `") + std::string(k) + "`";
            bad_body("unknown field `" + key + "`, expected one of " + expected);
        }
    }

    const json& doc() const { return j_; }

    bool empty() const {
        for (const auto& [key, value] : j_.items())
            if (!value.is_null()) return false;
        return true;
    }

    std::optional<std::string> str(const char* name, bool required = false) const {
        const json* v = get(name, required);
        if (!v) return std::nullopt;
        if (!v->is_string()) wrong_type(name, *v, "a string");
        return v->get<std::string>();
    }

    std::optional<bool> boolean(const char* name, bool required = false) const {
        const json* v = get(name, required);
        if (!v) return std::nullopt;
        if (!v->is_boolean()) wrong_type(name, *v, "a boolean");
        return v->get<bool>();
    }

    std::optional<uint64_t> uint(const char* name, uint64_t max, const char* type_name,
                                 bool required = false) const {
        const json* v = get(name, required);
        if (!v) return std::nullopt;
        if (v->is_number_integer() && !v->is_number_unsigned())
            bad_body("`" + std::string(name) + "`: invalid value: " + describe(*v) + ", expected " +
                     type_name);
        if (!v->is_number_unsigned()) wrong_type(name, *v, type_name);
        uint64_t n = v->get<uint64_t>();
        if (n > max)
            bad_body("`" + std::string(name) + "`: invalid value: " + describe(*v) + ", expected " +
                     type_name);
        return n;
    }

    // One of `variants`, e.g. action_type.
    std::optional<std::string> variant(const char* name, std::initializer_list<std::string_view> variants,
                                       bool required = false) const {
        auto s = str(name, required);
        if (!s) return s;
        std::string expected;
        for (auto v : variants) {
            if (*s == v) return s;
            expected += (expected.empty() ? "`" : ", `") + std::string(v) + "`";
        }
        bad_body("`" + std::string(name) + "`: unknown variant `" + *s + "`, expected one of " +
                 expected);
    }

    // A Firecracker field kindling accepts only with its default value (scripts often
    // spell the default out, e.g. "cpu_template": "None").
    void only_default(const char* name, const char* default_value) const {
        const json* v = get(name, false);
        if (!v) return;
        if (v->is_string() && v->get<std::string>() == default_value) return;
        throw BadRequest("`" + std::string(name) + "`: only " + json(default_value).dump() +
                         " is supported by kindling, got " + v->dump());
    }

    // A Firecracker field kindling doesn't implement: accepted only when absent/null.
    void unsupported(const char* name) const {
        if (get(name, false))
            throw BadRequest("`" + std::string(name) + "` is not supported by kindling");
    }

private:
    const json* get(const char* name, bool required) const {
        auto it = j_.find(name);
        if (it == j_.end() || (it->is_null() && !required)) {
            if (required) bad_body("missing field `" + std::string(name) + "`");
            return nullptr;
        }
        return &*it;
    }

    [[noreturn]] static void wrong_type(const char* name, const json& v, const char* expected) {
        bad_body("`" + std::string(name) + "`: invalid type: " + describe(v) + ", expected " +
                 expected);
    }

    json j_;
};

struct Call {
    VmmControl& vmm;
    const std::string& instance_id;
    const HttpRequest& req;
    std::string_view param;  // the {…} path segment, if the route has one
};

HttpResponse ok_json(const json& j) { return HttpResponse::json(200, j.dump()); }

HttpResponse get_instance(const Call& c) {
    return ok_json({{"id", c.instance_id},
                    {"state", vm_state_name(c.vmm.state())},
                    {"vmm_version", kVersion},
                    {"app_name", "kindling"}});
}

HttpResponse get_version(const Call&) { return ok_json({{"firecracker_version", kVersion}}); }

HttpResponse put_boot_source(const Call& c) {
    Body b(c.req.body, {"kernel_image_path", "boot_args", "initrd_path", "guest_kind"});
    BootSource bs;
    bs.kernel_image_path = *b.str("kernel_image_path", true);
    bs.boot_args = b.str("boot_args").value_or("");
    bs.initrd_path = b.str("initrd_path").value_or("");
    auto kind = b.variant("guest_kind", {"auto", "nano", "linux"}).value_or("auto");
    bs.kind = kind == "nano" ? GuestKind::kNano : kind == "linux" ? GuestKind::kLinux : GuestKind::kAuto;
    c.vmm.set_boot_source(bs);
    return HttpResponse::no_content();
}

json machine_json(const MachineConfig& m) {
    return {{"vcpu_count", m.vcpu_count},
            {"mem_size_mib", m.mem_size_mib},
            {"smt", m.smt},
            {"track_dirty_pages", m.track_dirty_pages}};
}

HttpResponse get_machine_config(const Call& c) { return ok_json(machine_json(c.vmm.machine_config())); }

Body machine_body(const std::string& text) {
    return Body(text, {"vcpu_count", "mem_size_mib", "smt", "track_dirty_pages", "cpu_template",
                       "huge_pages"});
}

// PUT replaces the whole config (absent optional fields take their defaults); PATCH
// changes only what it names.  Range checks (1..32 vCPUs, ...) are the VMM's.
MachineConfig read_machine(const Body& b, MachineConfig m, bool patch) {
    b.only_default("cpu_template", "None");
    b.only_default("huge_pages", "None");
    if (auto v = b.uint("vcpu_count", UINT8_MAX, "u8", !patch)) m.vcpu_count = static_cast<uint32_t>(*v);
    if (auto v = b.uint("mem_size_mib", UINT64_MAX, "usize", !patch)) m.mem_size_mib = *v;
    if (auto v = b.boolean("smt")) m.smt = *v;
    if (auto v = b.boolean("track_dirty_pages")) m.track_dirty_pages = *v;
    return m;
}

HttpResponse put_machine_config(const Call& c) {
    Body b = machine_body(c.req.body);
    c.vmm.set_machine_config(read_machine(b, MachineConfig{}, false));
    return HttpResponse::no_content();
}

HttpResponse patch_machine_config(const Call& c) {
    Body b = machine_body(c.req.body);
    if (b.empty()) throw BadRequest("Empty PATCH request.");
    c.vmm.set_machine_config(read_machine(b, c.vmm.machine_config(), true));
    return HttpResponse::no_content();
}

HttpResponse put_drive(const Call& c) {
    Body b(c.req.body, {"drive_id", "path_on_host", "is_root_device", "is_read_only", "partuuid",
                        "cache_type", "io_engine", "rate_limiter"});
    DriveConfig d;
    d.drive_id = *b.str("drive_id", true);
    if (d.drive_id != c.param)
        throw BadRequest("The id from the path [" + std::string(c.param) +
                         "] does not match the id from the body [" + d.drive_id + "]!");
    d.path_on_host = *b.str("path_on_host", true);
    d.is_root_device = *b.boolean("is_root_device", true);
    // Required in swagger 1.3, optional (default false) since Firecracker 1.5.
    d.is_read_only = b.boolean("is_read_only").value_or(false);
    b.unsupported("partuuid");
    b.unsupported("rate_limiter");
    b.only_default("cache_type", "Unsafe");
    b.only_default("io_engine", "Sync");
    c.vmm.set_drive(d);
    return HttpResponse::no_content();
}

HttpResponse put_vsock(const Call& c) {
    Body b(c.req.body, {"guest_cid", "uds_path", "vsock_id"});
    VsockConfig v;
    v.guest_cid = static_cast<uint32_t>(*b.uint("guest_cid", UINT32_MAX, "u32", true));
    v.uds_path = *b.str("uds_path", true);
    b.str("vsock_id");  // deprecated since Firecracker 1.0: type-checked, then ignored
    c.vmm.set_vsock(v);
    return HttpResponse::no_content();
}

HttpResponse put_actions(const Call& c) {
    Body b(c.req.body, {"action_type"});
    auto action = *b.variant("action_type", {"FlushMetrics", "InstanceStart", "SendCtrlAltDel"}, true);
    if (action == "InstanceStart")
        c.vmm.start();
    else if (action == "SendCtrlAltDel")
        c.vmm.send_ctrl_alt_del();
    // FlushMetrics: kindling keeps no Firecracker-style metrics file; nothing to flush.
    return HttpResponse::no_content();
}

HttpResponse patch_vm(const Call& c) {
    Body b(c.req.body, {"state"});
    if (*b.variant("state", {"Paused", "Resumed"}, true) == "Paused")
        c.vmm.pause();
    else
        c.vmm.resume();
    return HttpResponse::no_content();
}

// PUT /snapshot/create {snapshot_type, snapshot_path, mem_file_path?}.  A kindling
// snapshot is a directory (DESIGN.md): snapshot_path names it; mem_file_path, if
// given, must be its "mem".  Extensions: parent_path (diff over that layer instead
// of the one this VM was restored from), tags.
HttpResponse put_snapshot_create(const Call& c) {
    Body b(c.req.body, {"snapshot_type", "snapshot_path", "mem_file_path", "version", "parent_path", "tags"});
    SnapshotRequest r;
    r.diff = b.variant("snapshot_type", {"Full", "Diff"}).value_or("Full") == "Diff";
    r.dir = *b.str("snapshot_path", true);
    if (auto m = b.str("mem_file_path"); m && *m != r.dir + "/mem")
        throw BadRequest("mem_file_path must be snapshot_path + \"/mem\": a kindling snapshot is one directory");
    b.str("version");  // Firecracker's target-version field: type-checked, then ignored
    r.parent_dir = b.str("parent_path").value_or("");
    c.vmm.create_snapshot(r);
    return HttpResponse::no_content();
}

// PUT /snapshot/load {snapshot_path, mem_backend?: {backend_type: File|Uffd,
// backend_path}, mem_file_path?, enable_diff_snapshots?, track_dirty_pages?,
// resume_vm?}.  Without mem_backend kindling serves memory itself (copy-on-read).
// Extension: vsock_uds_path (the host socket of this clone's vsock device).
HttpResponse put_snapshot_load(const Call& c) {
    Body b(c.req.body, {"snapshot_path", "mem_backend", "mem_file_path", "enable_diff_snapshots",
                        "track_dirty_pages", "resume_vm", "vsock_uds_path", "allow_shared_pages"});
    RestoreRequest r;
    r.dir = *b.str("snapshot_path", true);
    if (auto m = b.str("mem_file_path"); m && *m != r.dir + "/mem")
        throw BadRequest("mem_file_path must be snapshot_path + \"/mem\": a kindling snapshot is one directory");
    const json& j = b.doc();
    if (j.contains("mem_backend") && !j["mem_backend"].is_null()) {
        const json& mb = j["mem_backend"];
        if (!mb.is_object() || !mb.contains("backend_type") || !mb["backend_type"].is_string())
            bad_body("`mem_backend`: expected {\"backend_type\": \"File\"|\"Uffd\", \"backend_path\": ...}");
        std::string type = mb["backend_type"].get<std::string>();
        std::string path = mb.contains("backend_path") && mb["backend_path"].is_string() ? mb["backend_path"].get<std::string>() : "";
        if (type == "File") {
            r.backend = MemoryBackendKind::kFile;
            if (!path.empty() && path != r.dir + "/mem")
                throw BadRequest("backend_path of a File backend must be snapshot_path + \"/mem\"");
        } else if (type == "Uffd") {
            r.backend = MemoryBackendKind::kUffdExternal;
            r.uffd_socket = path;
            if (path.empty()) bad_body("`mem_backend`: a Uffd backend needs backend_path (the handler's socket)");
        } else {
            bad_body("`backend_type`: unknown variant `" + type + "`, expected one of `File`, `Uffd`");
        }
    }
    r.track_dirty_pages = b.boolean("enable_diff_snapshots").value_or(false) || b.boolean("track_dirty_pages").value_or(false);
    r.resume = b.boolean("resume_vm").value_or(false);
    if (auto v = b.str("vsock_uds_path")) r.vsock_uds_path = *v;
    r.allow_shared_pages = b.boolean("allow_shared_pages").value_or(false);
    c.vmm.restore(r);
    return HttpResponse::no_content();
}

struct Route {
    std::string_view method;
    std::string_view pattern;  // a trailing "{}" segment matches one non-empty path segment
    HttpResponse (*run)(const Call&);
};

constexpr Route kRoutes[] = {
    {"GET", "/", get_instance},
    {"GET", "/version", get_version},
    {"PUT", "/boot-source", put_boot_source},
    {"GET", "/machine-config", get_machine_config},
    {"PUT", "/machine-config", put_machine_config},
    {"PATCH", "/machine-config", patch_machine_config},
    {"PUT", "/drives/{}", put_drive},
    {"PUT", "/vsock", put_vsock},
    {"PUT", "/actions", put_actions},
    {"PATCH", "/vm", patch_vm},
    {"PUT", "/snapshot/create", put_snapshot_create},
    {"PUT", "/snapshot/load", put_snapshot_load},
};

// Matches `path` against `pattern`; on a match with "{}" sets `param`.
bool match(std::string_view pattern, std::string_view path, std::string_view& param) {
    if (!pattern.ends_with("{}")) return pattern == path;
    std::string_view prefix = pattern.substr(0, pattern.size() - 2);
    if (!path.starts_with(prefix)) return false;
    std::string_view rest = path.substr(prefix.size());
    if (rest.empty() || rest.find('/') != std::string_view::npos) return false;
    param = rest;
    return true;
}

}  // namespace

FirecrackerApi::FirecrackerApi(VmmControl& vmm, std::string instance_id)
    : vmm_(vmm), instance_id_(std::move(instance_id)) {}

HttpResponse FirecrackerApi::fault(int status, const std::string& message) {
    // The message may quote the request's bytes, which need not be UTF-8 (dump() would
    // throw out of handle(); found by tests/fuzz/fc_api): invalid bytes become U+FFFD.
    return HttpResponse::json(status, json{{"fault_message", message}}.dump(-1, ' ', false, json::error_handler_t::replace));
}

HttpResponse FirecrackerApi::handle(const HttpRequest& req) {
    std::string_view path = req.path();
    const Route* route = nullptr;
    std::string_view param;
    std::string allow;
    for (const Route& r : kRoutes) {
        std::string_view p;
        if (!match(r.pattern, path, p)) continue;
        if (r.method == req.method) {
            route = &r;
            param = p;
            break;
        }
        allow += (allow.empty() ? "" : ", ") + std::string(r.method);
    }
    if (!route) {
        if (allow.empty())
            return fault(404, "Invalid request path: " + std::string(path));
        HttpResponse r = fault(405, "Invalid request method: " + req.method + " " + std::string(path));
        r.headers.set("Allow", allow);
        return r;
    }
    try {
        return route->run(Call{vmm_, instance_id_, req, param});
    } catch (const BadRequest& e) {
        return fault(400, e.what());
    } catch (const Error& e) {
        // The VMM refused the request (ConfigError, UsageError, a failed open, ...).
        return fault(400, e.what());
    } catch (const std::exception& e) {
        log_warn("API %s %s: %s", req.method.c_str(), req.target.c_str(), e.what());
        return fault(500, std::string("Internal error: ") + e.what());
    } catch (...) {
        return fault(500, "Internal error");
    }
}

HttpHandler FirecrackerApi::handler() {
    return [this](const HttpRequest& req) { return handle(req); };
}

HttpServerOptions FirecrackerApi::server_options() {
    HttpServerOptions o;
    o.max_body_bytes = kMaxPayloadBytes;
    o.label = "API socket";
    o.error_formatter = [](int status, const std::string& message) { return fault(status, message); };
    o.on_thread_start = [] { enter_thread(ThreadKind::kApi, "fc_api"); };
    return o;
}

}  // namespace kindling
