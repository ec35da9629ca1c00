#include "devices/serial.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "base/log.h"
#include "devices/interrupt.h"

namespace kindling {

namespace {

// Register offsets (PC16550D, table II).
constexpr uint64_t kData = 0;  // RBR (read) / THR (write); DLL with DLAB
constexpr uint64_t kIer = 1;   // DLM with DLAB
constexpr uint64_t kIir = 2;   // FCR on write
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRda = 0x01;   // ERBFI: received data available
constexpr uint8_t kIerThre = 0x02;  // ETBEI: transmitter holding register empty
constexpr uint8_t kIerMask = 0x0f;

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirRda = 0x04;
constexpr uint8_t kIirFifo = 0xc0;  // FIFOs enabled (16550A)

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDr = 0x01;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

}  // namespace

Serial::Serial(int out_fd, Interrupt* irq) : out_fd_(out_fd), irq_(irq) {}

void Serial::read(uint64_t offset, uint8_t* data, size_t len) {
    if (len == 0) return;
    std::lock_guard lk(mu_);
    // A wider access reads the one register it starts at; the rest float high.
    std::memset(data, 0xff, len);
    data[0] = offset < kPortCount ? read_reg(offset) : 0xff;
}

void Serial::write(uint64_t offset, const uint8_t* data, size_t len) {
    if (len == 0 || offset >= kPortCount) return;
    std::lock_guard lk(mu_);
    write_reg(offset, data[0]);
}

uint8_t Serial::read_reg(uint64_t offset) {
    const bool dlab = s_.lcr & kLcrDlab;
    switch (offset) {
    case kData: {
        if (dlab) return s_.dll;
        if (rx_.empty()) return 0;
        uint8_t b = rx_.front();
        rx_.pop_front();
        update_interrupt();
        return b;
    }
    case kIer:
        return dlab ? s_.dlm : s_.ier;
    case kIir: {
        uint8_t id = interrupt_id();
        // Reading IIR while it reports THRE clears that source (PC16550D table IV).
        if (id == kIirThre) {
            s_.thr_empty_pending = false;
            update_interrupt();
        }
        return id | ((s_.fcr & kFcrEnable) ? kIirFifo : 0);
    }
    case kLcr:
        return s_.lcr;
    case kMcr:
        return s_.mcr;
    case kLsr:
        return kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr);
    case kMsr:
        if (s_.mcr & kMcrLoop) {
            // Loopback: the modem outputs feed the modem inputs.
            uint8_t m = 0;
            if (s_.mcr & kMcrRts) m |= kMsrCts;
            if (s_.mcr & kMcrDtr) m |= kMsrDsr;
            if (s_.mcr & kMcrOut1) m |= kMsrRi;
            if (s_.mcr & kMcrOut2) m |= kMsrDcd;
            return m;
        }
        // The host end is always there and ready.
        return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
        return s_.scr;
    }
    return 0xff;
}

void Serial::write_reg(uint64_t offset, uint8_t v) {
    const bool dlab = s_.lcr & kLcrDlab;
    switch (offset) {
    case kData:
        if (dlab) {
            s_.dll = v;
            return;
        }
        // Writing THR clears a pending THRE interrupt; the byte leaves at once
        // and THR is empty again, which raises it anew.
        s_.thr_empty_pending = false;
        update_interrupt();
        transmit(v);
        s_.thr_empty_pending = true;
        update_interrupt();
        return;
    case kIer:
        if (dlab) {
            s_.dlm = v;
            return;
        }
        // Enabling ETBEI while THR is empty raises THRE at once, as the 16550
        // does; Linux's 8250 driver relies on it to start transmitting.
        if ((v & kIerThre) && !(s_.ier & kIerThre)) s_.thr_empty_pending = true;
        s_.ier = v & kIerMask;
        update_interrupt();
        return;
    case kIir:  // FCR
        s_.fcr = v & kFcrEnable;
        if (v & kFcrClearRx) rx_.clear();
        update_interrupt();
        return;
    case kLcr:
        s_.lcr = v;
        return;
    case kMcr:
        s_.mcr = v & kMcrMask;
        return;
    case kScr:
        s_.scr = v;
        return;
    default:  // LSR and MSR are read-only (factory test writes are ignored)
        return;
    }
}

void Serial::transmit(uint8_t byte) {
    if (s_.mcr & kMcrLoop) {
        if (rx_.size() < kRxCapacity) rx_.push_back(byte);
        return;
    }
    if (out_fd_ < 0) return;
    for (;;) {
        ssize_t n = ::write(out_fd_, &byte, 1);
        if (n == 1) return;
        if (n < 0 && errno == EINTR) continue;
        // A console that went away must not stop the guest: drop the byte.
        if (!sink_failed_) {
            sink_failed_ = true;
            log_warn("serial console output lost: %s", n < 0 ? std::strerror(errno) : "short write");
        }
        return;
    }
}

uint8_t Serial::interrupt_id() const {
    if ((s_.ier & kIerRda) && !rx_.empty()) return kIirRda;
    if ((s_.ier & kIerThre) && s_.thr_empty_pending) return kIirThre;
    return kIirNone;
}

void Serial::update_interrupt() {
    bool line = interrupt_id() != kIirNone;
    if (line && !irq_line_ && irq_) irq_->trigger();
    irq_line_ = line;
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lk(mu_);
    size_t n = std::min(bytes.size(), kRxCapacity - std::min(kRxCapacity, rx_.size()));
    rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    update_interrupt();
    return n;
}

size_t Serial::input_space() const {
    std::lock_guard lk(mu_);
    return kRxCapacity - std::min(kRxCapacity, rx_.size());
}

SerialState Serial::save() const {
    std::lock_guard lk(mu_);
    SerialState s = s_;
    s.rx.assign(rx_.begin(), rx_.end());
    return s;
}

void Serial::restore(const SerialState& s) {
    std::lock_guard lk(mu_);
    s_ = s;
    s_.ier &= kIerMask;
    s_.mcr &= kMcrMask;
    s_.fcr &= kFcrEnable;
    size_t n = std::min(s.rx.size(), kRxCapacity);
    rx_.assign(s.rx.begin(), s.rx.begin() + static_cast<std::ptrdiff_t>(n));
    s_.rx.clear();
    // A restored VM has an interrupt pending if it had one when saved; the guest
    // already saw that edge (the irqchip state is restored separately).
    irq_line_ = interrupt_id() != kIirNone;
}

namespace {

enum SerialField : uint16_t {
    kFieldDll = 1,
    kFieldDlm = 2,
    kFieldIer = 3,
    kFieldLcr = 4,
    kFieldMcr = 5,
    kFieldScr = 6,
    kFieldFcr = 7,
    kFieldThrEmptyPending = 8,
    kFieldRx = 9,
};

}  // namespace

void Serial::save_to(TlvWriter& out) {
    const SerialState s = save();
    out.integer(kFieldDll, s.dll);
    out.integer(kFieldDlm, s.dlm);
    out.integer(kFieldIer, s.ier);
    out.integer(kFieldLcr, s.lcr);
    out.integer(kFieldMcr, s.mcr);
    out.integer(kFieldScr, s.scr);
    out.integer(kFieldFcr, s.fcr);
    out.boolean(kFieldThrEmptyPending, s.thr_empty_pending);
    out.bytes(kFieldRx, s.rx);
}

void Serial::restore_from(TlvReader& in) {
    TlvFields f(in);
    SerialState s;
    s.dll = f.integer<uint8_t>(kFieldDll, "dll");
    s.dlm = f.integer<uint8_t>(kFieldDlm, "dlm");
    s.ier = f.integer<uint8_t>(kFieldIer, "ier");
    s.lcr = f.integer<uint8_t>(kFieldLcr, "lcr");
    s.mcr = f.integer<uint8_t>(kFieldMcr, "mcr");
    s.scr = f.integer<uint8_t>(kFieldScr, "scr");
    s.fcr = f.integer<uint8_t>(kFieldFcr, "fcr");
    s.thr_empty_pending = f.boolean(kFieldThrEmptyPending, "thr_empty_pending");
    auto rx = f.bytes(kFieldRx, "rx");
    if (rx.size() > kRxCapacity)
        f.fail("receive buffer of " + std::to_string(rx.size()) + " bytes exceeds the FIFO (" +
               std::to_string(kRxCapacity) + ")");
    s.rx.assign(rx.begin(), rx.end());
    f.finish();
    restore(s);
}

}  // namespace kindling
