#include "devices/virtio/virtio_mmio.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

VirtioMmio::VirtioMmio(const GuestMemory& mem, std::shared_ptr<VirtioDevice> device, Interrupt& irq, std::string id)
    : mem_(mem), device_(std::move(device)), id_(std::move(id)), irq_(irq), used_signal_(*this) {
    uint16_t n = device_->num_queues();
    queues_.reserve(n);  // never reallocated: devices hold a span of them
    for (uint16_t i = 0; i < n; ++i) {
        queues_.emplace_back(mem_, device_->name(), i, device_->queue_max_size(i));
        queues_.back().set_failure_handler([this] { on_queue_failure(); });
    }
}

VirtioMmio::~VirtioMmio() {
    // The device may outlive us (shared_ptr): make it forget our queues and signal.
    std::lock_guard lk(device_->mutex());
    device_->reset();
}

uint64_t VirtioMmio::offered_features() const {
    // Ring features this transport's Virtqueue implements; no EVENT_IDX.
    return device_->device_features() | kVirtioFVersion1 | kVirtioFRingIndirectDesc;
}

bool VirtioMmio::active() {
    std::lock_guard lk(device_->mutex());
    return activated_ && !(st_.status & kVirtioStatusNeedsReset);
}

bool VirtioMmio::needs_reset() {
    std::lock_guard lk(device_->mutex());
    return st_.status & kVirtioStatusNeedsReset;
}

VirtioMmioState VirtioMmio::save() {
    std::lock_guard lk(device_->mutex());
    VirtioMmioState s = st_;
    s.queues.clear();
    for (auto& q : queues_) s.queues.push_back(q.config());
    return s;
}

void VirtioMmio::restore(const VirtioMmioState& s, const std::string& what) {
    std::lock_guard lk(device_->mutex());
    reset_locked();
    try {
        restore_locked(s, what);
    } catch (...) {
        reset_locked();
        throw;
    }
}

void VirtioMmio::restore_locked(const VirtioMmioState& s, const std::string& what) {
    const std::string prefix = what.empty() ? std::string(device_->name()) + " state" : what + ": " + device_->name();
    auto bad = [&](const std::string& why) { throw DataError(prefix + ": " + why); };
    auto hex = [](uint64_t v) {
        char b[24];
        std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
        return std::string(b);
    };
    if (s.queues.size() != queues_.size())
        bad(std::to_string(s.queues.size()) + " queues saved, the device has " + std::to_string(queues_.size()));
    if (s.status & kVirtioStatusFeaturesOk) {
        // The same check set_status() made when the driver set FEATURES_OK: the
        // device being restored must offer everything that was negotiated.
        if (s.driver_features & ~offered_features())
            bad("negotiated features " + hex(s.driver_features) + " include some this device does not offer (" +
                hex(offered_features()) + ")");
        if (!(s.driver_features & kVirtioFVersion1)) bad("negotiated features lack VIRTIO_F_VERSION_1");
    }
    const bool needs_reset = s.status & kVirtioStatusNeedsReset;
    const bool running = (s.status & kVirtioStatusDriverOk) && !needs_reset;
    if (running && !(s.status & kVirtioStatusFeaturesOk)) bad("DRIVER_OK without FEATURES_OK");

    st_ = s;
    st_.queues.clear();
    for (size_t i = 0; i < queues_.size(); ++i) {
        queues_[i].config() = s.queues[i];
        // Only a queue that is running has to make sense; the driver may leave
        // anything in the registers of one it has not made ready.
        if (running && s.queues[i].ready) {
            if (std::string why = queues_[i].layout_error(); !why.empty()) bad("queue " + std::to_string(i) + ": " + why);
        }
    }
    if (needs_reset) {
        // As on_queue_failure() left it: every queue stopped until the driver resets.
        for (auto& q : queues_) q.stop_failed();
        activated_ = s.status & kVirtioStatusDriverOk;
    } else if (running) {
        bool indirect = st_.driver_features & kVirtioFRingIndirectDesc;
        for (auto& q : queues_)
            if (!q.start(indirect)) bad("queue " + std::to_string(q.index()) + " did not start");  // checked above
        activated_ = true;
        device_->activate(std::span<Virtqueue>(queues_), used_signal_, st_.driver_features);
    }
    if (st_.interrupt_status) irq_.trigger();
}

namespace {

enum TransportField : uint16_t {
    kFieldDeviceId = 1,
    kFieldDevice = 2,
    kFieldStatus = 3,
    kFieldInterruptStatus = 4,
    kFieldDeviceFeaturesSel = 5,
    kFieldDriverFeaturesSel = 6,
    kFieldDriverFeatures = 7,
    kFieldQueueSel = 8,
    kFieldConfigGeneration = 9,
    kFieldQueue = 10,  // repeated, one per queue in order
};

enum QueueField : uint16_t {
    kQueueSize = 1,
    kQueueReady = 2,
    kQueueDesc = 3,
    kQueueAvail = 4,
    kQueueUsed = 5,
    kQueueNextAvail = 6,
    kQueueNextUsed = 7,
};

// More than any device has; bounds what a corrupt file can make us allocate.
constexpr size_t kMaxSavedQueues = 64;

}  // namespace

void VirtioMmio::save_to(TlvWriter& out) {
    out.integer(kFieldDeviceId, device_->device_id());
    const size_t dev = out.begin_field(kFieldDevice);
    device_->save_to(out);
    out.end_field(dev);
    const VirtioMmioState s = save();
    out.integer(kFieldStatus, s.status);
    out.integer(kFieldInterruptStatus, s.interrupt_status);
    out.integer(kFieldDeviceFeaturesSel, s.device_features_sel);
    out.integer(kFieldDriverFeaturesSel, s.driver_features_sel);
    out.integer(kFieldDriverFeatures, s.driver_features);
    out.integer(kFieldQueueSel, s.queue_sel);
    out.integer(kFieldConfigGeneration, s.config_generation);
    for (const VirtqueueState& q : s.queues) {
        const size_t m = out.begin_field(kFieldQueue);
        out.integer(kQueueSize, q.size);
        out.boolean(kQueueReady, q.ready);
        out.integer(kQueueDesc, q.desc_addr);
        out.integer(kQueueAvail, q.avail_addr);
        out.integer(kQueueUsed, q.used_addr);
        out.integer(kQueueNextAvail, q.next_avail);
        out.integer(kQueueNextUsed, q.next_used);
        out.end_field(m);
    }
}

void VirtioMmio::restore_from(TlvReader& in) {
    TlvFields f(in);
    const uint32_t id = f.integer<uint32_t>(kFieldDeviceId, "device_id");
    if (id != device_->device_id())
        f.fail("saved from a device with id " + std::to_string(id) + ", this machine has " + device_->name() +
               " (id " + std::to_string(device_->device_id()) + ") here");
    VirtioMmioState s;
    s.status = f.integer<uint32_t>(kFieldStatus, "status");
    s.interrupt_status = f.integer<uint32_t>(kFieldInterruptStatus, "interrupt_status");
    s.device_features_sel = f.integer<uint32_t>(kFieldDeviceFeaturesSel, "device_features_sel");
    s.driver_features_sel = f.integer<uint32_t>(kFieldDriverFeaturesSel, "driver_features_sel");
    s.driver_features = f.integer<uint64_t>(kFieldDriverFeatures, "driver_features");
    s.queue_sel = f.integer<uint32_t>(kFieldQueueSel, "queue_sel");
    s.config_generation = f.integer<uint32_t>(kFieldConfigGeneration, "config_generation");
    const auto queues = f.all(kFieldQueue);
    if (queues.size() > kMaxSavedQueues) f.fail(std::to_string(queues.size()) + " queues saved");
    for (size_t i = 0; i < queues.size(); ++i) {
        TlvReader qr(queues[i], f.context() + ": queue " + std::to_string(i));
        TlvFields qf(qr, "its queue");
        VirtqueueState q;
        q.size = qf.integer<uint16_t>(kQueueSize, "size");
        q.ready = qf.boolean(kQueueReady, "ready");
        q.desc_addr = qf.integer<uint64_t>(kQueueDesc, "desc_addr");
        q.avail_addr = qf.integer<uint64_t>(kQueueAvail, "avail_addr");
        q.used_addr = qf.integer<uint64_t>(kQueueUsed, "used_addr");
        q.next_avail = qf.integer<uint16_t>(kQueueNextAvail, "next_avail");
        q.next_used = qf.integer<uint16_t>(kQueueNextUsed, "next_used");
        qf.finish();
        if (q.size > Virtqueue::kMaxQueueSize)
            qf.fail("queue size " + std::to_string(q.size) + " exceeds " + std::to_string(Virtqueue::kMaxQueueSize));
        s.queues.push_back(q);
    }
    TlvReader device_state(f.bytes(kFieldDevice, "device"), f.context() + ": " + device_->name());
    f.finish();
    restore(s, in.context());
    device_->restore_from(device_state);
}

void VirtioMmio::UsedSignal::trigger() { t_.raise(kIntUsedBuffer); }

// Called with the device mutex held (from device code or from the transport).
void VirtioMmio::raise(uint32_t bits) {
    st_.interrupt_status |= bits;
    if (batching_)
        batch_raised_ = true;
    else
        irq_.trigger();
}

void VirtioMmio::on_queue_failure() {
    // virtio 1.2 §2.1.2: set DEVICE_NEEDS_RESET and tell the driver with a
    // configuration change notification.  Every queue stops: one bad ring means the
    // driver's view of the device can no longer be trusted.
    for (auto& q : queues_) q.stop_failed();
    st_.status |= kVirtioStatusNeedsReset;
    raise(kIntConfigChange);
}

Virtqueue* VirtioMmio::selected_queue() {
    return st_.queue_sel < queues_.size() ? &queues_[st_.queue_sel] : nullptr;
}

void VirtioMmio::read(uint64_t offset, uint8_t* data, size_t len) {
    std::lock_guard lk(device_->mutex());
    if (offset >= kConfig) {
        std::memset(data, 0, len);
        device_->read_config(offset - kConfig, data, len);
        return;
    }
    // §4.2.2: registers are read with 32-bit aligned accesses only.
    uint32_t v = 0;
    if (len == 4 && offset % 4 == 0)
        v = read_reg(static_cast<uint32_t>(offset));
    else
        log_debug("%s: ignored %zu-byte read at register offset 0x%llx", device_->name(), len,
                  static_cast<unsigned long long>(offset));
    std::memset(data, 0, len);
    std::memcpy(data, &v, len < 4 ? len : 4);
}

void VirtioMmio::write(uint64_t offset, const uint8_t* data, size_t len) {
    std::lock_guard lk(device_->mutex());
    if (offset >= kConfig) {
        device_->write_config(offset - kConfig, data, len);
        return;
    }
    if (len != 4 || offset % 4 != 0) {
        log_debug("%s: ignored %zu-byte write at register offset 0x%llx", device_->name(), len,
                  static_cast<unsigned long long>(offset));
        return;
    }
    uint32_t v;
    std::memcpy(&v, data, 4);
    write_reg(static_cast<uint32_t>(offset), v);
}

uint32_t VirtioMmio::read_reg(uint32_t reg) {
    Virtqueue* q = selected_queue();
    switch (reg) {
    case kMagicValue: return kMagic;
    case kVersion: return 2;
    case kDeviceId: return device_->device_id();
    case kVendorId: return kVendor;
    case kDeviceFeatures: {
        uint64_t f = offered_features();
        return st_.device_features_sel == 0 ? static_cast<uint32_t>(f)
               : st_.device_features_sel == 1 ? static_cast<uint32_t>(f >> 32)
                                              : 0;
    }
    case kQueueNumMax: return q ? q->max_size() : 0;  // 0: no such queue
    case kQueueReady: return q && q->config().ready ? 1 : 0;
    case kInterruptStatus: return st_.interrupt_status;
    case kStatus: return st_.status;
    // No shared memory regions: a non-existent region reads as length -1 (§4.2.2).
    case kShmLenLow:
    case kShmLenHigh:
    case kShmBaseLow:
    case kShmBaseHigh: return 0xffffffffu;
    case kConfigGeneration: return st_.config_generation;
    default: return 0;
    }
}

void VirtioMmio::write_reg(uint32_t reg, uint32_t v) {
    Virtqueue* q = selected_queue();
    // Queue layout may change only while the queue is not ready and the device is
    // not running (§4.2.3.2); later writes are ignored.
    bool q_writable = q && !q->config().ready && !activated_;
    auto set_lo = [](uint64_t& a, uint32_t lo) { a = (a & ~0xffffffffull) | lo; };
    auto set_hi = [](uint64_t& a, uint32_t hi) { a = (a & 0xffffffffull) | (static_cast<uint64_t>(hi) << 32); };
    switch (reg) {
    case kDeviceFeaturesSel: st_.device_features_sel = v; break;
    case kDriverFeaturesSel: st_.driver_features_sel = v; break;
    case kDriverFeatures:
        if (st_.status & kVirtioStatusFeaturesOk) break;  // negotiation is over
        if (st_.driver_features_sel == 0) set_lo(st_.driver_features, v);
        else if (st_.driver_features_sel == 1) set_hi(st_.driver_features, v);
        break;
    case kQueueSel: st_.queue_sel = v; break;
    case kQueueNum:
        if (q_writable) q->config().size = static_cast<uint16_t>(v > 0xffff ? 0 : v);
        break;
    case kQueueReady:
        if (q && !activated_) q->config().ready = v == 1;
        break;
    case kQueueDescLow: if (q_writable) set_lo(q->config().desc_addr, v); break;
    case kQueueDescHigh: if (q_writable) set_hi(q->config().desc_addr, v); break;
    case kQueueDriverLow: if (q_writable) set_lo(q->config().avail_addr, v); break;
    case kQueueDriverHigh: if (q_writable) set_hi(q->config().avail_addr, v); break;
    case kQueueDeviceLow: if (q_writable) set_lo(q->config().used_addr, v); break;
    case kQueueDeviceHigh: if (q_writable) set_hi(q->config().used_addr, v); break;
    case kQueueNotify:
        if (activated_ && !(st_.status & kVirtioStatusNeedsReset) && v < queues_.size())
            device_->notify(static_cast<uint16_t>(v));
        break;
    case kInterruptAck: st_.interrupt_status &= ~v; break;
    case kStatus: set_status(v); break;
    case kShmSel: break;
    default:
        log_debug("%s: ignored write of 0x%x to register 0x%x", device_->name(), v, reg);
    }
}

void VirtioMmio::reset_locked() {
    device_->reset();
    for (auto& q : queues_) q.reset();
    uint32_t gen = st_.config_generation;
    st_ = VirtioMmioState{};
    st_.config_generation = gen;
    activated_ = false;
}

void VirtioMmio::set_status(uint32_t v) {
    if (v == 0) {  // §4.2.3.1: writing 0 resets the device
        reset_locked();
        return;
    }
    uint32_t old = st_.status;
    uint32_t added = v & ~old;
    if (added & kVirtioStatusFeaturesOk) {
        // §2.2.2: accept only features we offered; we are a modern-only device
        // (§4.2: Version 2), so VERSION_1 is required.
        uint64_t f = st_.driver_features;
        if ((f & ~offered_features()) || !(f & kVirtioFVersion1)) {
            log_warn("%s: driver asked for features 0x%llx (offered 0x%llx); refusing FEATURES_OK", device_->name(),
                     static_cast<unsigned long long>(f), static_cast<unsigned long long>(offered_features()));
            v &= ~kVirtioStatusFeaturesOk;
            added &= ~kVirtioStatusFeaturesOk;
        }
    }
    // NEEDS_RESET is ours to set and only a reset clears it.
    st_.status = v | (old & kVirtioStatusNeedsReset);
    if ((added & kVirtioStatusDriverOk) && !activated_) {
        if (!(st_.status & kVirtioStatusFeaturesOk)) {
            log_warn("%s: driver set DRIVER_OK without FEATURES_OK; device not started", device_->name());
            st_.status &= ~kVirtioStatusDriverOk;
            return;
        }
        if (st_.status & kVirtioStatusNeedsReset) return;
        bool indirect = st_.driver_features & kVirtioFRingIndirectDesc;
        for (auto& q : queues_)
            if (!q.start(indirect)) return;  // failure handler already set NEEDS_RESET
        activated_ = true;
        device_->activate(std::span<Virtqueue>(queues_), used_signal_, st_.driver_features);
    }
}

void VirtioMmio::poll() {
    std::lock_guard lk(device_->mutex());
    if (!activated_ || (st_.status & kVirtioStatusNeedsReset)) return;
    batching_ = true;
    for (uint16_t i = 0; i < queues_.size(); ++i) {
        if (st_.status & kVirtioStatusNeedsReset) break;
        device_->notify(i);
    }
    batching_ = false;
    if (batch_raised_) {
        batch_raised_ = false;
        irq_.trigger();
    }
}

}  // namespace kindling
