// The part of the i8042 keyboard controller a microVM needs (as Firecracker has
// it): status and data reads so drivers probing it see a sane controller, the
// controller command byte and output port, keyboard-command ACKs, the reset line
// (command 0xFE on port 0x64: the guest asks to reboot; the VMM ends the VM
// cleanly) and Ctrl+Alt+Del injection for SendCtrlAltDel.
//
// Ports: 0x60 (data) and 0x64 (status on read, command on write).  Attach with
// I8042::attach(), which registers only those two bytes and leaves 0x61-0x63 to
// other devices.  Keyboard interrupt: IRQ 1.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "devices/persistent.h"

namespace kindling {

class Interrupt;

struct I8042State {
    uint8_t status = 0;
    uint8_t control = 0;
    uint8_t outp = 0;
    uint8_t pending_cmd = 0;  // controller command waiting for its data byte
    std::vector<uint8_t> out;  // bytes queued for the guest on port 0x60
};

class I8042 : public BusDevice, public Persistent {
public:
    static constexpr uint64_t kDataPort = 0x60;
    static constexpr uint64_t kCommandPort = 0x64;
    static constexpr uint32_t kKeyboardIrq = 1;
    static constexpr size_t kBufferSize = 16;

    // `on_reset` runs on the vCPU thread that wrote the reset command; it should
    // stop the VM (it must not throw).  `kbd_irq` may be null; not owned.
    I8042(std::function<void()> on_reset, Interrupt* kbd_irq);

    // Registers port 0x60 and 0x64 (one byte each) on the port-I/O bus.
    static void attach(Bus& pio, std::shared_ptr<I8042> dev);

    // BusDevice, with offsets relative to 0x60: 0 = data port, 4 = status/command.
    void read(uint64_t offset, uint8_t* data, size_t len) override;
    void write(uint64_t offset, const uint8_t* data, size_t len) override;

    // Queues the set-2 scan codes of Ctrl, Alt, Del and raises IRQ 1 (Firecracker's
    // trigger_ctrl_alt_del).  False when the buffer has no room.
    bool trigger_ctrl_alt_del();

    I8042State save() const;
    void restore(const I8042State& s);

    // Persistent: "i8042"; one field per register and the queued output bytes (at
    // most kBufferSize).
    std::string persist_id() const override { return "i8042"; }
    void save_to(TlvWriter& out) override;
    void restore_from(TlvReader& in) override;

private:
    void push(uint8_t b);
    void controller_command(uint8_t cmd);
    void data_write(uint8_t v);
    void update_status();

    std::function<void()> on_reset_;
    Interrupt* kbd_irq_;
    mutable std::mutex mu_;
    I8042State s_;
    std::deque<uint8_t> out_;
};

}  // namespace kindling
