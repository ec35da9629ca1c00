// virtio-mmio transport + split virtqueue, driven through the registers with a
// hand-written driver ring in guest memory (devices/virtio/test_driver.h).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/tlv.h"
#include "devices/virtio/test_driver.h"
#include "devices/virtio/virtio_mmio.h"
#include "kvm/guest_memory.h"

using namespace kindling;

namespace {

// Copies each chain's readable bytes into its writable part ("echo"), one queue.
class EchoDevice : public VirtioDevice {
public:
    const char* name() const override { return "virtio-echo"; }
    uint32_t device_id() const override { return 0x7e; }
    uint64_t device_features() const override { return 1ull << 3; }
    uint16_t num_queues() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return 8; }
    void read_config(uint64_t offset, uint8_t* data, size_t len) override {
        const char cfg[] = "ECHOCONF";
        for (size_t i = 0; i < len && offset + i < 8; ++i) data[i] = static_cast<uint8_t>(cfg[offset + i]);
    }
    void activate(std::span<Virtqueue> queues, Interrupt& used, uint64_t acked) override {
        q_ = &queues[0];
        used_ = &used;
        ++activations;
    }
    void notify(uint16_t queue) override {
        ++notifies;
        if (!q_) return;
        while (q_->pop(chain_)) {
            std::vector<uint8_t> buf(chain_.readable_bytes);
            chain_.read(0, buf.data(), buf.size());
            size_t n = chain_.write(0, buf.data(), buf.size());
            q_->push(chain_.head, static_cast<uint32_t>(n));
            ++chains;
        }
        if (q_->take_notify_needed()) used_->trigger();
    }
    void reset() override {
        q_ = nullptr;
        ++resets;
    }
    void save_to(TlvWriter&) override {}
    void restore_from(TlvReader& in) override { TlvFields(in).finish(); }

    int activations = 0, notifies = 0, chains = 0, resets = 0;

private:
    Virtqueue* q_ = nullptr;
    Interrupt* used_ = nullptr;
    DescriptorChain chain_;
};

struct Fixture {
    GuestMemory mem{1 << 20};
    CountingInterrupt irq;
    std::shared_ptr<EchoDevice> dev = std::make_shared<EchoDevice>();
    VirtioMmio mmio{mem, dev, irq};
    TestVirtioDriver drv{mem, mmio};

    uint32_t status() { return drv.reg(VirtioMmio::kStatus); }
    bool needs_reset() { return status() & kVirtioStatusNeedsReset; }
    std::string read_str(uint64_t gpa, size_t n) {
        std::string s(n, '\0');
        mem.read(gpa, s.data(), n);
        return s;
    }
};

// Captures what is written to stderr (log lines) while alive.
class StderrCapture {
public:
    StderrCapture() {
        std::fflush(stderr);
        file_ = std::tmpfile();
        saved_ = ::dup(2);
        ::dup2(::fileno(file_), 2);
    }
    std::string text() {
        std::fflush(stderr);
        std::string s;
        std::rewind(file_);
        char b[512];
        size_t n;
        while ((n = std::fread(b, 1, sizeof b, file_)) > 0) s.append(b, n);
        return s;
    }
    ~StderrCapture() {
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        std::fclose(file_);
    }

private:
    FILE* file_;
    int saved_;
};

constexpr uint64_t kFeatures = kVirtioFVersion1;

}  // namespace

TEST_CASE("virtio-mmio identifies itself and negotiates features") {
    Fixture f;
    CHECK(f.drv.reg(VirtioMmio::kMagicValue) == 0x74726976);
    CHECK(f.drv.reg(VirtioMmio::kVersion) == 2);
    CHECK(f.drv.reg(VirtioMmio::kDeviceId) == 0x7e);
    f.drv.set_reg(VirtioMmio::kDeviceFeaturesSel, 0);
    uint32_t lo = f.drv.reg(VirtioMmio::kDeviceFeatures);
    f.drv.set_reg(VirtioMmio::kDeviceFeaturesSel, 1);
    uint32_t hi = f.drv.reg(VirtioMmio::kDeviceFeatures);
    CHECK((lo & (1u << 3)));            // the device's own bit
    CHECK((lo & (1u << 28)));           // INDIRECT_DESC
    CHECK((hi & 1u));                   // VERSION_1
    f.drv.set_reg(VirtioMmio::kQueueSel, 0);
    CHECK(f.drv.reg(VirtioMmio::kQueueNumMax) == 8);
    f.drv.set_reg(VirtioMmio::kQueueSel, 1);
    CHECK(f.drv.reg(VirtioMmio::kQueueNumMax) == 0);  // no such queue

    uint8_t cfg[4] = {};
    f.mmio.read(VirtioMmio::kConfig + 4, cfg, 4);
    CHECK(std::string(reinterpret_cast<char*>(cfg), 4) == "CONF");

    SUBCASE("a legacy driver (no VERSION_1) does not get FEATURES_OK") {
        StderrCapture cap;
        uint32_t st = f.drv.init(0, {8});
        CHECK_FALSE((st & kVirtioStatusFeaturesOk));
        CHECK(f.dev->activations == 0);
    }
    SUBCASE("features the device did not offer are refused") {
        StderrCapture cap;
        uint32_t st = f.drv.init(kFeatures | (1ull << 5), {8});
        CHECK_FALSE((st & kVirtioStatusFeaturesOk));
    }
    SUBCASE("a correct driver gets DRIVER_OK and the device is activated") {
        uint32_t st = f.drv.init(kFeatures, {8});
        CHECK((st & kVirtioStatusDriverOk));
        CHECK(f.dev->activations == 1);
        CHECK(f.mmio.active());
    }
}

TEST_CASE("virtio queue: a normal chain round trip") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t in = f.drv.alloc(64), out = f.drv.alloc(64);
    f.mem.write(in, "hello, ring", 11);
    uint16_t head = f.drv.add_chain(0, {{in, 5, false}, {in + 5, 6, false}, {out, 4, true}, {out + 4, 60, true}});
    f.drv.notify(0);
    auto u = f.drv.pop_used(0);
    REQUIRE(u);
    CHECK(u->id == head);
    CHECK(u->len == 11);
    CHECK(f.read_str(out, 11) == "hello, ring");
    CHECK(f.irq.count == 1);
    CHECK((f.drv.reg(VirtioMmio::kInterruptStatus) & VirtioMmio::kIntUsedBuffer));
    f.drv.set_reg(VirtioMmio::kInterruptAck, VirtioMmio::kIntUsedBuffer);
    CHECK(f.drv.reg(VirtioMmio::kInterruptStatus) == 0);
    CHECK_FALSE(f.needs_reset());

    VirtioMmioState st = f.mmio.save();
    CHECK((st.status & kVirtioStatusDriverOk));
    CHECK(st.driver_features == kFeatures);
    REQUIRE(st.queues.size() == 1);
    CHECK(st.queues[0].ready);
    CHECK(st.queues[0].size == 8);
    CHECK(st.queues[0].desc_addr == f.drv.ring(0).desc);
    CHECK(st.queues[0].next_avail == 1);
    CHECK(st.queues[0].next_used == 1);

    SUBCASE("the ring wraps around many times") {
        for (int i = 0; i < 100; ++i) {
            std::string msg = "msg " + std::to_string(i);
            f.mem.write(in, msg.data(), msg.size());
            f.drv.add_chain(0, {{in, static_cast<uint32_t>(msg.size()), false}, {out, 64, true}});
            f.drv.notify(0);
            auto v = f.drv.pop_used(0);
            REQUIRE(v);
            CHECK(f.read_str(out, v->len) == msg);
        }
        CHECK_FALSE(f.needs_reset());
    }
}

TEST_CASE("virtio queue: poll() serves every pending chain with one interrupt") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t buf = f.drv.alloc(256);
    for (int i = 0; i < 4; ++i) f.drv.add_chain(0, {{buf + 64u * i, 8, false}, {buf + 64u * i + 8, 8, true}});
    f.mmio.poll();
    for (int i = 0; i < 4; ++i) CHECK(f.drv.pop_used(0));
    CHECK(f.irq.count == 1);
    f.mmio.poll();  // nothing new: no interrupt
    CHECK(f.irq.count == 1);

    SUBCASE("VIRTQ_AVAIL_F_NO_INTERRUPT suppresses the interrupt") {
        f.drv.set_avail_flags(0, 1);
        f.drv.add_chain(0, {{buf, 8, false}, {buf + 8, 8, true}});
        f.mmio.poll();
        CHECK(f.drv.pop_used(0));
        CHECK(f.irq.count == 1);
    }
}

TEST_CASE("virtio queue: indirect descriptors") {
    Fixture f;
    SUBCASE("work when negotiated") {
        REQUIRE((f.drv.init(kFeatures | kVirtioFRingIndirectDesc, {8}) & kVirtioStatusDriverOk));
        uint64_t data = f.drv.alloc(64), table = f.drv.alloc(48);
        f.mem.write(data, "indirect", 8);
        TestVirtioDriver::Ring& r = f.drv.ring(0);
        // A 3-entry table: readable 8 bytes, writable 4 + 4 (entries out of order).
        auto put = [&](int i, uint64_t a, uint32_t len, uint16_t flags, uint16_t next) {
            uint8_t d[16];
            std::memcpy(d, &a, 8);
            std::memcpy(d + 8, &len, 4);
            std::memcpy(d + 12, &flags, 2);
            std::memcpy(d + 14, &next, 2);
            f.mem.write(table + 16u * i, d, 16);
        };
        put(0, data, 8, 1, 2);
        put(2, data + 32, 4, 1 | 2, 1);
        put(1, data + 36, 4, 2, 0);
        f.drv.write_desc(0, 0, table, 48, 4, 0);
        f.drv.publish(0, 0);
        (void)r;
        f.drv.notify(0);
        auto u = f.drv.pop_used(0);
        REQUIRE(u);
        CHECK(u->len == 8);
        CHECK(f.read_str(data + 32, 8) == "indirect");
        CHECK_FALSE(f.needs_reset());
    }
    SUBCASE("fail the device when not negotiated") {
        StderrCapture cap;
        REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
        uint64_t table = f.drv.alloc(16);
        f.drv.write_desc(0, 0, table, 16, 4, 0);
        f.drv.publish(0, 0);
        f.drv.notify(0);
        CHECK(f.needs_reset());
        CHECK(cap.text().find("INDIRECT") != std::string::npos);
    }
}

TEST_CASE("virtio queue: hostile rings mark the device failed, never crash or hang") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t buf = f.drv.alloc(64);
    StderrCapture cap;
    std::string expect;

    SUBCASE("descriptor outside guest memory") {
        f.drv.write_desc(0, 5, 0xfffff000ull, 0x2000, 0, 0);
        f.drv.publish(0, 5);
        expect = "virtio-echo: queue 0: descriptor 5 points outside guest memory (addr 0xfffff000, len 8192)";
    }
    SUBCASE("descriptor straddling the end of memory") {
        f.drv.write_desc(0, 1, (1 << 20) - 8, 16, 0, 0);
        f.drv.publish(0, 1);
        expect = "descriptor 1 points outside guest memory";
    }
    SUBCASE("a chain that loops") {
        f.drv.write_desc(0, 0, buf, 4, 1, 1);
        f.drv.write_desc(0, 1, buf, 4, 1, 2);
        f.drv.write_desc(0, 2, buf, 4, 1, 0);
        f.drv.publish(0, 0);
        expect = "loops";
    }
    SUBCASE("a descriptor that points to itself") {
        f.drv.write_desc(0, 3, buf, 4, 1, 3);
        f.drv.publish(0, 3);
        expect = "loops";
    }
    SUBCASE("len = 0xffffffff") {
        f.drv.write_desc(0, 0, buf, 0xffffffffu, 2, 0);
        f.drv.publish(0, 0);
        expect = "descriptor 0 has an absurd length";
    }
    SUBCASE("avail index jumps more than the queue size") {
        f.drv.set_avail_idx(0, 9);
        expect = "available index jumped from 0 to 9 (queue size 8)";
    }
    SUBCASE("avail ring names a descriptor beyond the queue") {
        f.drv.publish(0, 200);
        expect = "names descriptor 200";
    }
    SUBCASE("next beyond the queue") {
        f.drv.write_desc(0, 0, buf, 4, 1, 8);
        f.drv.publish(0, 0);
        expect = "next 8 is outside the queue";
    }
    SUBCASE("device-readable after device-writable") {
        f.drv.write_desc(0, 0, buf, 4, 1 | 2, 1);
        f.drv.write_desc(0, 1, buf, 4, 0, 0);
        f.drv.publish(0, 0);
        expect = "device-readable but follows a device-writable";
    }

    f.drv.notify(0);
    CHECK(f.needs_reset());
    CHECK_FALSE(f.mmio.active());
    CHECK((f.drv.reg(VirtioMmio::kInterruptStatus) & VirtioMmio::kIntConfigChange));
    CHECK(f.irq.count == 1);
    CHECK(f.drv.used_idx(0) == 0);
    std::string log = cap.text();
    CHECK(log.find(expect) != std::string::npos);
    CHECK(std::count(log.begin(), log.end(), '\n') == 1);  // one line

    // The device stays stopped: a valid chain now is not served, the driver cannot
    // clear NEEDS_RESET, and polling does nothing.
    f.drv.add_chain(0, {{buf, 4, false}, {buf + 8, 4, true}});
    f.drv.notify(0);
    f.mmio.poll();
    CHECK(f.drv.used_idx(0) == 0);
    f.drv.set_reg(VirtioMmio::kStatus, 0x0f);
    CHECK(f.needs_reset());

    // A reset brings it back.
    f.drv.set_reg(VirtioMmio::kStatus, 0);
    CHECK(f.status() == 0);
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t b2 = f.drv.alloc(32);
    f.mem.write(b2, "ok", 2);
    f.drv.add_chain(0, {{b2, 2, false}, {b2 + 16, 16, true}});
    f.drv.notify(0);
    auto u = f.drv.pop_used(0);
    REQUIRE(u);
    CHECK(f.read_str(b2 + 16, 2) == "ok");
    CHECK(f.dev->resets >= 1);
}

TEST_CASE("virtio queue: bad ring layout fails at DRIVER_OK") {
    Fixture f;
    StderrCapture cap;
    SUBCASE("queue size not a power of two") {
        f.drv.set_reg(VirtioMmio::kStatus, 0);
        f.drv.set_reg(VirtioMmio::kStatus, 3);
        f.drv.set_reg(VirtioMmio::kDriverFeaturesSel, 1);
        f.drv.set_reg(VirtioMmio::kDriverFeatures, 1);
        f.drv.set_reg(VirtioMmio::kStatus, 0xb);
        f.drv.set_reg(VirtioMmio::kQueueSel, 0);
        f.drv.set_reg(VirtioMmio::kQueueNum, 6);
        f.drv.set_reg(VirtioMmio::kQueueDescLow, 0x1000);
        f.drv.set_reg(VirtioMmio::kQueueDriverLow, 0x2000);
        f.drv.set_reg(VirtioMmio::kQueueDeviceLow, 0x3000);
        f.drv.set_reg(VirtioMmio::kQueueReady, 1);
        f.drv.set_reg(VirtioMmio::kStatus, 0xf);
        CHECK(cap.text().find("queue size 6") != std::string::npos);
    }
    SUBCASE("rings outside memory") {
        f.drv.set_reg(VirtioMmio::kStatus, 0);
        f.drv.set_reg(VirtioMmio::kStatus, 3);
        f.drv.set_reg(VirtioMmio::kDriverFeaturesSel, 1);
        f.drv.set_reg(VirtioMmio::kDriverFeatures, 1);
        f.drv.set_reg(VirtioMmio::kStatus, 0xb);
        f.drv.set_reg(VirtioMmio::kQueueSel, 0);
        f.drv.set_reg(VirtioMmio::kQueueNum, 8);
        f.drv.set_reg(VirtioMmio::kQueueDescLow, 0x1000);
        f.drv.set_reg(VirtioMmio::kQueueDescHigh, 0x10);
        f.drv.set_reg(VirtioMmio::kQueueDriverLow, 0x2000);
        f.drv.set_reg(VirtioMmio::kQueueDeviceLow, 0x3000);
        f.drv.set_reg(VirtioMmio::kQueueReady, 1);
        f.drv.set_reg(VirtioMmio::kStatus, 0xf);
        CHECK(cap.text().find("rings outside guest memory") != std::string::npos);
    }
    CHECK(f.needs_reset());
    CHECK(f.dev->activations == 0);
}

// ---- snapshots ------------------------------------------------------------------

namespace {

// The restored side of a snapshot: new memory holding a copy of the old one, a new
// device and transport, restored from the old transport's saved state, and the
// guest driver's bookkeeping carried over (it lives in guest memory in a real guest).
struct Restored {
    GuestMemory mem;
    CountingInterrupt irq;
    std::shared_ptr<EchoDevice> dev = std::make_shared<EchoDevice>();
    VirtioMmio mmio;
    TestVirtioDriver drv;

    Restored(const Fixture& old, const VirtioMmioState& st)
        : mem(old.mem.size()), mmio(mem, dev, irq), drv(mem, mmio, old.drv) {
        std::memcpy(mem.base(), old.mem.base(), old.mem.size());
        mmio.restore(st);
    }
    std::string read_str(uint64_t gpa, size_t n) {
        std::string s(n, '\0');
        mem.read(gpa, s.data(), n);
        return s;
    }
};

// One echo round trip on queue 0: returns what came back.  `poll` serves the
// chain with VirtioMmio::poll() (the nano wait path) instead of a QueueNotify.
std::string echo(GuestMemory& mem, TestVirtioDriver& drv, uint64_t in, uint64_t out, const std::string& msg,
                 VirtioMmio* poll = nullptr) {
    mem.write(in, msg.data(), msg.size());
    drv.add_chain(0, {{in, static_cast<uint32_t>(msg.size()), false}, {out, 64, true}});
    if (poll)
        poll->poll();
    else
        drv.notify(0);
    auto u = drv.pop_used(0);
    if (!u) return "<nothing used>";
    std::string s(u->len, '\0');
    mem.read(out, s.data(), u->len);
    return s;
}

void check_same(const VirtioMmioState& a, const VirtioMmioState& b) {
    CHECK(a.status == b.status);
    CHECK(a.interrupt_status == b.interrupt_status);
    CHECK(a.device_features_sel == b.device_features_sel);
    CHECK(a.driver_features_sel == b.driver_features_sel);
    CHECK(a.driver_features == b.driver_features);
    CHECK(a.queue_sel == b.queue_sel);
    CHECK(a.config_generation == b.config_generation);
    REQUIRE(a.queues.size() == b.queues.size());
    for (size_t i = 0; i < a.queues.size(); ++i) {
        CHECK(a.queues[i].size == b.queues[i].size);
        CHECK(a.queues[i].ready == b.queues[i].ready);
        CHECK(a.queues[i].desc_addr == b.queues[i].desc_addr);
        CHECK(a.queues[i].avail_addr == b.queues[i].avail_addr);
        CHECK(a.queues[i].used_addr == b.queues[i].used_addr);
        CHECK(a.queues[i].next_avail == b.queues[i].next_avail);
        CHECK(a.queues[i].next_used == b.queues[i].next_used);
    }
}

}  // namespace

TEST_CASE("virtio-mmio snapshot: a restored device carries on from the saved ring positions") {
    Fixture f;
    const uint64_t features = kFeatures | kVirtioFRingIndirectDesc | (1ull << 3);
    REQUIRE((f.drv.init(features, {8}) & kVirtioStatusDriverOk));
    uint64_t in = f.drv.alloc(64), out = f.drv.alloc(64);
    for (int i = 0; i < 21; ++i) REQUIRE(echo(f.mem, f.drv, in, out, "before " + std::to_string(i)) == "before " + std::to_string(i));
    // At the snapshot: one chain the driver made available but the device has not
    // seen yet (no QueueNotify: a nano guest leaves that to the next poll), and an
    // interrupt the driver has not acknowledged.
    f.mem.write(in + 32, "in flight", 9);
    f.drv.add_chain(0, {{in + 32, 9, false}, {out + 32, 32, true}});
    f.drv.set_reg(VirtioMmio::kQueueSel, 3);
    f.drv.set_reg(VirtioMmio::kDeviceFeaturesSel, 1);
    REQUIRE(f.drv.reg(VirtioMmio::kInterruptStatus) == VirtioMmio::kIntUsedBuffer);

    VirtioMmioState st = f.mmio.save();
    CHECK(st.queues.at(0).next_avail == 21);  // the ring (8 entries) wrapped twice
    CHECK(st.queues.at(0).next_used == 21);
    CHECK(st.queue_sel == 3);

    Restored r(f, st);
    CHECK(r.dev->activations == 1);  // activated by restore, not by a driver
    CHECK(r.mmio.active());
    check_same(r.mmio.save(), st);
    // The registers read back as the driver left them.
    CHECK(r.drv.reg(VirtioMmio::kStatus) == f.drv.reg(VirtioMmio::kStatus));
    CHECK(r.drv.reg(VirtioMmio::kInterruptStatus) == VirtioMmio::kIntUsedBuffer);
    CHECK(r.irq.count == 1);  // the unacknowledged interrupt is raised again
    r.drv.set_reg(VirtioMmio::kQueueSel, 0);
    CHECK(r.drv.reg(VirtioMmio::kQueueReady) == 1);
    // Layout registers of a running queue stay locked, as before the snapshot.
    r.drv.set_reg(VirtioMmio::kQueueDescLow, 0x4000);
    CHECK(r.mmio.save().queues[0].desc_addr == st.queues[0].desc_addr);

    // poll() (the nano wait path) serves the chain that was in flight, once.
    r.mmio.poll();
    auto u = r.drv.pop_used(0);
    REQUIRE(u);
    CHECK(u->len == 9);
    CHECK(r.read_str(out + 32, 9) == "in flight");
    CHECK(r.drv.used_idx(0) == 22);
    CHECK(r.irq.count == 2);
    for (int i = 0; i < 3; ++i) r.mmio.poll();
    CHECK(r.drv.used_idx(0) == 22);  // nothing delivered twice
    CHECK_FALSE(r.drv.pop_used(0));
    CHECK(r.irq.count == 2);
    CHECK(r.dev->chains == 1);

    // Traffic continues, with kicks and with polls; indirect descriptors still work.
    for (int i = 0; i < 20; ++i) {
        std::string m = "after " + std::to_string(i);
        CHECK(echo(r.mem, r.drv, in, out, m, i % 2 ? &r.mmio : nullptr) == m);
    }
    CHECK(r.drv.used_idx(0) == 42);
    CHECK(r.mmio.save().queues[0].next_avail == 42);
    CHECK_FALSE(r.mmio.needs_reset());
    CHECK(r.dev->activations == 1);
    // The old machine is untouched by what the restored one did.
    CHECK(f.drv.used_idx(0) == 21);
}

TEST_CASE("virtio-mmio snapshot: the transport's fields round trip through save_to and restore_from") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures | (1ull << 3), {8}) & kVirtioStatusDriverOk));
    uint64_t in = f.drv.alloc(64), out = f.drv.alloc(64);
    for (int i = 0; i < 5; ++i) REQUIRE(echo(f.mem, f.drv, in, out, "m") == "m");
    f.drv.set_reg(VirtioMmio::kQueueSel, 3);
    f.drv.set_reg(VirtioMmio::kDriverFeaturesSel, 1);
    TlvWriter w;
    f.mmio.save_to(w);
    const std::vector<uint8_t> saved = w.take();

    GuestMemory mem(f.mem.size());
    std::memcpy(mem.base(), f.mem.base(), f.mem.size());
    CountingInterrupt irq;
    auto dev = std::make_shared<EchoDevice>();
    VirtioMmio mmio(mem, dev, irq, "virtio-mmio@0xd0000000");
    CHECK(mmio.persist_id() == "virtio-mmio@0xd0000000");
    TlvReader r(saved, "/x/vmstate: device virtio-mmio@0xd0000000");
    mmio.restore_from(r);
    check_same(mmio.save(), f.mmio.save());
    CHECK(dev->activations == 1);
    TlvWriter again;
    mmio.save_to(again);
    CHECK(again.data() == saved);

    // Every truncation is refused with the origin named, and leaves the transport reset.
    for (size_t n = 0; n < saved.size(); ++n) {
        CAPTURE(n);
        auto dev2 = std::make_shared<EchoDevice>();
        VirtioMmio m2(mem, dev2, irq);
        TlvReader t(std::span(saved.data(), n), "/x/vmstate: device virtio-mmio@0xd0000000");
        try {
            m2.restore_from(t);
            FAIL("accepted");
        } catch (const DataError& e) {
            CHECK(std::string(e.what()).rfind("/x/vmstate: device virtio-mmio@0xd0000000: ", 0) == 0);
        }
        CHECK(m2.save().status == 0);
    }
}

TEST_CASE("virtio-mmio snapshot: 16-bit ring indices wrap across a restore") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t buf = f.drv.alloc(64);
    // 65532 chains, served four at a time by poll().
    for (int i = 0; i < 65532 / 4; ++i) {
        for (int k = 0; k < 4; ++k) f.drv.add_chain(0, {{buf, 4, false}, {buf + 16, 4, true}});
        f.mmio.poll();
        for (int k = 0; k < 4; ++k) REQUIRE(f.drv.pop_used(0));
    }
    VirtioMmioState st = f.mmio.save();
    REQUIRE(st.queues[0].next_avail == 65532);
    Restored r(f, st);
    uint64_t in = buf, out = buf + 32;
    for (int i = 0; i < 10; ++i) CHECK(echo(r.mem, r.drv, in, out, "w" + std::to_string(i)) == "w" + std::to_string(i));
    CHECK(r.drv.used_idx(0) == 6);  // 65532 + 10, modulo 2^16
    CHECK(r.mmio.save().queues[0].next_used == 6);
    CHECK_FALSE(r.mmio.needs_reset());
}

TEST_CASE("virtio-mmio snapshot: a driver caught mid-initialisation finishes it after restore") {
    Fixture f;
    f.drv.set_reg(VirtioMmio::kStatus, 0);
    f.drv.set_reg(VirtioMmio::kStatus, kVirtioStatusAcknowledge | kVirtioStatusDriver);
    f.drv.set_reg(VirtioMmio::kDriverFeaturesSel, 1);
    f.drv.set_reg(VirtioMmio::kDriverFeatures, 1);  // VERSION_1, FEATURES_OK not yet set
    VirtioMmioState st = f.mmio.save();
    Restored r(f, st);
    CHECK(r.dev->activations == 0);
    CHECK_FALSE(r.mmio.active());
    CHECK(r.drv.reg(VirtioMmio::kStatus) == (kVirtioStatusAcknowledge | kVirtioStatusDriver));
    CHECK(r.mmio.save().driver_features == kVirtioFVersion1);
    CHECK(r.irq.count == 0);
    // The driver's next step (§3.1.1) is accepted against the restored features...
    r.drv.set_reg(VirtioMmio::kStatus, kVirtioStatusAcknowledge | kVirtioStatusDriver | kVirtioStatusFeaturesOk);
    CHECK((r.drv.reg(VirtioMmio::kStatus) & kVirtioStatusFeaturesOk));
    // ...and a complete initialisation brings the device up.
    REQUIRE((r.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t in = r.drv.alloc(64), out = r.drv.alloc(64);
    CHECK(echo(r.mem, r.drv, in, out, "fresh") == "fresh");
}

TEST_CASE("virtio-mmio snapshot: a device that needed a reset still needs one") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    {
        StderrCapture cap;
        f.drv.set_avail_idx(0, 9);  // hostile: jumps past the queue size
        f.drv.notify(0);
    }
    REQUIRE(f.needs_reset());
    VirtioMmioState st = f.mmio.save();
    Restored r(f, st);
    CHECK((r.drv.reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
    CHECK_FALSE(r.mmio.active());
    CHECK(r.dev->activations == 0);
    r.mmio.poll();
    r.drv.notify(0);
    CHECK(r.dev->notifies == 0);
    CHECK(r.drv.used_idx(0) == 0);
    // The driver resets and starts over.
    REQUIRE((r.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    uint64_t in = r.drv.alloc(64), out = r.drv.alloc(64);
    CHECK(echo(r.mem, r.drv, in, out, "again") == "again");
}

TEST_CASE("virtio-mmio snapshot: restore rejects state that cannot belong to the device") {
    Fixture f;
    REQUIRE((f.drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
    VirtioMmioState st = f.mmio.save();
    std::string expect;
    SUBCASE("wrong number of queues") {
        st.queues.push_back(st.queues[0]);
        expect = "virtio-echo state: 2 queues saved, the device has 1";
    }
    SUBCASE("features the device does not offer") {
        st.driver_features |= 1ull << 7;
        expect = "virtio-echo state: negotiated features 0x100000080 include some this device does not offer (0x110000008)";
    }
    SUBCASE("no VERSION_1") {
        st.driver_features = 0;
        expect = "virtio-echo state: negotiated features lack VIRTIO_F_VERSION_1";
    }
    SUBCASE("DRIVER_OK without FEATURES_OK") {
        st.status &= ~kVirtioStatusFeaturesOk;
        expect = "virtio-echo state: DRIVER_OK without FEATURES_OK";
    }
    SUBCASE("a running queue outside guest memory") {
        st.queues[0].used_addr = f.mem.size() - 8;
        expect = "virtio-echo state: queue 0: rings outside guest memory";
    }
    SUBCASE("a running queue with a bad size") {
        st.queues[0].size = 16;  // more than the device's 8
        expect = "virtio-echo state: queue 0: queue size 16 is not a power of two in [1, 8]";
    }
    SUBCASE("misaligned rings") {
        st.queues[0].desc_addr += 8;
        expect = "virtio-echo state: queue 0: misaligned rings";
    }
    CountingInterrupt irq;
    auto dev = std::make_shared<EchoDevice>();
    VirtioMmio mmio(f.mem, dev, irq);
    try {
        mmio.restore(st);
        FAIL("restore accepted it");
    } catch (const DataError& e) {
        CHECK(std::string(e.what()).rfind(expect, 0) == 0);
    }
    // With the origin named, as the Machine does.
    try {
        mmio.restore(st, "/x/vmstate: device virtio-mmio@0xd0000000");
        FAIL("restore accepted it");
    } catch (const DataError& e) {
        std::string tail = expect.substr(std::string("virtio-echo state").size());
        CHECK(std::string(e.what()).rfind("/x/vmstate: device virtio-mmio@0xd0000000: virtio-echo" + tail, 0) == 0);
    }
    // Nothing half-restored: the transport is at reset and a driver can start it.
    CHECK(dev->activations == 0);
    CHECK(mmio.save().status == 0);
    TestVirtioDriver drv(f.mem, mmio, 0x80000);
    CHECK((drv.init(kFeatures, {8}) & kVirtioStatusDriverOk));
}
