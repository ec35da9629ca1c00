// A 16550A UART (COM1: ports 0x3f8-0x3ff, IRQ 4) as Linux's 8250 driver and the
// nano guests' byte output expect it.  Register model from the National
// Semiconductor PC16550D data sheet: RBR/THR, IER, IIR/FCR, LCR (DLAB selects the
// divisor latch), MCR (loopback), LSR, MSR, SCR.
//
// Transmission is instantaneous: every THR write goes to the sink fd at once (no
// buffering in the VMM, so a crash loses no output), THRE and TEMT are always
// set, and the THR-empty interrupt is raised right after each write when
// IER.ETBEI is on.  Interrupts are edges on `irq` (an irqfd for linux guests),
// raised when the UART's interrupt output goes from inactive to active.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/bus.h"
#include "devices/persistent.h"

namespace kindling {

class Interrupt;

// Register state for snapshots (Firecracker's Persist idea): what the guest
// programmed plus unread input.
struct SerialState {
    uint8_t dll = 0x0c;  // divisor 12: 9600 baud
    uint8_t dlm = 0;
    uint8_t ier = 0;
    uint8_t lcr = 0x03;  // 8N1
    uint8_t mcr = 0x08;  // OUT2
    uint8_t scr = 0;
    uint8_t fcr = 0;     // only FIFO enable (bit 0) is kept
    bool thr_empty_pending = false;
    std::vector<uint8_t> rx;
};

class Serial : public BusDevice, public Persistent {
public:
    static constexpr uint64_t kCom1Base = 0x3f8;
    static constexpr uint64_t kPortCount = 8;
    static constexpr uint32_t kCom1Irq = 4;
    // Input bytes held for the guest (Firecracker's FIFO size).
    static constexpr size_t kRxCapacity = 64;

    // `out_fd` receives transmitted bytes (not owned; -1 discards them).
    // `irq` may be null for guests that poll (nano); not owned, must outlive this.
    Serial(int out_fd, Interrupt* irq);

    void read(uint64_t offset, uint8_t* data, size_t len) override;
    void write(uint64_t offset, const uint8_t* data, size_t len) override;

    // Queues bytes for the guest to read from RBR and raises the receive
    // interrupt if enabled.  Returns how many were accepted (the rest did not
    // fit; offer them again after the guest has read some).
    size_t enqueue_input(std::span<const uint8_t> bytes);
    size_t input_space() const;

    SerialState save() const;
    void restore(const SerialState& s);

    // Persistent: "serial"; one field per register, the THR-empty flag and the
    // unread input (at most kRxCapacity bytes).
    std::string persist_id() const override { return "serial"; }
    void save_to(TlvWriter& out) override;
    void restore_from(TlvReader& in) override;

private:
    uint8_t read_reg(uint64_t offset);
    void write_reg(uint64_t offset, uint8_t v);
    void transmit(uint8_t byte);
    uint8_t interrupt_id() const;  // IIR bits 0-3
    void update_interrupt();       // raise an edge on a rising interrupt output

    int out_fd_;
    Interrupt* irq_;
    mutable std::mutex mu_;
    SerialState s_;
    std::deque<uint8_t> rx_;
    bool irq_line_ = false;
    bool sink_failed_ = false;
};

}  // namespace kindling
