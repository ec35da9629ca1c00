// A microVM: KVM VM + memory + devices + vCPU threads, built from a VmConfig and
// driven through VmmControl (flags or the Firecracker-style API).
//
// Threads: one per vCPU; the caller's thread waits in wait_for_exit().  Device
// backends (vsock host sockets) live in `device_loop_`: for nano guests the vCPU
// thread services it while the guest blocks on KN_PORT_WAIT (no extra thread, no
// cross-thread wakeup on the invoke path); for linux guests a device thread runs it
// and interrupts go through irqfd.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/event_loop.h"
#include "base/fd.h"
#include "kvm/guest_memory.h"
#include "kvm/kvm.h"
#include "vmm/vm_config.h"

namespace kindling {

class DeviceManager;
class LayerStack;
class UffdMemory;
class Userfaultfd;

// Exit counters, for benchmarks and --json.
struct MachineStats {
    std::atomic<uint64_t> exits{0};
    std::atomic<uint64_t> pio_exits{0};
    std::atomic<uint64_t> mmio_exits{0};
    std::atomic<uint64_t> waits{0};
    std::atomic<uint64_t> batched_mmio{0};
};

class Machine : public VmmControl {
public:
    struct Options {
        int console_fd = 1;  // where guest console output goes (not owned)
        // Pause the vCPUs the moment a nano guest reports this KN_PORT_READY stage
        // (snap-make: snapshot exactly there).
        std::optional<uint32_t> pause_at_stage;
        // Called once every host resource of the VM is open (images, drives, the
        // snapshot, sockets, KVM) and before any vCPU runs (fc-launch --jail enters
        // the jail here), with the VM's size.  If it throws, start() or restore()
        // fails with its error.
        std::function<void(const MachineConfig&)> before_guest_runs;
        // vCPU threads install their seccomp filter, then wait for release_vcpus()
        // before their first KVM_RUN (fc-launch: until the main thread has created
        // its last thread and filtered itself, so no guest code runs before that).
        bool hold_vcpus = false;
    };

    explicit Machine(Options opts);
    ~Machine() override;

    // VmmControl
    void set_boot_source(const BootSource& b) override;
    void set_machine_config(const MachineConfig& m) override;
    MachineConfig machine_config() const override;
    void set_drive(const DriveConfig& d) override;
    void set_vsock(const VsockConfig& v) override;
    void start() override;
    void restore(const RestoreRequest& req) override;
    void create_snapshot(const SnapshotRequest& req) override;
    void send_ctrl_alt_del() override;
    void pause() override;
    void resume() override;
    VmState state() const override;

    // Lets held vCPUs (Options::hold_vcpus) run.
    void release_vcpus();
    // Stops the VM from any thread: the first caller's status and reason win.
    void stop(int status, const std::string& reason);
    // Waits until Options::pause_at_stage fired and every vCPU is parked; false if
    // the VM stopped first or `timeout` passed.
    bool wait_until_paused(std::chrono::milliseconds timeout);
    // Blocks until the VM has stopped; returns the exit status for fc-launch.
    int wait_for_exit();
    // An fd that becomes readable once the VM has stopped (for an event loop).
    int stopped_fd() const { return stopped_fd_.get(); }
    const std::string& stop_reason() const { return stop_reason_; }
    int exit_status() const { return exit_status_; }
    double us_since_first_run() const {
        return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - first_run_).count();
    }
    const MachineStats& stats() const { return stats_; }
    // Restore-time memory counters (uffd backend); nullptr for other backends.
    const UffdMemory* uffd() const { return uffd_.get(); }

private:
    friend class NanoPorts;

    // The checks a boot and a restore both make: vCPU count, memory the host has.
    static void check_machine_config(const MachineConfig& m);
    void build();
    // Starts the vCPU threads (and the device thread for linux guests) in `state`.
    void launch(VmState state);
    void build_devices();
    void vcpu_main(size_t index);
    void device_main();
    void handle_io(size_t index);
    void handle_mmio(size_t index);
    // KN_PORT_WAIT: service devices, then block until an event or the timeout.
    void nano_wait(uint32_t timeout_us);
    // KN_PORT_MMIO_BATCH: the accesses listed at `gpa`, in order.
    void mmio_batch(uint64_t gpa);
    void guest_ready(uint32_t stage);
    // After the vCPUs stopped: stop serving guest memory, write the access log.
    void finish_memory();
    void kick_vcpus();
    bool parked_or_stopping(size_t index);

    Options opts_;
    VmConfig config_;
    mutable std::mutex mu_;  // config_, state_
    std::condition_variable cv_;
    VmState state_ = VmState::kNotStarted;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> pause_requested_{false};
    size_t vcpus_parked_ = 0;
    bool vcpus_released_ = false;
    int exit_status_ = 0;
    std::string stop_reason_;
    UniqueFd stopped_fd_;

    bool nano_ = false;
    std::unique_ptr<Kvm> kvm_;
    std::unique_ptr<Vm> vm_;
    std::unique_ptr<GuestMemory> mem_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::thread> threads_;
    std::thread device_thread_;
    EventLoop device_loop_;
    std::unique_ptr<DeviceManager> devices_;  // after what devices reference: destroyed first
    std::string restored_from_;  // the layer this VM was restored from
    // Restore memory backends (declared after mem_: destroyed before it is unmapped).
    std::unique_ptr<LayerStack> stack_;
    std::unique_ptr<UffdMemory> uffd_;
    std::unique_ptr<Userfaultfd> external_uffd_;
    UniqueFd uffd_handler_sock_;
    std::string record_access_path_;
    std::mutex snapshot_mu_;
    MachineStats stats_;
    std::chrono::steady_clock::time_point first_run_;
};

}  // namespace kindling
