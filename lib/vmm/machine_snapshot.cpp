// Machine snapshots: create (full or diff layers) from a paused VM, and restore a
// VM from a layer stack instead of booting it.  DESIGN.md "Snapshots".
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cinttypes>
#include <cstring>

#include "base/error.h"
#include "base/io.h"
#include "base/log.h"
#include "kindling/nano_abi.h"
#include "kvm/linux_boot.h"
#include "kvm/nano_boot.h"
#include "kvm/vcpu_state.h"
#include "kvm/vm_state.h"
#include "snapshot/access_log.h"
#include "snapshot/snapshot_dir.h"
#include "snapshot/uffd_memory.h"
#include "snapshot/vmstate.h"
#include "vmm/device_manager.h"
#include "vmm/machine.h"

namespace kindling {

namespace {

LayerConfig layer_config_of(const VmConfig& c, bool nano, const std::vector<std::string>& tags) {
    LayerConfig lc;
    lc.machine_kind = nano ? MachineKind::kNano : MachineKind::kLinux;
    lc.vcpu_count = c.machine.vcpu_count;
    lc.mem_size_mib = c.machine.mem_size_mib;
    lc.vsock = c.vsock;
    lc.drives = c.drives;
    lc.tags = tags;
    return lc;
}

}  // namespace

void Machine::create_snapshot(const SnapshotRequest& req) {
    std::lock_guard op(snapshot_mu_);
    if (state() != VmState::kPaused) throw UsageError("the VM must be paused to create a snapshot (PATCH /vm {\"state\": \"Paused\"})");
    if (req.dir.empty()) throw UsageError("no snapshot directory given");

    MachineState ms;
    ms.kind = nano_ ? MachineKind::kNano : MachineKind::kLinux;
    ms.mem_size = mem_->size();
    ms.devices = devices_->save();
    ms.vm = save_vm(*vm_);
    for (auto& v : vcpus_) ms.vcpus.push_back(save_vcpu(*kvm_, *v));
    std::vector<uint8_t> vmstate = encode_vmstate(ms);

    LayerConfig lc = layer_config_of(config_, nano_, req.tags);
    WriteOptions wo;
    // A booted VM's untouched memory is zero; a restored VM's must be read.
    wo.scan = restored_from_.empty() ? MemScan::kSkipNonResident : MemScan::kReadAll;
    if (!req.diff) {
        write_full_layer(req.dir, lc, vmstate, *mem_, wo);
        log_verbose("full snapshot written to %s", req.dir.c_str());
        return;
    }

    // Diff layer: the pages the guest wrote (KVM's dirty log) plus the pages the
    // VMM itself wrote (virtio rings and buffers, the generation page), which KVM
    // does not log: found by comparing every resident page with the parent's.
    std::string parent = req.parent_dir.empty() ? restored_from_ : req.parent_dir;
    if (parent.empty()) throw UsageError("a diff snapshot needs a parent layer: restore from one, or name it");
    if (!config_.machine.track_dirty_pages)
        throw UsageError("diff snapshots need dirty-page tracking (machine-config track_dirty_pages, or restore with it)");
    DirtyBitmap dirty(mem_->size() / kSnapshotPageSize);
    uint64_t first_page = 0;
    for (size_t slot = 0; slot < mem_->regions().size(); ++slot) {
        const auto& r = mem_->regions()[slot];
        uint64_t pages = r.size / kSnapshotPageSize;
        std::vector<uint64_t> bits((pages + 63) / 64);
        kvm_dirty_log log{};
        log.slot = static_cast<uint32_t>(slot);
        log.dirty_bitmap = bits.data();
        if (::ioctl(vm_->fd(), KVM_GET_DIRTY_LOG, &log) < 0) throw_errno("KVM_GET_DIRTY_LOG");
        dirty.add_slot_log(first_page, bits, pages);
        first_page += pages;
    }
    uint64_t logged = 0, compared = 0, vmm_written = 0;
    for (uint64_t p = 0; p < dirty.pages(); ++p) logged += dirty.test(p);
    LayerStack base = LayerStack::open(parent);
    if (base.mem_size() != mem_->size()) throw DataError(parent + ": parent layer has a different memory size");
    std::vector<unsigned char> resident((mem_->size() + kSnapshotPageSize - 1) / kSnapshotPageSize);
    if (::mincore(mem_->base(), mem_->size(), resident.data()) < 0) throw_errno("mincore guest memory");
    std::vector<uint8_t> page(kSnapshotPageSize);
    static const uint8_t kZeroPage[kSnapshotPageSize] = {};
    for (uint64_t p = 0; p < dirty.pages(); ++p) {
        if (dirty.test(p) || !(resident[p] & 1)) continue;
        ++compared;
        const uint8_t* mine = mem_->base() + p * kSnapshotPageSize;
        auto src = base.page(p);
        const uint8_t* theirs = kZeroPage;
        if (!src.zero()) {
            pread_full(base.layers()[static_cast<size_t>(src.layer)].mem.get(), page.data(), page.size(),
                       static_cast<off_t>(src.offset), base.layers()[static_cast<size_t>(src.layer)].dir + "/mem");
            theirs = page.data();
        }
        if (std::memcmp(mine, theirs, kSnapshotPageSize) != 0) {
            dirty.set(p);
            ++vmm_written;
        }
    }
    write_diff_layer(req.dir, lc, parent, vmstate, *mem_, dirty.words(), wo);
    log_verbose("diff snapshot written to %s: %" PRIu64 " pages logged dirty by KVM, %" PRIu64
                " more changed by the VMM (%" PRIu64 " resident pages compared)",
                req.dir.c_str(), logged, vmm_written, compared);
}

void Machine::restore(const RestoreRequest& req) {
    {
        std::lock_guard lk(mu_);
        if (state_ != VmState::kNotStarted) throw UsageError("a snapshot can only be loaded into a VM that has not started");
    }
    // Validate the whole layer stack and the vmstate before touching KVM: a bad
    // snapshot fails with a clear error and no VM.
    LayerStack stack = LayerStack::open(req.dir);
    const LayerInfo& top = stack.top();
    {
        // What a boot checks: vCPUs, memory the host has.
        MachineConfig want;
        want.vcpu_count = top.config.vcpu_count;
        want.mem_size_mib = top.config.mem_size_mib;
        try {
            check_machine_config(want);
        } catch (const ConfigError& e) {
            throw ConfigError(req.dir + ": " + e.what());
        }
    }
    MachineState ms = stack.read_vmstate();
    nano_ = ms.kind == MachineKind::kNano;
    {
        std::lock_guard lk(mu_);
        config_.machine.vcpu_count = top.config.vcpu_count;
        config_.machine.mem_size_mib = top.config.mem_size_mib;
        config_.machine.track_dirty_pages = req.track_dirty_pages;
        config_.drives = top.config.drives;
        config_.vsock = top.config.vsock;
        if (req.vsock_uds_path) {
            if (!config_.vsock) throw ConfigError(req.dir + ": the snapshot has no vsock device to override");
            config_.vsock->uds_path = *req.vsock_uds_path;
        } else if (config_.vsock) {
            // A snapshot names no host path the VMM would bind (or replace).
            throw UsageError(req.dir + ": the snapshot has a vsock device: give its host socket (--vsock PATH, or "
                             "vsock_uds_path in PUT /snapshot/load); the path recorded in the snapshot is not used");
        }
        config_.boot = BootSource{};
    }

    AccessLog prefetch_log;
    if (!req.prefetch.empty()) prefetch_log = read_access_log(req.prefetch, stack.mem_size());
    if (req.backend != MemoryBackendKind::kUffd && (!req.prefetch.empty() || !req.record_access.empty()))
        throw UsageError("--record-access and --prefetch need the uffd memory backend");

    auto t0 = std::chrono::steady_clock::now();
    kvm_ = std::make_unique<Kvm>();
    if (req.backend == MemoryBackendKind::kFile) {
        if (!req.allow_shared_pages)
            throw UsageError("the file memory backend shares the host page cache between VMs; pass --allow-shared-pages to use it");
        if (stack.layers().size() != 1)
            throw UsageError("the file memory backend needs a full snapshot (this one has " +
                             std::to_string(stack.layers().size()) + " layers)");
        mem_ = std::make_unique<GuestMemory>(stack.mem_size(), GuestMemory::Backing::kFilePrivate,
                                             stack.layers().front().mem.get());
    } else if (req.backend == MemoryBackendKind::kUffdExternal) {
        if (stack.layers().size() != 1)
            throw UsageError("an external uffd handler gets one mem file (Firecracker's protocol): "
                             "restore a full snapshot, not a stack of " + std::to_string(stack.layers().size()) + " layers");
        mem_ = std::make_unique<GuestMemory>(stack.mem_size(), GuestMemory::Backing::kAnonymousSmall);
        Userfaultfd uffd = Userfaultfd::open();
        uffd.register_missing(mem_->base(), mem_->size());
        uffd_handler_sock_ = send_uffd_to_handler(req.uffd_socket, uffd_regions_of(*mem_), uffd.fd());
        external_uffd_ = std::make_unique<Userfaultfd>(std::move(uffd));
    } else {
        // Copy-on-read: private anonymous memory, every page installed by the
        // handler thread from the layer stack on first touch (or by prefetch).
        mem_ = std::make_unique<GuestMemory>(stack.mem_size(), GuestMemory::Backing::kAnonymousSmall);
        stack_ = std::make_unique<LayerStack>(std::move(stack));
        UffdOptions uo;
        uo.record_access = !req.record_access.empty();
        uo.on_failure = [this](const std::string& why) { stop(kExitIoErr, "guest memory: " + why); };
        uffd_ = std::make_unique<UffdMemory>(Userfaultfd::open(), mem_->base(), mem_->size(),
                                             layer_stack_source(*stack_), uo);
        record_access_path_ = req.record_access;
        if (!prefetch_log.pages.empty()) uffd_->prefetch_all_before_start(prefetch_log.pages);
        uffd_->start();
    }
    vm_ = std::make_unique<Vm>(*kvm_);
    vm_->set_memory(*mem_, config_.machine.track_dirty_pages);
    if (!nano_) vm_->create_irqchip_and_pit();
    restore_vm(*vm_, ms.vm);
    for (size_t i = 0; i < ms.vcpus.size(); ++i) {
        auto v = std::make_unique<Vcpu>(*vm_, static_cast<int>(i));
        restore_vcpu(*kvm_, *v, ms.vcpus[i]);
        vcpus_.push_back(std::move(v));
    }

    build_devices();
    devices_->restore(ms.devices, req.dir + "/vmstate");
    // Uniqueness: a fresh generation id and entropy before any vCPU runs, so no two
    // clones of one snapshot share random state (DESIGN.md, the VMGenID idea).
    write_generation(*mem_, nano_ ? KN_GENERATION_ADDR : kLinuxGenerationAddr);
    if (uffd_ && uffd_->failed()) throw Error("guest memory: " + uffd_->failure(), kExitIoErr);
    restored_from_ = req.dir;
    log_debug("VM restored in %.0f us", std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    launch(req.resume ? VmState::kRunning : VmState::kPaused);
}

}  // namespace kindling
