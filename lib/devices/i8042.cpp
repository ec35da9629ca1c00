#include "devices/i8042.h"

#include <algorithm>
#include <cstring>

#include "devices/interrupt.h"

namespace kindling {

namespace {

// Status register (port 0x64 read).
constexpr uint8_t kStOutFull = 0x01;
constexpr uint8_t kStSys = 0x04;      // passed POST
constexpr uint8_t kStCmd = 0x08;      // last write went to the command port
constexpr uint8_t kStKbdOn = 0x10;    // keyboard not inhibited

// Controller command byte.
constexpr uint8_t kCbKbdInt = 0x01;
constexpr uint8_t kCbSys = 0x04;
constexpr uint8_t kCbKbdDisable = 0x10;

// Controller commands (port 0x64 write).
constexpr uint8_t kCmdReadCtr = 0x20;
constexpr uint8_t kCmdWriteCtr = 0x60;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdKbdTest = 0xab;
constexpr uint8_t kCmdKbdDisable = 0xad;
constexpr uint8_t kCmdKbdEnable = 0xae;
constexpr uint8_t kCmdReadOutp = 0xd0;
constexpr uint8_t kCmdWriteOutp = 0xd1;
constexpr uint8_t kCmdWriteKbdOut = 0xd2;

constexpr uint8_t kKbdAck = 0xfa;
constexpr uint8_t kKbdReset = 0xff;
constexpr uint8_t kKbdBatOk = 0xaa;

// Forwards one port to the controller at a fixed offset, so 0x60 and 0x64 can be
// registered without claiming 0x61-0x63.
class PortAlias : public BusDevice {
public:
    PortAlias(std::shared_ptr<BusDevice> dev, uint64_t offset) : dev_(std::move(dev)), offset_(offset) {}
    void read(uint64_t off, uint8_t* d, size_t n) override { dev_->read(offset_ + off, d, n); }
    void write(uint64_t off, const uint8_t* d, size_t n) override { dev_->write(offset_ + off, d, n); }

private:
    std::shared_ptr<BusDevice> dev_;
    uint64_t offset_;
};

}  // namespace

I8042::I8042(std::function<void()> on_reset, Interrupt* kbd_irq)
    : on_reset_(std::move(on_reset)), kbd_irq_(kbd_irq) {
    s_.status = kStSys | kStKbdOn;
    s_.control = kCbKbdInt | kCbSys;
    s_.outp = 0x01;  // bit 0 is the (active-low) reset line: not in reset
}

void I8042::attach(Bus& pio, std::shared_ptr<I8042> dev) {
    pio.add(kDataPort, 1, dev);
    pio.add(kCommandPort, 1, std::make_shared<PortAlias>(dev, kCommandPort - kDataPort));
}

void I8042::read(uint64_t offset, uint8_t* data, size_t len) {
    if (len == 0) return;
    std::memset(data, 0xff, len);
    bool raise = false;
    {
        std::lock_guard lk(mu_);
        if (offset == 0) {
            if (out_.empty()) {
                data[0] = 0;
            } else {
                data[0] = out_.front();
                out_.pop_front();
                raise = !out_.empty() && (s_.control & kCbKbdInt);
            }
            update_status();
        } else if (offset == kCommandPort - kDataPort) {
            data[0] = s_.status;
        }
    }
    if (raise && kbd_irq_) kbd_irq_->trigger();
}

void I8042::write(uint64_t offset, const uint8_t* data, size_t len) {
    if (len == 0) return;
    bool reset = false;
    bool raise = false;
    {
        std::lock_guard lk(mu_);
        const bool was_full = !out_.empty();
        if (offset == kCommandPort - kDataPort) {
            s_.status |= kStCmd;
            const uint8_t cmd = data[0];
            // 0xF0-0xFF pulse output-port lines whose bit is clear; line 0 is reset.
            if ((cmd & 0xf0) == 0xf0 && !(cmd & 0x01)) reset = true;
            else controller_command(cmd);
        } else if (offset == 0) {
            s_.status &= static_cast<uint8_t>(~kStCmd);
            if (s_.pending_cmd == kCmdWriteOutp && !(data[0] & 0x01)) reset = true;
            data_write(data[0]);
        }
        raise = !was_full && !out_.empty() && (s_.control & kCbKbdInt);
    }
    if (raise && kbd_irq_) kbd_irq_->trigger();
    if (reset && on_reset_) on_reset_();
}

void I8042::controller_command(uint8_t cmd) {
    s_.pending_cmd = 0;
    switch (cmd) {
    case kCmdReadCtr: push(s_.control); break;
    case kCmdWriteCtr:
    case kCmdWriteOutp:
    case kCmdWriteKbdOut: s_.pending_cmd = cmd; break;
    case kCmdSelfTest: push(0x55); break;
    case kCmdKbdTest: push(0x00); break;
    case kCmdKbdDisable: s_.control |= kCbKbdDisable; break;
    case kCmdKbdEnable: s_.control &= static_cast<uint8_t>(~kCbKbdDisable); break;
    case kCmdReadOutp: push(s_.outp); break;
    default: break;  // aux port and the rest: accepted and ignored
    }
}

void I8042::data_write(uint8_t v) {
    const uint8_t cmd = s_.pending_cmd;
    s_.pending_cmd = 0;
    switch (cmd) {
    case kCmdWriteCtr: s_.control = v; break;
    case kCmdWriteOutp: s_.outp = v; break;
    case kCmdWriteKbdOut: push(v); break;
    default:
        // A command for the keyboard itself: acknowledge; a reset also reports
        // a passed self-test.
        push(kKbdAck);
        if (v == kKbdReset) push(kKbdBatOk);
        break;
    }
}

void I8042::push(uint8_t b) {
    if (out_.size() < kBufferSize) out_.push_back(b);
    update_status();
}

void I8042::update_status() {
    if (out_.empty()) s_.status &= static_cast<uint8_t>(~kStOutFull);
    else s_.status |= kStOutFull;
}

bool I8042::trigger_ctrl_alt_del() {
    // Set-2 make codes: Ctrl 0x14, Alt 0x11, Del 0xe0 0x71.
    static constexpr uint8_t kKeys[] = {0x14, 0x11, 0xe0, 0x71};
    {
        std::lock_guard lk(mu_);
        if (kBufferSize - out_.size() < sizeof kKeys) return false;
        for (uint8_t b : kKeys) push(b);
    }
    if (kbd_irq_) kbd_irq_->trigger();
    return true;
}

I8042State I8042::save() const {
    std::lock_guard lk(mu_);
    I8042State s = s_;
    s.out.assign(out_.begin(), out_.end());
    return s;
}

void I8042::restore(const I8042State& s) {
    std::lock_guard lk(mu_);
    s_ = s;
    out_.assign(s.out.begin(), s.out.begin() + static_cast<std::ptrdiff_t>(std::min(s.out.size(), kBufferSize)));
    s_.out.clear();
    update_status();
}

namespace {

enum I8042Field : uint16_t {
    kFieldStatus = 1,
    kFieldControl = 2,
    kFieldOutputPort = 3,
    kFieldPendingCommand = 4,
    kFieldOut = 5,
};

}  // namespace

void I8042::save_to(TlvWriter& out) {
    const I8042State s = save();
    out.integer(kFieldStatus, s.status);
    out.integer(kFieldControl, s.control);
    out.integer(kFieldOutputPort, s.outp);
    out.integer(kFieldPendingCommand, s.pending_cmd);
    out.bytes(kFieldOut, s.out);
}

void I8042::restore_from(TlvReader& in) {
    TlvFields f(in);
    I8042State s;
    s.status = f.integer<uint8_t>(kFieldStatus, "status");
    s.control = f.integer<uint8_t>(kFieldControl, "control");
    s.outp = f.integer<uint8_t>(kFieldOutputPort, "output port");
    s.pending_cmd = f.integer<uint8_t>(kFieldPendingCommand, "pending command");
    auto buf = f.bytes(kFieldOut, "output buffer");
    if (buf.size() > kBufferSize)
        f.fail("output buffer of " + std::to_string(buf.size()) + " bytes exceeds " + std::to_string(kBufferSize));
    s.out.assign(buf.begin(), buf.end());
    f.finish();
    restore(s);
}

}  // namespace kindling
