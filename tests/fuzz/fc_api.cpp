// fc-launch's Firecracker API (lib/vmm/fc_api): the JSON bodies and routes an API
// client sends, handled against a VmmControl that keeps the config and state as
// Machine does (config only before start; pause/resume only while running).  The
// input is one or more requests as text (fuzz.h parse_request_text) separated by
// lines "====", handled in order on one VMM.
#include <string>

#include "base/error.h"
#include "tests/fuzz/fuzz.h"
#include "vmm/fc_api.h"

using namespace kindling;

namespace {

class FakeVmm : public VmmControl {
public:
    void set_boot_source(const BootSource& b) override { before_start(), boot_ = b; }
    void set_machine_config(const MachineConfig& m) override { before_start(), machine_ = m; }
    MachineConfig machine_config() const override { return machine_; }
    void set_drive(const DriveConfig& d) override {
        before_start();
        if (drives_.size() < 16) drives_.push_back(d);
    }
    void set_vsock(const VsockConfig& v) override { before_start(), vsock_ = v; }
    void start() override { before_start(), state_ = VmState::kRunning; }
    void send_ctrl_alt_del() override { running(); }
    void pause() override { running(), state_ = VmState::kPaused; }
    void resume() override {
        if (state_ != VmState::kPaused) throw ConfigError("not paused");
        state_ = VmState::kRunning;
    }
    VmState state() const override { return state_; }
    void create_snapshot(const SnapshotRequest&) override {
        if (state_ != VmState::kPaused) throw ConfigError("not paused");
    }
    void restore(const RestoreRequest&) override { before_start(), state_ = VmState::kPaused; }

private:
    void before_start() const {
        if (state_ != VmState::kNotStarted) throw ConfigError("the VM has started");
    }
    void running() const {
        if (state_ != VmState::kRunning) throw ConfigError("not running");
    }
    BootSource boot_;
    MachineConfig machine_;
    std::vector<DriveConfig> drives_;
    VsockConfig vsock_;
    VmState state_ = VmState::kNotStarted;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static bool init = (fuzz::quiet(), true);
    (void)init;
    FakeVmm vmm;
    FirecrackerApi api(vmm, "fuzz");
    std::string_view in = fuzz::as_text(data, size);
    while (true) {
        size_t sep = in.find("\n====\n");
        HttpResponse r = api.handle(fuzz::parse_request_text(in.substr(0, sep)));
        if (r.status < 100 || r.status > 599) __builtin_trap();
        if (sep == std::string_view::npos) break;
        in.remove_prefix(sep + 6);
    }
    return 0;
}
