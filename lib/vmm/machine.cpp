#include "vmm/machine.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstring>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "kindling/nano_abi.h"
#include "kvm/elf.h"
#include "kvm/linux_boot.h"
#include "kvm/nano_boot.h"
#include "kvm/vcpu_state.h"
#include "seccomp/thread_filter.h"
#include "snapshot/access_log.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/uffd_memory.h"
#include "vmm/device_manager.h"

namespace kindling {

namespace {

// The signal used to kick a vCPU thread out of KVM_RUN or a blocking wait.
int kick_signal() { return SIGRTMIN; }

void install_kick_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR
        ::sigaction(kick_signal(), &sa, nullptr);
    });
}

std::string hex(uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%" PRIx64, v);
    return b;
}

// Guest console bytes (serial THR and KN_PORT_WRITE) go straight to the console fd:
// nothing is buffered in the VMM, so a crash loses no output.
void console_write(int fd, const void* data, size_t len) {
    try {
        write_full(fd, data, len, "console");
    } catch (const Error& e) {
        log_debug("%s", e.what());
    }
}

// Firecracker's LAPIC setup (arch/x86_64/interrupts.rs): LINT0 as ExtINT so the
// PIC's interrupts reach the CPU, LINT1 as NMI.
void set_lapic_lint(Vcpu& v) {
    kvm_lapic_state st{};
    if (::ioctl(v.fd(), KVM_GET_LAPIC, &st) < 0) throw_errno("KVM_GET_LAPIC");
    auto set_mode = [&](size_t off, uint32_t mode) {
        uint32_t reg;
        std::memcpy(&reg, st.regs + off, 4);
        reg = (reg & ~0x700u) | (mode << 8);
        std::memcpy(st.regs + off, &reg, 4);
    };
    set_mode(0x350, 7);  // LVT LINT0: ExtINT
    set_mode(0x360, 4);  // LVT LINT1: NMI
    if (::ioctl(v.fd(), KVM_SET_LAPIC, &st) < 0) throw_errno("KVM_SET_LAPIC");
}

// A nano boot writes its image, page tables and boot info into the first 2 MiB and
// starts its stack at the top: 4 KiB pages there, so the start does not fault in and
// zero two 2 MiB pages for a few KiB (hello: cold start 3.5 -> 2.8 ms, bench/boot).
// The heap between keeps huge pages: a guest that fills memory gets one host fault
// per 2 MiB (init-heavy's table with 4 KiB pages: 470 -> 700 ms).
void nano_small_pages(GuestMemory& mem) {
    constexpr uint64_t kTwoMiB = 2ull << 20;
    if (mem.size() < 2 * kTwoMiB) return;
    ::madvise(mem.base(), kTwoMiB, MADV_NOHUGEPAGE);
    ::madvise(mem.base() + mem.size() - kTwoMiB, kTwoMiB, MADV_NOHUGEPAGE);
}

}  // namespace

// The nano ports (KN_PORT_*), see nano_abi.h, registered from `base`: all of them for
// nano guests; KN_PORT_EXIT and KN_PORT_READY for Linux guests, whose agent reports
// readiness and stops the VM through them or through the same two registers on its
// control page (kLinuxControlAddr, kindling-linux(7)).
class NanoPorts : public BusDevice {
public:
    NanoPorts(Machine& m, uint16_t base) : m_(m), base_(base) {}
    void read(uint64_t offset, uint8_t* data, size_t len) override { std::memset(data, 0xff, len); }
    void write(uint64_t offset, const uint8_t* data, size_t len) override {
        uint32_t v = 0;
        std::memcpy(&v, data, len < 4 ? len : 4);
        switch (base_ + offset) {
        case KN_PORT_WRITE: {
            kn_iovec iov{};
            const uint8_t* p = nullptr;
            if (!m_.mem_->read_obj(v, iov) || !(p = m_.mem_->host_ptr(iov.addr, iov.len))) {
                m_.stop(kExitDataErr, "guest console write points outside guest memory (iovec at " + hex(v) +
                                          ", buffer " + hex(iov.addr) + " + " + std::to_string(iov.len) + ")");
                return;
            }
            console_write(m_.opts_.console_fd, p, iov.len);
            break;
        }
        case KN_PORT_WAIT:
            m_.nano_wait(v);
            break;
        case KN_PORT_EXIT:
            m_.stop(static_cast<int>(v & 0xff), "guest exited with status " + std::to_string(v));
            break;
        case KN_PORT_MMIO_BATCH:
            m_.mmio_batch(v);
            break;
        case KN_PORT_READY:
            m_.guest_ready(v);
            break;
        default:
            m_.stop(kExitDataErr, "guest wrote to unknown port " + hex(base_ + offset));
        }
    }

private:
    Machine& m_;
    uint16_t base_;
};


Machine::Machine(Options opts) : opts_(opts) {
    stopped_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stopped_fd_) throw_errno("eventfd");
}

Machine::~Machine() {
    stop(exit_status_, stop_reason_.empty() ? "VMM shutting down" : stop_reason_);
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    if (device_thread_.joinable()) {
        device_loop_.stop();
        device_thread_.join();
    }
}

void Machine::set_boot_source(const BootSource& b) {
    std::lock_guard lk(mu_);
    if (state_ != VmState::kNotStarted) throw UsageError("the boot source cannot change after the VM started");
    config_.boot = b;
}

void Machine::check_machine_config(const MachineConfig& m) {
    if (m.vcpu_count < 1 || m.vcpu_count > 32) throw ConfigError("vcpu_count must be between 1 and 32");
    if (m.mem_size_mib < 1) throw ConfigError("mem_size_mib must be at least 1");
    // Guest memory is MAP_NORESERVE, so mmap would happily promise more than the
    // host has; refuse up front instead of letting the OOM killer decide later.
    struct sysinfo si {};
    if (::sysinfo(&si) == 0) {
        uint64_t host_mib = (static_cast<uint64_t>(si.totalram) + si.totalswap) * si.mem_unit >> 20;
        if (m.mem_size_mib > host_mib)
            throw ConfigError("memory of " + std::to_string(m.mem_size_mib) + " MiB is more than this host has (" +
                              std::to_string(host_mib) + " MiB)");
    }
}

void Machine::set_machine_config(const MachineConfig& m) {
    std::lock_guard lk(mu_);
    if (state_ != VmState::kNotStarted) throw UsageError("the machine config cannot change after the VM started");
    check_machine_config(m);
    config_.machine = m;
}

MachineConfig Machine::machine_config() const {
    std::lock_guard lk(mu_);
    return config_.machine;
}

void Machine::set_drive(const DriveConfig& d) {
    std::lock_guard lk(mu_);
    if (state_ != VmState::kNotStarted) throw UsageError("drives cannot change after the VM started");
    for (auto& e : config_.drives)
        if (e.drive_id == d.drive_id) {
            e = d;
            return;
        }
    config_.drives.push_back(d);
}

void Machine::set_vsock(const VsockConfig& v) {
    std::lock_guard lk(mu_);
    if (state_ != VmState::kNotStarted) throw UsageError("the vsock device cannot change after the VM started");
    if (v.guest_cid < 3) throw ConfigError("guest_cid must be 3 or more");
    if (v.uds_path.empty()) throw ConfigError("uds_path must not be empty");
    config_.vsock = v;
}

VmState Machine::state() const {
    std::lock_guard lk(mu_);
    return state_;
}

void Machine::start() {
    {
        std::lock_guard lk(mu_);
        if (state_ != VmState::kNotStarted) throw UsageError("the VM has already been started");
        if (config_.boot.kernel_image_path.empty()) throw ConfigError("no kernel or nano image configured");
    }
    auto t0 = std::chrono::steady_clock::now();
    build();
    log_debug("VM built in %.0f us", std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    launch(VmState::kRunning);
}

void Machine::launch(VmState st) {
    if (opts_.before_guest_runs) opts_.before_guest_runs(machine_config());
    install_kick_handler();
    {
        std::lock_guard lk(mu_);
        state_ = st;
        if (st == VmState::kPaused) pause_requested_ = true;
    }
    if (!nano_) device_thread_ = std::thread([this] { device_main(); });
    for (size_t i = 0; i < vcpus_.size(); ++i) threads_.emplace_back([this, i] { vcpu_main(i); });
}

void Machine::release_vcpus() {
    {
        std::lock_guard lk(mu_);
        vcpus_released_ = true;
    }
    cv_.notify_all();
}

void Machine::device_main() {
    try {
        enter_thread(ThreadKind::kDevice, "fc_device");
    } catch (const std::exception& e) {
        stop(kExitSoftware, std::string("device thread: ") + e.what());
        return;
    }
    device_loop_.run();
}

void Machine::build() {
    const VmConfig& c = config_;
    const std::string& path = c.boot.kernel_image_path;
    uint64_t mem_bytes = c.machine.mem_size_mib << 20;

    // Read and check the image before touching KVM: bad input fails fast.
    KernelFormat fmt = detect_kernel_format(path);
    ElfImage img;
    if (c.boot.kind == GuestKind::kNano || (c.boot.kind == GuestKind::kAuto && fmt == KernelFormat::kElf)) {
        img = read_elf(path);
        nano_ = c.boot.kind == GuestKind::kNano || is_nano_image(img);
    }
    if (!nano_ && fmt == KernelFormat::kUnknown)
        throw DataError(path + ": not an ELF or bzImage kernel");
    if (nano_ && c.machine.vcpu_count != 1) throw ConfigError("a nano guest runs on exactly one vCPU");
    if (nano_ && !c.boot.initrd_path.empty()) throw ConfigError("a nano guest takes no initrd");
    if (nano_ && !c.drives.empty()) throw ConfigError("nano guests have no virtio-blk driver; drives are for linux guests");

    kvm_ = std::make_unique<Kvm>();
    mem_ = std::make_unique<GuestMemory>(mem_bytes);
    if (nano_) nano_small_pages(*mem_);
    vm_ = std::make_unique<Vm>(*kvm_);
    vm_->set_memory(*mem_, c.machine.track_dirty_pages);
    if (!nano_) vm_->create_irqchip_and_pit();

    build_devices();

    NanoBootState nano_st;
    LinuxBootState linux_st;
    if (nano_) {
        NanoBootParams p;
        p.cmdline = c.boot.boot_args;
        p.tsc_khz = vm_->tsc_khz();
        p.guest_cid = c.vsock ? c.vsock->guest_cid : 0;
        for (const auto& slot : devices_->virtio_slots()) {
            kn_device d{};
            d.mmio_base = slot.base;
            d.mmio_size = KN_MMIO_STRIDE;
            d.device_id = slot.device_id;
            p.devices.push_back(d);
        }
        nano_st = setup_nano(*mem_, img, p);
    } else {
        LinuxBootParams p;
        p.cmdline = c.boot.boot_args;
        // virtio-mmio devices are announced on the command line (no ACPI/DT here).
        for (const auto& slot : devices_->virtio_slots()) {
            char dev[80];
            std::snprintf(dev, sizeof dev, " virtio_mmio.device=4K@0x%llx:%u",
                          static_cast<unsigned long long>(slot.base), slot.irq);
            p.cmdline += dev;
        }
        p.cmdline += " kindling.generation=" + hex(kLinuxGenerationAddr);
        p.cmdline += " kindling.control=" + hex(kLinuxControlAddr);
        p.initrd_path = c.boot.initrd_path;
        linux_st = setup_linux(*mem_, path, p);
        write_generation(*mem_, kLinuxGenerationAddr);
    }

    const int n = static_cast<int>(c.machine.vcpu_count);
    for (int i = 0; i < n; ++i) {
        auto v = std::make_unique<Vcpu>(*vm_, i);
        v->set_cpuid(Vcpu::cpuid_for(*kvm_, i, n));
        kvm_sregs s = v->get_sregs();
        kvm_regs r{};
        if (nano_) {
            apply_nano_boot_state(nano_st, r, s);
        } else {
            const auto msrs = boot_msrs();
            int set = v->set_msrs(msrs);
            if (set != static_cast<int>(msrs.size()))
                log_verbose("KVM accepted %d of %zu boot MSRs", set, msrs.size());
            apply_linux_boot_state(linux_st, r, s);
            if (i != 0) r.rip = 0;  // APs wait for INIT/SIPI from the BSP
            set_lapic_lint(*v);
        }
        v->set_sregs(s);
        v->set_regs(r);
        kvm_fpu fpu{};
        fpu.fcw = 0x37f;
        fpu.mxcsr = 0x1f80;
        v->set_fpu(fpu);
        if (!nano_ && i != 0) {
            kvm_mp_state mp{KVM_MP_STATE_UNINITIALIZED};
            if (::ioctl(v->fd(), KVM_SET_MP_STATE, &mp) < 0) throw_errno("KVM_SET_MP_STATE");
        }
        vcpus_.push_back(std::move(v));
    }
}

void Machine::build_devices() {
    DeviceManager::Options o;
    o.nano = nano_;
    o.console_fd = opts_.console_fd;
    o.on_guest_reset = [this] { stop(0, "guest reset through the i8042 controller"); };
    devices_ = std::make_unique<DeviceManager>(*vm_, *mem_, device_loop_, config_, std::move(o));
    if (nano_)
        devices_->pio_bus().add(KN_PORT_WRITE, 0x20, std::make_shared<NanoPorts>(*this, KN_PORT_WRITE));
    else {
        // The same two registers as ports and as the agent's control page: +0 is
        // KN_PORT_EXIT, +4 KN_PORT_READY.
        static_assert(kLinuxControlAddr + 0x1000 == KN_MMIO_BASE && KN_PORT_READY - KN_PORT_EXIT == 4);
        auto ports = std::make_shared<NanoPorts>(*this, KN_PORT_EXIT);
        devices_->pio_bus().add(KN_PORT_EXIT, 8, ports);
        devices_->mmio_bus().add(kLinuxControlAddr, 8, ports);
    }
}

void Machine::vcpu_main(size_t index) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    Vcpu& v = *vcpus_[index];
    kvm_run* run = v.run_state();
    try {
        // The filter goes on before this thread first enters the guest.
        enter_thread(ThreadKind::kVcpu, ("vcpu" + std::to_string(index)).c_str());
        if (opts_.hold_vcpus) {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return vcpus_released_ || stopping_.load(); });
        }
        if (index == 0) first_run_ = std::chrono::steady_clock::now();
        for (;;) {
            if (parked_or_stopping(index)) break;
            run->immediate_exit = 0;
            if (!v.run()) continue;  // kicked
            stats_.exits.fetch_add(1, std::memory_order_relaxed);
            switch (run->exit_reason) {
            case KVM_EXIT_IO:
                handle_io(index);
                break;
            case KVM_EXIT_MMIO:
                handle_mmio(index);
                break;
            case KVM_EXIT_SHUTDOWN: {
                kvm_regs r = v.get_regs();
                stop(kExitDataErr, "guest crashed: triple fault at rip " + hex(r.rip) + " (vCPU " +
                                       std::to_string(index) + ")");
                break;
            }
            case KVM_EXIT_HLT:
                stop(0, "guest halted");
                break;
            case KVM_EXIT_SYSTEM_EVENT:
                stop(0, "guest requested " + std::string(run->system_event.type == KVM_SYSTEM_EVENT_RESET ? "reset" : "shutdown"));
                break;
            case KVM_EXIT_FAIL_ENTRY:
                stop(kExitSoftware, "KVM entry failed (hardware reason " + hex(run->fail_entry.hardware_entry_failure_reason) + ")");
                break;
            case KVM_EXIT_INTERNAL_ERROR: {
                kvm_regs r = v.get_regs();
                stop(kExitSoftware, "KVM internal error (suberror " + std::to_string(run->internal.suberror) +
                                        ") at rip " + hex(r.rip));
                break;
            }
            default:
                stop(kExitSoftware, "unhandled KVM exit reason " + std::to_string(run->exit_reason));
            }
        }
    } catch (const std::exception& e) {
        stop(kExitSoftware, std::string("vCPU ") + std::to_string(index) + ": " + e.what());
    }
}

void Machine::handle_io(size_t index) {
    kvm_run* run = vcpus_[index]->run_state();
    stats_.pio_exits.fetch_add(1, std::memory_order_relaxed);
    auto* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
    uint16_t port = run->io.port;
    for (uint32_t i = 0; i < run->io.count; ++i, data += run->io.size) {
        bool ok = run->io.direction == KVM_EXIT_IO_OUT ? devices_->pio_bus().write(port, data, run->io.size)
                                                       : devices_->pio_bus().read(port, data, run->io.size);
        if (!ok) {
            if (run->io.direction == KVM_EXIT_IO_IN) std::memset(data, 0xff, run->io.size);
            if (nano_) {
                stop(kExitDataErr, std::string("guest ") + (run->io.direction == KVM_EXIT_IO_OUT ? "wrote to" : "read from") +
                                       " unknown port " + hex(port));
                return;
            }
        }
    }
}

void Machine::handle_mmio(size_t index) {
    kvm_run* run = vcpus_[index]->run_state();
    stats_.mmio_exits.fetch_add(1, std::memory_order_relaxed);
    auto& m = run->mmio;
    Bus& bus = devices_->mmio_bus();
    bool ok = m.is_write ? bus.write(m.phys_addr, m.data, m.len) : bus.read(m.phys_addr, m.data, m.len);
    if (!ok) {
        if (!m.is_write) std::memset(m.data, 0xff, sizeof m.data);
        if (nano_)
            stop(kExitDataErr, std::string("guest ") + (m.is_write ? "wrote to" : "read from") + " unknown MMIO address " +
                                   hex(m.phys_addr));
    }
}

void Machine::guest_ready(uint32_t stage) {
    if (stage == KN_READY_SERVING)
        log_verbose("guest is ready (%.0f us after the first guest instruction)", us_since_first_run());
    else
        log_verbose("guest reached initialisation stage %u (%.0f us)", stage, us_since_first_run());
    std::lock_guard lk(mu_);
    // Pause right here, on the vCPU thread, so a snapshot captures the guest at
    // exactly this stage (the OUT completes when the vCPU next runs).
    if (opts_.pause_at_stage && *opts_.pause_at_stage == stage) {
        pause_requested_ = true;
        opts_.pause_at_stage.reset();
    }
    cv_.notify_all();
}

bool Machine::wait_until_paused(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    bool parked = cv_.wait_for(lk, timeout, [&] {
        return (pause_requested_.load() && vcpus_parked_ == vcpus_.size()) || stopping_.load();
    });
    if (!parked || stopping_.load()) return false;
    state_ = VmState::kPaused;
    return true;
}

void Machine::mmio_batch(uint64_t gpa) {
    uint32_t count = 0;
    if (!mem_->read_obj(gpa, count) || count > KN_MMIO_BATCH_MAX ||
        !mem_->contains(gpa + offsetof(kn_mmio_batch, ops), uint64_t(count) * sizeof(kn_mmio_op))) {
        stop(kExitDataErr, "guest MMIO batch at " + hex(gpa) + " is outside guest memory or has more than " +
                               std::to_string(KN_MMIO_BATCH_MAX) + " operations");
        return;
    }
    for (uint32_t i = 0; i < count && !stopping_.load(); ++i) {
        uint64_t op_gpa = gpa + offsetof(kn_mmio_batch, ops) + uint64_t(i) * sizeof(kn_mmio_op);
        kn_mmio_op op;
        mem_->read_obj(op_gpa, op);
        if (op.size != 1 && op.size != 2 && op.size != 4) {
            stop(kExitDataErr, "guest MMIO batch op " + std::to_string(i) + " has size " + std::to_string(op.size));
            return;
        }
        stats_.batched_mmio.fetch_add(1, std::memory_order_relaxed);
        uint8_t data[4] = {};
        if (op.is_write) {
            std::memcpy(data, &op.value, op.size);
            if (!devices_->mmio_bus().write(op.addr, data, op.size)) {
                stop(kExitDataErr, "guest wrote to unknown MMIO address " + hex(op.addr) + " (batched)");
                return;
            }
        } else {
            if (!devices_->mmio_bus().read(op.addr, data, op.size)) {
                stop(kExitDataErr, "guest read from unknown MMIO address " + hex(op.addr) + " (batched)");
                return;
            }
            op.value = 0;
            std::memcpy(&op.value, data, op.size);
            mem_->write_obj(op_gpa, op);
        }
    }
}

void Machine::nano_wait(uint32_t timeout_us) {
    stats_.waits.fetch_add(1, std::memory_order_relaxed);
    // The guest needs no QueueNotify exits: every queue is processed here, then the
    // vCPU thread services the device loop itself until a device used a buffer.
    devices_->poll_virtio();
    using clock = std::chrono::steady_clock;
    auto deadline = timeout_us == KN_WAIT_FOREVER ? clock::time_point::max()
                                                  : clock::now() + std::chrono::microseconds(timeout_us);
    while (!devices_->take_virtio_event()) {
        if (stopping_.load() || pause_requested_.load()) return;
        int ms = -1;
        if (deadline != clock::time_point::max()) {
            auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock::now()).count();
            if (left <= 0) return;
            ms = static_cast<int>((left + 999) / 1000);
        }
        device_loop_.run_once(ms);
    }
}

bool Machine::parked_or_stopping(size_t index) {
    if (stopping_.load()) return true;
    if (!pause_requested_.load()) return false;
    // A snapshot must not catch an instruction half done: finish a served IN/MMIO
    // read (KVM_RUN with immediate_exit) before parking.
    complete_pending_io(*vcpus_[index]);
    std::unique_lock lk(mu_);
    ++vcpus_parked_;
    cv_.notify_all();
    cv_.wait(lk, [&] { return !pause_requested_.load() || stopping_.load(); });
    --vcpus_parked_;
    return stopping_.load();
}

void Machine::kick_vcpus() {
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        vcpus_[i]->run_state()->immediate_exit = 1;
        if (i < threads_.size()) pthread_kill(threads_[i].native_handle(), kick_signal());
    }
    device_loop_.wake();
}

void Machine::pause() {
    std::unique_lock lk(mu_);
    if (state_ == VmState::kPaused) return;
    if (state_ != VmState::kRunning) throw UsageError("the VM is not running");
    pause_requested_ = true;
    lk.unlock();
    kick_vcpus();
    lk.lock();
    cv_.wait(lk, [&] { return vcpus_parked_ == vcpus_.size() || stopping_.load(); });
    if (stopping_.load()) return;
    state_ = VmState::kPaused;
    lk.unlock();
    // Linux guests: the device thread stops too, so no host socket activity writes
    // guest memory while the VM is paused (a snapshot must see a still machine).
    if (device_thread_.joinable()) {
        device_loop_.stop();
        device_thread_.join();
    }
}

void Machine::resume() {
    std::lock_guard lk(mu_);
    if (state_ == VmState::kRunning) return;
    if (state_ != VmState::kPaused) throw UsageError("the VM is not paused");
    pause_requested_ = false;
    state_ = VmState::kRunning;
    if (!nano_ && !device_thread_.joinable()) {
        device_loop_.rearm();
        device_thread_ = std::thread([this] { device_main(); });
    }
    cv_.notify_all();
}

void Machine::send_ctrl_alt_del() {
    if (state() != VmState::kRunning) throw UsageError("the VM is not running");
    I8042* i8042 = devices_->i8042();
    if (!i8042) throw UsageError("SendCtrlAltDel needs a linux guest (nano guests have no i8042)");
    if (!i8042->trigger_ctrl_alt_del()) throw Error("i8042 buffer full; try again", kExitTempFail);
}

void Machine::stop(int status, const std::string& reason) {
    {
        std::lock_guard lk(mu_);
        if (stopping_.exchange(true)) return;
        exit_status_ = status;
        stop_reason_ = reason;
        if (state_ != VmState::kNotStarted) state_ = VmState::kStopped;
        cv_.notify_all();
    }
    kick_vcpus();
    uint64_t one = 1;
    (void)!::write(stopped_fd_.get(), &one, sizeof one);
}

int Machine::wait_for_exit() {
    pollfd p{stopped_fd_.get(), POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    finish_memory();
    return exit_status_;
}

void Machine::finish_memory() {
    if (!uffd_) return;
    uffd_->stop();
    if (!record_access_path_.empty()) {
        try {
            write_access_log(record_access_path_, uffd_->access_log());
            log_verbose("page access order written to %s (%zu pages)", record_access_path_.c_str(),
                        uffd_->access_log().pages.size());
        } catch (const Error& e) {
            log_error("%s", e.what());
        }
        record_access_path_.clear();
    }
}

}  // namespace kindling
