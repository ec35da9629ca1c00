// virtio-blk over virtio-mmio, with the test playing the guest driver.
#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/io.h"
#include "devices/virtio/test_driver.h"
#include "devices/virtio/virtio_blk.h"
#include "devices/virtio/virtio_mmio.h"
#include "kvm/guest_memory.h"
#include "base/tlv.h"
#include "snapshot/snapshot_dir.h"

#include <nlohmann/json.hpp>

using namespace kindling;

namespace {

constexpr uint32_t kIn = 0, kOut = 1, kFlush = 4, kGetId = 8, kBogus = 99;
constexpr uint8_t kOk = 0, kIoErr = 1, kUnsupp = 2;

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/kindling-blk.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

struct BlkFixture {
    TempDir dir;
    std::string disk = dir.path + "/disk.img";
    GuestMemory mem{1 << 20};
    CountingInterrupt irq;
    std::shared_ptr<VirtioBlk> blk;
    std::unique_ptr<VirtioMmio> mmio;
    std::unique_ptr<TestVirtioDriver> drv;
    uint64_t hdr = 0, data = 0, status = 0;

    explicit BlkFixture(bool ro = false, size_t sectors = 16, bool cow = false) {
        std::string img(sectors * 512, '\0');
        for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<char>('a' + (i / 512) % 26);
        write_file_atomic(disk, img);
        attach(ro, cow);
    }

    // Another VM's view: a second device (own memory, driver, queue) on f's disk file.
    BlkFixture(const std::string& shared_disk, bool cow) : disk(shared_disk) { attach(false, cow); }

    void attach(bool ro, bool cow) {
        blk = std::make_shared<VirtioBlk>(disk, ro, "drive-0", cow);
        mmio = std::make_unique<VirtioMmio>(mem, blk, irq);
        drv = std::make_unique<TestVirtioDriver>(mem, *mmio);
        uint64_t feats = kVirtioFVersion1 | (1ull << 9) | (ro ? 1ull << 5 : 0);
        REQUIRE((drv->init(feats, {256}) & kVirtioStatusDriverOk));
        hdr = drv->alloc(16);
        data = drv->alloc(8192, 512);
        status = drv->alloc(1);
    }

    // The same VM restored from a snapshot of `old`: memory copied, a new device on
    // the same disk, the transport (and the device inside) restored from `snap`.
    BlkFixture(const BlkFixture& old, const std::vector<uint8_t>& snap, bool ro = false)
        : disk(old.disk), mem(old.mem.size()), hdr(old.hdr), data(old.data), status(old.status) {
        std::memcpy(mem.base(), old.mem.base(), old.mem.size());
        blk = std::make_shared<VirtioBlk>(disk, ro, "drive-0");
        mmio = std::make_unique<VirtioMmio>(mem, blk, irq);
        drv = std::make_unique<TestVirtioDriver>(mem, *mmio, *old.drv);
        TlvReader r(snap, "test vmstate: device blk");
        mmio->restore_from(r);
    }
    // The transport's saved fields, the device's nested inside.
    std::vector<uint8_t> snapshot() {
        TlvWriter w;
        mmio->save_to(w);
        return w.take();
    }

    // One request: header, data (split in two descriptors), status.  Returns the
    // status byte and the used length.
    std::pair<uint8_t, uint32_t> request(uint32_t type, uint64_t sector, uint32_t len) {
        uint32_t h[4] = {type, 0, static_cast<uint32_t>(sector), static_cast<uint32_t>(sector >> 32)};
        mem.write(hdr, h, 16);
        uint8_t st = 0xee;
        mem.write_obj(status, st);
        bool dev_writes = type != kOut;
        std::vector<TestVirtioDriver::Buf> bufs{{hdr, 16, false}};
        if (len) {
            uint32_t first = len / 2;
            if (first) bufs.push_back({data, first, dev_writes});
            bufs.push_back({data + first, len - first, dev_writes});
        }
        bufs.push_back({status, 1, true});
        drv->add_chain(0, bufs);
        drv->notify(0);
        auto u = drv->pop_used(0);
        REQUIRE(u);
        mem.read_obj(status, st);
        return {st, u->len};
    }
    std::string guest_data(size_t n) {
        std::string s(n, '\0');
        mem.read(data, s.data(), n);
        return s;
    }
    uint8_t write(uint64_t sector, const std::string& bytes) {
        mem.write(data, bytes.data(), bytes.size());
        return request(kOut, sector, static_cast<uint32_t>(bytes.size())).first;
    }
    std::string read(uint64_t sector, uint32_t len) {
        REQUIRE(request(kIn, sector, len).first == kOk);
        return guest_data(len);
    }
};

}  // namespace

TEST_CASE("virtio-blk: config space and features") {
    BlkFixture f(false, 16);
    uint64_t cap = 0;
    f.mmio->read(VirtioMmio::kConfig, reinterpret_cast<uint8_t*>(&cap), 4);
    f.mmio->read(VirtioMmio::kConfig + 4, reinterpret_cast<uint8_t*>(&cap) + 4, 4);
    CHECK(cap == 16);
    CHECK(f.drv->reg(VirtioMmio::kDeviceId) == 2);
    f.drv->set_reg(VirtioMmio::kDeviceFeaturesSel, 0);
    CHECK_FALSE((f.drv->reg(VirtioMmio::kDeviceFeatures) & (1u << 5)));  // not read-only
}

TEST_CASE("virtio-blk: read, write, flush, get-id") {
    BlkFixture f;
    auto [st, len] = f.request(kIn, 2, 1024);
    CHECK(st == kOk);
    CHECK(len == 1025);
    CHECK(f.guest_data(1024) == std::string(512, 'c') + std::string(512, 'd'));
    CHECK(f.irq.count >= 1);

    std::string payload(1536, '\0');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
    f.mem.write(f.data, payload.data(), payload.size());
    std::tie(st, len) = f.request(kOut, 5, 1536);
    CHECK(st == kOk);
    CHECK(len == 1);
    std::string disk = read_file(f.disk);
    CHECK(disk.substr(5 * 512, 1536) == payload);
    CHECK(disk.substr(4 * 512, 512) == std::string(512, 'e'));  // neighbours untouched
    CHECK(disk.substr(8 * 512, 512) == std::string(512, 'i'));

    // Read it back through the device.
    std::vector<char> zero(2048, 0);
    f.mem.write(f.data, zero.data(), zero.size());
    std::tie(st, len) = f.request(kIn, 5, 1536);
    CHECK(st == kOk);
    CHECK(f.guest_data(1536) == payload);

    std::tie(st, len) = f.request(kFlush, 0, 0);
    CHECK(st == kOk);

    std::tie(st, len) = f.request(kGetId, 0, 20);
    CHECK(st == kOk);
    CHECK(len == 21);
    CHECK(f.guest_data(20) == std::string("drive-0") + std::string(13, '\0'));

    std::tie(st, len) = f.request(kBogus, 0, 0);
    CHECK(st == kUnsupp);
    CHECK_FALSE((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
}

TEST_CASE("virtio-blk: out-of-range and partial-sector requests fail with IOERR") {
    BlkFixture f(false, 16);
    CHECK(f.request(kIn, 16, 512).first == kIoErr);          // just past the end
    CHECK(f.request(kIn, 15, 1024).first == kIoErr);         // straddles the end
    CHECK(f.request(kOut, 15, 1024).first == kIoErr);
    CHECK(f.request(kIn, ~0ull, 512).first == kIoErr);       // sector overflow
    CHECK(f.request(kIn, (~0ull) / 512, 1024).first == kIoErr);
    CHECK(f.request(kIn, 0, 100).first == kIoErr);           // not whole sectors
    CHECK(f.request(kIn, 15, 512).first == kOk);             // the last sector is fine
    CHECK(f.guest_data(512) == std::string(512, 'p'));
    std::string disk = read_file(f.disk);
    CHECK(disk.size() == 16 * 512);  // nothing written past the end
    CHECK_FALSE((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
}

TEST_CASE("virtio-blk: read-only drives refuse writes") {
    BlkFixture f(true, 4);
    f.drv->set_reg(VirtioMmio::kDeviceFeaturesSel, 0);
    CHECK((f.drv->reg(VirtioMmio::kDeviceFeatures) & (1u << 5)));
    std::string before = read_file(f.disk);
    CHECK(f.request(kOut, 0, 512).first == kIoErr);
    CHECK(read_file(f.disk) == before);
    CHECK(f.request(kIn, 0, 512).first == kOk);
    CHECK(f.request(kFlush, 0, 0).first == kOk);
}

TEST_CASE("virtio-blk: a request without header or status byte fails the device") {
    BlkFixture f;
    // A chain of one writable byte: no header.
    f.drv->add_chain(0, {{f.status, 1, true}});
    f.drv->notify(0);
    CHECK((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
}

TEST_CASE("virtio-blk: a missing disk is a SysError naming the path") {
    try {
        VirtioBlk b("/nonexistent/disk.img", false);
        FAIL("no throw");
    } catch (const SysError& e) {
        CHECK(std::string(e.what()).find("/nonexistent/disk.img") != std::string::npos);
    }
}

TEST_CASE("virtio-blk snapshot: a restored drive carries on from the saved ring position") {
    BlkFixture f;
    // 300 requests through a 256-entry ring: it wraps.
    for (int i = 0; i < 300; ++i) {
        if (i % 3 == 0) {
            std::string s(512, static_cast<char>('A' + i % 26));
            f.mem.write(f.data, s.data(), s.size());
            REQUIRE(f.request(kOut, 3, 512).first == kOk);
        } else {
            REQUIRE(f.request(kIn, static_cast<uint64_t>(i % 16), 512).first == kOk);
        }
    }
    // In flight at the snapshot: a write the driver made available without a kick.
    uint64_t h2 = f.drv->alloc(16), d2 = f.drv->alloc(512, 512), s2 = f.drv->alloc(1);
    uint32_t out_hdr[4] = {kOut, 0, 7, 0};
    f.mem.write(h2, out_hdr, 16);
    std::string pending(512, 'P');
    f.mem.write(d2, pending.data(), pending.size());
    f.mem.write_obj(s2, uint8_t{0xee});
    f.drv->add_chain(0, {{h2, 16, false}, {d2, 512, false}, {s2, 1, true}});

    CHECK(f.mmio->save().queues.at(0).next_used == 300);
    std::vector<uint8_t> snap = f.snapshot();
    BlkFixture r(f, snap);
    CHECK(r.mmio->active());

    r.mmio->poll();  // the nano wait path finds the pending write
    auto u = r.drv->pop_used(0);
    REQUIRE(u);
    CHECK(u->len == 1);
    uint8_t st = 0xee;
    r.mem.read_obj(s2, st);
    CHECK(st == kOk);
    CHECK(read_file(r.disk).substr(7 * 512, 512) == pending);
    r.mmio->poll();
    CHECK_FALSE(r.drv->pop_used(0));  // served once
    CHECK(r.drv->used_idx(0) == 301);

    // Reads see what was written before the snapshot; new writes work.
    auto [st3, len3] = r.request(kIn, 3, 512);
    CHECK(st3 == kOk);
    CHECK(len3 == 513);
    CHECK(r.guest_data(512) == std::string(512, static_cast<char>('A' + 297 % 26)));
    std::string fresh(512, 'z');
    r.mem.write(r.data, fresh.data(), fresh.size());
    CHECK(r.request(kOut, 9, 512).first == kOk);
    CHECK(read_file(r.disk).substr(9 * 512, 512) == fresh);
    CHECK(r.drv->used_idx(0) == 303);
    CHECK_FALSE(r.mmio->needs_reset());
}

TEST_CASE("virtio-blk snapshot: restore refuses what does not fit the drive") {
    SUBCASE("virtio-blk keeps no state of its own, and takes none") {
        BlkFixture f;
        TlvWriter w;
        f.blk->save_to(w);
        CHECK(w.size() == 0);
        w.integer<uint32_t>(1, 5);
        TlvReader r(w.data(), "test vmstate: device blk: virtio-blk");
        CHECK_THROWS_WITH_AS(f.blk->restore_from(r),
                             "test vmstate: device blk: virtio-blk: unknown field 1 (written by a newer kindling?)",
                             DataError);
    }
    SUBCASE("a read-only drive's negotiated features on a writable drive") {
        BlkFixture f(true);
        std::vector<uint8_t> snap = f.snapshot();
        try {
            BlkFixture r(f, snap, false);
            FAIL("restored");
        } catch (const DataError& e) {
            CHECK(std::string(e.what()).find("test vmstate: device blk: virtio-blk: negotiated features") == 0);
            CHECK(std::string(e.what()).find("this device does not offer") != std::string::npos);
        }
    }
}

TEST_CASE("virtio-blk copy-on-write: the guest reads its writes, the file never changes") {
    BlkFixture f(false, 16, true);
    CHECK(f.blk->copy_on_write());
    f.drv->set_reg(VirtioMmio::kDeviceFeaturesSel, 0);
    CHECK_FALSE((f.drv->reg(VirtioMmio::kDeviceFeatures) & (1u << 5)));  // writable to the guest
    const std::string before = read_file(f.disk);

    // A write across sectors 5..7 (split over two descriptors), read back around it:
    // written sectors from the private copy, their neighbours from the file.
    std::string payload(1536, '\0');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13 + 1);
    CHECK(f.write(5, payload) == kOk);
    CHECK(f.read(4, 2560) == std::string(512, 'e') + payload + std::string(512, 'i'));
    CHECK(f.write(6, std::string(512, 'Z')) == kOk);  // rewriting a private sector
    CHECK(f.read(5, 1536) == payload.substr(0, 512) + std::string(512, 'Z') + payload.substr(1024));
    CHECK(f.request(kFlush, 0, 0).first == kOk);
    CHECK(read_file(f.disk) == before);

    // Out-of-range requests still fail before touching the mapping.
    CHECK(f.request(kOut, 15, 1024).first == kIoErr);
    CHECK(f.request(kIn, ~0ull, 512).first == kIoErr);
    CHECK(f.read(15, 512) == std::string(512, 'p'));
    CHECK_FALSE((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
}

TEST_CASE("virtio-blk copy-on-write: two VMs on one file do not see each other's writes") {
    BlkFixture a(false, 16, true);
    BlkFixture b(a.disk, true);
    CHECK(a.write(3, std::string(512, 'A')) == kOk);
    CHECK(b.write(4, std::string(512, 'B')) == kOk);
    CHECK(a.read(3, 1024) == std::string(512, 'A') + std::string(512, 'e'));
    CHECK(b.read(3, 1024) == std::string(512, 'd') + std::string(512, 'B'));
    // A shared (plain read-write) drive on the same file is what clones would get
    // without copy-on-write: it writes the file, and a copy-on-write drive opened
    // afterwards reads that.
    BlkFixture shared(a.disk, false);
    CHECK(shared.write(9, std::string(512, 'S')) == kOk);
    BlkFixture c(a.disk, true);
    CHECK(c.read(9, 512) == std::string(512, 'S'));
    CHECK(a.read(3, 512) == std::string(512, 'A'));
}

TEST_CASE("virtio-blk copy-on-write: snapshots refuse a drive the guest wrote") {
    BlkFixture f(false, 16, true);
    CHECK(f.read(0, 512) == std::string(512, 'a'));
    TlvWriter clean;
    f.blk->save_to(clean);  // only reads so far: nothing lost
    CHECK(clean.size() == 0);
    CHECK(f.write(0, std::string(512, 'w')) == kOk);
    TlvWriter w;
    CHECK_THROWS_WITH_AS(f.blk->save_to(w),
                         doctest::Contains("the guest wrote to this copy-on-write drive; a snapshot cannot hold those writes"),
                         DataError);
}

TEST_CASE("virtio-blk copy-on-write: a read-only drive stays read-only") {
    BlkFixture f(true, 4, true);
    CHECK_FALSE(f.blk->copy_on_write());
    CHECK(f.write(0, std::string(512, 'x')) == kIoErr);
}

TEST_CASE("virtio-blk copy-on-write: snapshot.json records the mode; drive paths are relative to the layer") {
    TempDir t;
    GuestMemory m(1 << 20);
    LayerConfig c;
    c.machine_kind = MachineKind::kLinux;
    c.mem_size_mib = 1;
    const std::string dir = t.path + "/snap";
    c.drives = {{"rootfs", t.path + "/root.sqfs", false, true, false}, {"overlay", dir + "/overlay.ext4", false, false, true}};
    write_full_layer(dir, c, std::vector<uint8_t>(64, 1), m);
    LayerInfo l = read_layer_info(dir);
    REQUIRE(l.config.drives.size() == 2);
    CHECK(l.config.drives[0].path_on_host == dir + "/../root.sqfs");
    CHECK(l.config.drives[0].is_read_only);
    CHECK_FALSE(l.config.drives[0].copy_on_write);
    CHECK(l.config.drives[1].path_on_host == dir + "/overlay.ext4");
    CHECK(l.config.drives[1].copy_on_write);

    const std::string text = read_file(dir + "/snapshot.json");
    CHECK(decode_layer_json("x", text).config.drives[1].path_on_host == "overlay.ext4");  // as stored
    auto j = nlohmann::json::parse(text);
    j["devices"]["drives"][1].erase("copy_on_write");  // a layer from before copy-on-write drives
    CHECK_FALSE(decode_layer_json("x", j.dump()).config.drives[1].copy_on_write);
    j["devices"]["drives"][0]["copy_on_write"] = true;
    CHECK_THROWS_WITH_AS(decode_layer_json("x", j.dump()),
                         "x: devices.drives[0].copy_on_write: a read-only drive cannot also be copy-on-write", DataError);
    j["devices"]["drives"][0]["copy_on_write"] = false;
    j["devices"]["drives"][0]["path_on_host"] = "";
    CHECK_THROWS_WITH_AS(decode_layer_json("x", j.dump()), "x: devices.drives[0].path_on_host: empty", DataError);
}
