// FirecrackerApi against a fake VmmControl: each route's effect, and Firecracker's
// status codes and fault messages.  The last cases go through a real HttpServer on
// a Unix socket with libcurl, the way Firecracker scripts talk to the API.
#include <curl/curl.h>
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "http/http_server.h"
#include "vmm/fc_api.h"

using namespace kindling;
using json = nlohmann::json;

namespace {

class FakeVmm : public VmmControl {
public:
    std::vector<std::string> calls;
    BootSource boot;
    MachineConfig machine;
    std::vector<DriveConfig> drives;
    std::optional<VsockConfig> vsock;
    VmState vm_state = VmState::kNotStarted;
    std::string refuse;  // non-empty: the next call throws ConfigError(refuse)

    void set_boot_source(const BootSource& b) override {
        check("boot_source");
        boot = b;
    }
    void set_machine_config(const MachineConfig& m) override {
        check("machine_config");
        machine = m;
    }
    MachineConfig machine_config() const override { return machine; }
    void set_drive(const DriveConfig& d) override {
        check("drive");
        drives.push_back(d);
    }
    void set_vsock(const VsockConfig& v) override {
        check("vsock");
        vsock = v;
    }
    void start() override {
        check("start");
        vm_state = VmState::kRunning;
    }
    void send_ctrl_alt_del() override { check("ctrl_alt_del"); }
    void pause() override {
        check("pause");
        vm_state = VmState::kPaused;
    }
    void resume() override {
        check("resume");
        vm_state = VmState::kRunning;
    }
    VmState state() const override { return vm_state; }
    SnapshotRequest snap;
    RestoreRequest load;
    void create_snapshot(const SnapshotRequest& r) override {
        check("snapshot_create");
        snap = r;
    }
    void restore(const RestoreRequest& r) override {
        check("snapshot_load");
        load = r;
    }

private:
    void check(const char* call) {
        calls.push_back(call);
        if (!refuse.empty()) throw ConfigError(std::exchange(refuse, ""));
    }
};

HttpRequest request(std::string method, std::string target, std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    return r;
}

std::string fault_of(const HttpResponse& r) {
    auto j = json::parse(r.body);
    REQUIRE(j.contains("fault_message"));
    return j["fault_message"].get<std::string>();
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("FirecrackerApi GET / describes the instance") {
    FakeVmm vmm;
    FirecrackerApi api(vmm, "vm-7");
    auto r = api.handle(request("GET", "/"));
    CHECK(r.status == 200);
    CHECK(r.headers.get("content-type") == "application/json");
    auto j = json::parse(r.body);
    CHECK(j["id"] == "vm-7");
    CHECK(j["state"] == "Not started");
    CHECK(j["app_name"] == "kindling");
    CHECK(j["vmm_version"].is_string());
    vmm.vm_state = VmState::kPaused;
    CHECK(json::parse(api.handle(request("GET", "/")).body)["state"] == "Paused");
    CHECK(json::parse(api.handle(request("GET", "/version")).body).contains("firecracker_version"));
}

TEST_CASE("FirecrackerApi PUT /boot-source") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("PUT", "/boot-source",
                                R"({"kernel_image_path": "/k/vmlinux", "boot_args": "console=ttyS0",
                                    "initrd_path": "/k/initrd"})"));
    CHECK(r.status == 204);
    CHECK(r.body.empty());
    REQUIRE(vmm.calls == std::vector<std::string>{"boot_source"});
    CHECK(vmm.boot.kernel_image_path == "/k/vmlinux");
    CHECK(vmm.boot.boot_args == "console=ttyS0");
    CHECK(vmm.boot.initrd_path == "/k/initrd");
    CHECK(vmm.boot.kind == GuestKind::kAuto);

    CHECK(api.handle(request("PUT", "/boot-source",
                             R"({"kernel_image_path": "/g/hello.elf", "guest_kind": "nano",
                                 "initrd_path": null})"))
              .status == 204);
    CHECK(vmm.boot.kind == GuestKind::kNano);
    CHECK(vmm.boot.initrd_path.empty());
    CHECK(vmm.boot.boot_args.empty());
    api.handle(request("PUT", "/boot-source", R"({"kernel_image_path": "/k", "guest_kind": "linux"})"));
    CHECK(vmm.boot.kind == GuestKind::kLinux);

    r = api.handle(request("PUT", "/boot-source", R"({"kernel_image_path": "/k", "guest_kind": "bsd"})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "unknown variant `bsd`"));
    r = api.handle(request("PUT", "/boot-source", R"({"boot_args": "x"})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "missing field `kernel_image_path`"));
}

TEST_CASE("FirecrackerApi machine-config: GET, PUT replaces, PATCH merges") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("GET", "/machine-config"));
    CHECK(r.status == 200);
    CHECK(json::parse(r.body) ==
          json{{"vcpu_count", 1}, {"mem_size_mib", 128}, {"smt", false}, {"track_dirty_pages", false}});

    r = api.handle(request("PUT", "/machine-config",
                           R"({"vcpu_count": 2, "mem_size_mib": 1024, "track_dirty_pages": true,
                               "cpu_template": "None"})"));
    CHECK(r.status == 204);
    CHECK(vmm.machine.vcpu_count == 2);
    CHECK(vmm.machine.mem_size_mib == 1024);
    CHECK(vmm.machine.track_dirty_pages);
    CHECK(!vmm.machine.smt);

    r = api.handle(request("PATCH", "/machine-config", R"({"mem_size_mib": 256})"));
    CHECK(r.status == 204);
    CHECK(vmm.machine.vcpu_count == 2);  // kept
    CHECK(vmm.machine.mem_size_mib == 256);
    CHECK(vmm.machine.track_dirty_pages);  // kept

    // PUT resets what it doesn't name (Firecracker: optional fields take defaults).
    api.handle(request("PUT", "/machine-config", R"({"vcpu_count": 1, "mem_size_mib": 64})"));
    CHECK(!vmm.machine.track_dirty_pages);

    r = api.handle(request("GET", "/machine-config"));
    CHECK(json::parse(r.body)["mem_size_mib"] == 64);

    r = api.handle(request("PATCH", "/machine-config", "{}"));
    CHECK(r.status == 400);
    CHECK(fault_of(r) == "Empty PATCH request.");
    r = api.handle(request("PUT", "/machine-config", R"({"vcpu_count": 2})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "missing field `mem_size_mib`"));
    r = api.handle(request("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64,
                                                          "cpu_template": "T2"})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "cpu_template"));
}

TEST_CASE("FirecrackerApi refuses a body nested 100k levels deep with 400, not a stack overflow") {
    // only_default() dumps a refused cpu_template; nlohmann's dump() recurses per level.
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    auto r = api.handle(request("PUT", "/machine-config",
                                R"({"vcpu_count": 1, "mem_size_mib": 64, "cpu_template": )" + deep + "}"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "request body: JSON nested deeper than 64 levels"));
    CHECK(vmm.calls.empty());
}

TEST_CASE("FirecrackerApi PUT /drives/{id} checks the id against the body") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("PUT", "/drives/rootfs",
                                R"({"drive_id": "rootfs", "path_on_host": "/img/root.ext4",
                                    "is_root_device": true, "is_read_only": true})"));
    CHECK(r.status == 204);
    REQUIRE(vmm.drives.size() == 1);
    CHECK(vmm.drives[0].drive_id == "rootfs");
    CHECK(vmm.drives[0].path_on_host == "/img/root.ext4");
    CHECK(vmm.drives[0].is_root_device);
    CHECK(vmm.drives[0].is_read_only);

    r = api.handle(request("PUT", "/drives/data",
                           R"({"drive_id": "data", "path_on_host": "/d", "is_root_device": false})"));
    CHECK(r.status == 204);
    CHECK(!vmm.drives.back().is_read_only);

    r = api.handle(request("PUT", "/drives/a",
                           R"({"drive_id": "b", "path_on_host": "/d", "is_root_device": false})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "does not match"));
    CHECK(vmm.drives.size() == 2);

    CHECK(api.handle(request("PUT", "/drives/", "{}")).status == 404);
    CHECK(api.handle(request("PUT", "/drives/a/b", "{}")).status == 404);
}

TEST_CASE("FirecrackerApi PUT /vsock") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("PUT", "/vsock",
                                R"({"guest_cid": 3, "uds_path": "/tmp/v.sock", "vsock_id": "vsock0"})"));
    CHECK(r.status == 204);
    REQUIRE(vmm.vsock);
    CHECK(vmm.vsock->guest_cid == 3);
    CHECK(vmm.vsock->uds_path == "/tmp/v.sock");
    r = api.handle(request("PUT", "/vsock", R"({"guest_cid": 4294967296, "uds_path": "/v"})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "expected u32"));
    r = api.handle(request("PUT", "/vsock", R"({"guest_cid": -3, "uds_path": "/v"})"));
    CHECK(r.status == 400);
}

TEST_CASE("FirecrackerApi PUT /actions and PATCH /vm") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    CHECK(api.handle(request("PUT", "/actions", R"({"action_type": "InstanceStart"})")).status == 204);
    CHECK(vmm.vm_state == VmState::kRunning);
    CHECK(api.handle(request("PATCH", "/vm", R"({"state": "Paused"})")).status == 204);
    CHECK(vmm.vm_state == VmState::kPaused);
    CHECK(api.handle(request("PATCH", "/vm", R"({"state": "Resumed"})")).status == 204);
    CHECK(vmm.vm_state == VmState::kRunning);
    CHECK(api.handle(request("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})")).status == 204);
    CHECK(api.handle(request("PUT", "/actions", R"({"action_type": "FlushMetrics"})")).status == 204);
    CHECK(vmm.calls == std::vector<std::string>{"start", "pause", "resume", "ctrl_alt_del"});

    auto r = api.handle(request("PUT", "/actions", R"({"action_type": "Reboot"})"));
    CHECK(r.status == 400);
    CHECK(contains(fault_of(r), "unknown variant `Reboot`"));
    r = api.handle(request("PATCH", "/vm", R"({"state": "Running"})"));
    CHECK(r.status == 400);
    CHECK(vmm.calls.size() == 4);
}

TEST_CASE("FirecrackerApi: a fault message quoting bytes that are not UTF-8 is still a 400 with JSON") {
    // tests/fuzz/fc_api found nlohmann's parse error (quoting the body) making fault()'s
    // dump() throw out of handle().
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    HttpResponse r = api.handle(request("PUT", "/boot-source", "{\"kernel_image_path\": tr\xff\xff}"));
    CHECK(r.status == 400);
    CHECK(json::parse(r.body).at("fault_message").get<std::string>().find("\xef\xbf\xbd") != std::string::npos);
}

TEST_CASE("FirecrackerApi rejects bad bodies with 400 and a fault_message") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    struct Case {
        const char* target;
        const char* body;
        const char* expect;
    };
    const Case cases[] = {
        {"/boot-source", R"({"kernel_image_path": )", "parse error"},
        {"/boot-source", "", "parse error"},
        {"/boot-source", R"(["kernel_image_path"])", "expected a map"},
        {"/boot-source", R"({"kernel_image_path": "/k", "root": "/dev/vda"})", "unknown field `root`"},
        {"/boot-source", R"({"kernel_image_path": 5})", "invalid type: integer `5`, expected a string"},
        {"/machine-config", R"({"vcpu_count": "2", "mem_size_mib": 64})", "expected u8"},
        {"/machine-config", R"({"vcpu_count": 2.5, "mem_size_mib": 64})", "floating point"},
        {"/machine-config", R"({"vcpu_count": 1e999, "mem_size_mib": 64})", "number overflow"},  // was a 500
        {"/machine-config", R"({"vcpu_count": 256, "mem_size_mib": 64})", "expected u8"},
        {"/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "smt": "yes"})", "expected a boolean"},
        {"/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 64, "ht_enabled": true})", "unknown field"},
        {"/drives/r", R"({"drive_id": "r", "path_on_host": "/d"})", "missing field `is_root_device`"},
        {"/drives/r", R"({"drive_id": "r", "path_on_host": "/d", "is_root_device": 1})", "expected a boolean"},
        {"/drives/r", R"({"drive_id": "r", "path_on_host": "/d", "is_root_device": false,
                          "rate_limiter": {"bandwidth": {}}})", "rate_limiter"},
        {"/vsock", R"({"uds_path": "/v"})", "missing field `guest_cid`"},
        {"/actions", R"({"action_type": null})", "invalid type: null, expected a string"},
        {"/actions", R"({})", "missing field `action_type`"},
    };
    for (const auto& c : cases) {
        std::string target = c.target, body = c.body;
        CAPTURE(target);
        CAPTURE(body);
        auto r = api.handle(request("PUT", c.target, c.body));
        CHECK(r.status == 400);
        CHECK(r.headers.get("content-type") == "application/json");
        std::string msg = fault_of(r);
        CAPTURE(msg);
        CHECK(contains(msg, c.expect));
    }
    CHECK(vmm.calls.empty());  // nothing reached the VMM
}

TEST_CASE("FirecrackerApi turns VmmControl errors into 400 with their message") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    vmm.refuse = "vcpu_count: 64 is out of range 1..32";
    auto r = api.handle(request("PUT", "/machine-config", R"({"vcpu_count": 64, "mem_size_mib": 64})"));
    CHECK(r.status == 400);
    CHECK(fault_of(r) == "vcpu_count: 64 is out of range 1..32");
    vmm.refuse = "The requested operation is not supported after starting the microVM.";
    r = api.handle(request("PUT", "/actions", R"({"action_type": "InstanceStart"})"));
    CHECK(r.status == 400);
    CHECK(fault_of(r) == "The requested operation is not supported after starting the microVM.");
    CHECK(vmm.vm_state == VmState::kNotStarted);
}

TEST_CASE("FirecrackerApi answers unknown paths 404 and wrong methods 405") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("GET", "/nope"));
    CHECK(r.status == 404);
    CHECK(contains(fault_of(r), "/nope"));
    CHECK(api.handle(request("PUT", "/balloon", "{}")).status == 404);
    CHECK(api.handle(request("PUT", "/snapshot/create", "{}")).status == 400);  // missing snapshot_path
    CHECK(api.handle(request("PUT", "/machine-config/", "{}")).status == 404);

    r = api.handle(request("POST", "/actions", R"({"action_type": "InstanceStart"})"));
    CHECK(r.status == 405);
    CHECK(r.headers.get("allow") == "PUT");
    CHECK(contains(fault_of(r), "POST"));
    r = api.handle(request("DELETE", "/machine-config"));
    CHECK(r.status == 405);
    CHECK(r.headers.get("Allow") == "GET, PUT, PATCH");
    CHECK(api.handle(request("GET", "/drives/root")).status == 405);
    CHECK(vmm.calls.empty());
}

// --- over a real socket, with libcurl as the client --------------------------

namespace {

struct CurlResult {
    long status = 0;
    std::string body;
};

size_t collect(char* p, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(p, size * n);
    return size * n;
}

// One request on `curl` (reused, so the connection is kept alive between calls).
CurlResult curl_call(CURL* curl, const std::string& sock, const char* method,
                     const std::string& path, const std::string& body = "") {
    CurlResult res;
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, sock.c_str());
    std::string url = "http://localhost" + path;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    if (!body.empty() || std::string(method) != "GET") {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    } else {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &res.body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    REQUIRE_MESSAGE(rc == CURLE_OK, curl_easy_strerror(rc));
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res.status);
    return res;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-fcapi.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("FirecrackerApi over a Unix socket: the getting-started sequence with curl") {
    TempDir dir;
    std::string sock = dir.path + "/firecracker.socket";
    FakeVmm vmm;
    FirecrackerApi api(vmm, "demo");
    HttpServer server(sock, api.handler(), FirecrackerApi::server_options());
    server.start();

    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    REQUIRE(curl);
    CHECK(curl_call(curl.get(), sock, "PUT", "/boot-source",
                    R"({"kernel_image_path": "/k/vmlinux", "boot_args": "console=ttyS0 reboot=k"})")
              .status == 204);
    CHECK(curl_call(curl.get(), sock, "PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 512})")
              .status == 204);
    CHECK(curl_call(curl.get(), sock, "PUT", "/drives/rootfs",
                    R"({"drive_id": "rootfs", "path_on_host": "/r.ext4", "is_root_device": true,
                        "is_read_only": false})")
              .status == 204);
    CHECK(curl_call(curl.get(), sock, "PUT", "/actions", R"({"action_type": "InstanceStart"})").status ==
          204);
    auto info = curl_call(curl.get(), sock, "GET", "/");
    CHECK(info.status == 200);
    CHECK(json::parse(info.body)["state"] == "Running");
    auto mc = curl_call(curl.get(), sock, "GET", "/machine-config");
    CHECK(json::parse(mc.body)["vcpu_count"] == 2);
    CHECK(vmm.calls == std::vector<std::string>{"boot_source", "machine_config", "drive", "start"});
    CHECK(vmm.boot.boot_args == "console=ttyS0 reboot=k");

    auto bad = curl_call(curl.get(), sock, "PUT", "/vsock", "{not json");
    CHECK(bad.status == 400);
    CHECK(json::parse(bad.body).contains("fault_message"));
    CHECK(curl_call(curl.get(), sock, "GET", "/balloon").status == 404);

    // Over Firecracker's 51200-byte payload limit: the server's 413, in
    // Firecracker's error shape.
    std::string big = R"({"kernel_image_path": ")" + std::string(60000, 'k') + R"("})";
    auto too_big = curl_call(curl.get(), sock, "PUT", "/boot-source", big);
    CHECK(too_big.status == 413);
    CHECK(json::parse(too_big.body).contains("fault_message"));

    // A second fc-launch on the same socket gets the error the tool prints.
    try {
        HttpServer second(sock, api.handler(), FirecrackerApi::server_options());
        FAIL("socket in use was taken");
    } catch (const SysError& e) {
        CHECK(std::string(e.what()) == sock + ": API socket path in use");
    }
    server.stop();
    CHECK(!std::filesystem::exists(sock));
}

TEST_CASE("snapshot routes map Firecracker's bodies onto the snapshot requests") {
    FakeVmm vmm;
    FirecrackerApi api(vmm);
    auto r = api.handle(request("PUT", "/snapshot/create",
                                R"({"snapshot_type": "Diff", "snapshot_path": "/s/fn", "mem_file_path": "/s/fn/mem"})"));
    CHECK(r.status == 204);
    CHECK(vmm.snap.diff);
    CHECK(vmm.snap.dir == "/s/fn");
    r = api.handle(request("PUT", "/snapshot/create", R"({"snapshot_path": "/s/a", "mem_file_path": "/elsewhere"})"));
    CHECK(r.status == 400);
    r = api.handle(request("PUT", "/snapshot/load",
                           R"({"snapshot_path": "/s/fn", "mem_backend": {"backend_type": "Uffd", "backend_path": "/h.sock"}, "resume_vm": true})"));
    CHECK(r.status == 204);
    CHECK(vmm.load.backend == MemoryBackendKind::kUffdExternal);
    CHECK(vmm.load.uffd_socket == "/h.sock");
    CHECK(vmm.load.resume);
    r = api.handle(request("PUT", "/snapshot/load", R"({"snapshot_path": "/s/fn", "mem_backend": {"backend_type": "Nope"}})"));
    CHECK(r.status == 400);
}
