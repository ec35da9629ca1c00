// vmm/device_manager: the device layout, and snapshot save/restore walking every
// device with the sections matched one to one.  Needs /dev/kvm (irqfds).
#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/event_loop.h"
#include "base/io.h"
#include "kvm/guest_memory.h"
#include "kvm/kvm.h"
#include "snapshot/vmstate.h"
#include "vmm/device_manager.h"

using namespace kindling;

namespace {

bool have_kvm() {
    const char* dev = std::getenv("KINDLING_KVM_DEV");
    return ::access(dev && *dev ? dev : "/dev/kvm", R_OK | W_OK) == 0;
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kn-devmgr-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A linux machine's devices: serial, i8042, vsock and one drive.
struct Machine {
    Vm vm;
    GuestMemory mem{4 << 20};
    EventLoop loop;
    std::unique_ptr<DeviceManager> devices;

    Machine(const Kvm& kvm, const TempDir& dir, const std::string& sock, bool nano = false) : vm(kvm) {
        vm.set_memory(mem);
        if (!nano) vm.create_irqchip_and_pit();
        VmConfig c;
        c.vsock = VsockConfig{3, dir.path + "/" + sock};
        if (!nano) c.drives.push_back({"rootfs", dir.path + "/disk", true, false});
        DeviceManager::Options o;
        o.nano = nano;
        o.console_fd = -1;
        o.on_guest_reset = [] {};
        devices = std::make_unique<DeviceManager>(vm, mem, loop, c, o);
    }
    ~Machine() { devices.reset(); }  // before the loop
};

// What every test here needs: KVM, a directory for the sockets, a disk image.
struct Host {
    TempDir dir;
    Kvm kvm;
    Host() { write_file_atomic(dir.path + "/disk", std::string(8192, 'd')); }
};

std::vector<std::string> ids(const std::vector<DeviceSection>& s) {
    std::vector<std::string> out;
    for (const auto& d : s) out.push_back(d.id);
    return out;
}

std::string restore_error(DeviceManager& dm, const std::vector<DeviceSection>& s) {
    try {
        dm.restore(s, "/x/vmstate");
    } catch (const DataError& e) {
        return e.what();
    }
    return "<accepted>";
}

}  // namespace

TEST_CASE("device manager: the layout, and every device's state through save and restore") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Host h;
    Machine a(h.kvm, h.dir, "a.sock");
    auto slots = a.devices->virtio_slots();
    REQUIRE(slots.size() == 2);
    CHECK(slots[0].base == 0xd0000000);
    CHECK(slots[0].irq == 5);
    CHECK(slots[0].device_id == 19);  // vsock first
    CHECK(slots[1].base == 0xd0001000);
    CHECK(slots[1].irq == 6);
    CHECK(slots[1].device_id == 2);
    CHECK(a.devices->i8042() != nullptr);

    const std::vector<DeviceSection> saved = a.devices->save();
    CHECK(ids(saved) == std::vector<std::string>{"virtio-mmio@0xd0000000", "virtio-mmio@0xd0001000", "serial", "i8042"});

    // Through the vmstate codec and into a fresh machine: the same state comes back.
    MachineState ms;
    ms.mem_size = 4 << 20;
    ms.vcpus.resize(1);
    ms.vcpus[0].xsave.resize(4096);
    ms.devices = saved;
    MachineState back = decode_vmstate(encode_vmstate(ms), "/x/vmstate");
    Machine b(h.kvm, h.dir, "b.sock");
    CHECK(restore_error(*b.devices, back.devices) == "<accepted>");
    const std::vector<DeviceSection> again = b.devices->save();
    REQUIRE(again.size() == saved.size());
    for (size_t i = 0; i < saved.size(); ++i) {
        CAPTURE(saved[i].id);
        CHECK(again[i].state == saved[i].state);
    }
}

TEST_CASE("device manager: a section no device claims and a device without a section are errors") {
    if (!have_kvm()) {
        MESSAGE("skipped: /dev/kvm is not available");
        return;
    }
    Host h;
    Machine a(h.kvm, h.dir, "a.sock");
    const std::vector<DeviceSection> saved = a.devices->save();

    SUBCASE("unclaimed") {
        Machine b(h.kvm, h.dir, "b.sock");
        std::vector<DeviceSection> s = saved;
        s.push_back({"virtio-mmio@0xd0002000", {}});
        CHECK(restore_error(*b.devices, s) ==
              "/x/vmstate: state for device virtio-mmio@0xd0002000, which this machine does not have");
    }
    SUBCASE("missing, legacy device") {
        Machine b(h.kvm, h.dir, "b.sock");
        std::vector<DeviceSection> s(saved.begin(), saved.end() - 1);
        CHECK(restore_error(*b.devices, s) == "/x/vmstate: no state for device i8042");
    }
    SUBCASE("missing, virtio device") {
        Machine b(h.kvm, h.dir, "b.sock");
        std::vector<DeviceSection> s(saved.begin() + 1, saved.end());
        CHECK(restore_error(*b.devices, s) == "/x/vmstate: no state for device virtio-mmio@0xd0000000");
    }
    SUBCASE("a linux machine's state into a nano machine's devices") {
        Machine n(h.kvm, h.dir, "n.sock", true);
        CHECK(restore_error(*n.devices, saved) ==
              "/x/vmstate: state for device virtio-mmio@0xd0001000, which this machine does not have");
    }
    SUBCASE("a device's own complaint names the file and the device") {
        Machine b(h.kvm, h.dir, "b.sock");
        std::vector<DeviceSection> s = saved;
        s[2].state.clear();
        CHECK(restore_error(*b.devices, s) == "/x/vmstate: device serial: missing field dll");
    }
}
