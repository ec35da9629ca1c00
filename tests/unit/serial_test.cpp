// devices/serial (16550A) and, with it, the other legacy PC device devices/i8042.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/tlv.h"
#include "devices/bus.h"
#include "devices/i8042.h"
#include "devices/interrupt.h"
#include "devices/serial.h"

using namespace kindling;

namespace {

struct CountingInterrupt : Interrupt {
    std::atomic<int> n{0};
    void trigger() override { ++n; }
};

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        r = fds[0];
        w = fds[1];
    }
    ~Pipe() {
        ::close(r);
        if (w >= 0) ::close(w);
    }
    std::string drain() const {
        std::string s;
        char buf[256];
        ssize_t n;
        while ((n = ::read(r, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
        return s;
    }
};

// Register offsets from COM1's base.
enum : uint64_t { THR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

uint8_t rd(BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, &v, 1);
    return v;
}
void wr(BusDevice& d, uint64_t off, uint8_t v) { d.write(off, &v, 1); }

}  // namespace

TEST_CASE("serial: THR bytes reach the sink at once; LSR always reports THR empty") {
    Pipe p;
    Serial s(p.w, nullptr);
    CHECK(rd(s, LSR) == 0x60);
    for (char c : std::string("Linux version 6.1\n")) wr(s, THR, static_cast<uint8_t>(c));
    CHECK(p.drain() == "Linux version 6.1\n");
    CHECK(rd(s, LSR) == 0x60);
    CHECK(rd(s, IIR) == 0x01);  // no interrupt pending, FIFOs off
    CHECK(rd(s, LCR) == 0x03);
    CHECK(rd(s, MSR) == 0xb0);  // DCD | DSR | CTS
}

TEST_CASE("serial: through the bus at 0x3f8, and -1 discards output") {
    Pipe p;
    Bus bus;
    bus.add(Serial::kCom1Base, Serial::kPortCount, std::make_shared<Serial>(p.w, nullptr));
    uint8_t c = 'k';
    CHECK(bus.write(0x3f8, &c, 1));
    uint8_t lsr = 0;
    CHECK(bus.read(0x3fd, &lsr, 1));
    CHECK(lsr == 0x60);
    CHECK(p.drain() == "k");
    Serial quiet(-1, nullptr);
    wr(quiet, THR, 'x');
    CHECK(rd(quiet, LSR) == 0x60);
}

TEST_CASE("serial: DLAB selects the divisor latch; nothing is transmitted") {
    Pipe p;
    Serial s(p.w, nullptr);
    wr(s, LCR, 0x83);
    wr(s, 0, 0x01);  // DLL: 115200 baud
    wr(s, 1, 0x00);  // DLM
    CHECK(rd(s, 0) == 0x01);
    CHECK(rd(s, 1) == 0x00);
    wr(s, LCR, 0x03);
    CHECK(rd(s, IER) == 0x00);
    CHECK(p.drain().empty());
    wr(s, IER, 0xff);
    CHECK(rd(s, IER) == 0x0f);  // only the four defined bits stick
    wr(s, SCR, 0xa5);
    CHECK(rd(s, SCR) == 0xa5);
}

TEST_CASE("serial: THR-empty interrupt as Linux's 8250 driver uses it") {
    Pipe p;
    CountingInterrupt irq;
    Serial s(p.w, &irq);
    wr(s, FCR, 0x07);            // enable and clear FIFOs
    CHECK(rd(s, IIR) == 0xc1);   // 16550A: FIFO bits set, no interrupt
    wr(s, THR, 'a');
    CHECK(irq.n == 0);           // ETBEI off: no interrupt

    wr(s, IER, 0x02);            // enabling ETBEI with THR empty raises it at once
    CHECK(irq.n == 1);
    CHECK(rd(s, IIR) == 0xc2);   // THRE; reading IIR clears it
    CHECK(rd(s, IIR) == 0xc1);

    wr(s, THR, 'b');             // each transmitted byte empties THR again
    CHECK(irq.n == 2);
    wr(s, THR, 'c');
    CHECK(irq.n == 3);
    CHECK(rd(s, IIR) == 0xc2);

    wr(s, IER, 0x00);
    wr(s, THR, 'd');
    CHECK(irq.n == 3);
    CHECK(rd(s, IIR) == 0xc1);
    CHECK(p.drain() == "abcd");
}

TEST_CASE("serial: input raises the receive interrupt and drains through RBR") {
    Pipe p;
    CountingInterrupt irq;
    Serial s(p.w, &irq);
    const uint8_t in[] = {'h', 'i'};
    CHECK(s.enqueue_input(in) == 2);
    CHECK(irq.n == 0);           // ERBFI off
    CHECK((rd(s, LSR) & 0x01) == 0x01);
    wr(s, IER, 0x01);
    CHECK(irq.n == 1);
    CHECK(rd(s, IIR) == 0x04);
    CHECK(rd(s, THR) == 'h');
    CHECK(rd(s, IIR) == 0x04);   // still data
    CHECK(rd(s, THR) == 'i');
    CHECK(rd(s, IIR) == 0x01);
    CHECK(rd(s, LSR) == 0x60);
    CHECK(rd(s, THR) == 0);      // empty RBR

    std::string big(100, 'z');
    CHECK(s.enqueue_input({reinterpret_cast<const uint8_t*>(big.data()), big.size()}) == Serial::kRxCapacity);
    CHECK(s.input_space() == 0);
    CHECK(irq.n == 2);
    wr(s, FCR, 0x03);            // clear the receive FIFO
    CHECK(s.input_space() == Serial::kRxCapacity);
    CHECK(rd(s, IIR) == 0xc1);
}

TEST_CASE("serial: loopback feeds THR back to RBR and MCR to MSR") {
    Pipe p;
    Serial s(p.w, nullptr);
    wr(s, MCR, 0x10 | 0x0a);     // LOOP | RTS | OUT2: the 8250 probe expects MSR 0x90
    CHECK((rd(s, MSR) & 0xf0) == 0x90);
    wr(s, THR, 'Q');
    CHECK(rd(s, LSR) == 0x61);
    CHECK(rd(s, THR) == 'Q');
    CHECK(p.drain().empty());
    wr(s, MCR, 0x08);
    CHECK(rd(s, MSR) == 0xb0);
}

TEST_CASE("serial: save and restore keep registers and unread input") {
    Pipe p;
    Serial a(p.w, nullptr);
    wr(a, LCR, 0x80);
    wr(a, 0, 0x03);
    wr(a, LCR, 0x1b);
    wr(a, IER, 0x01);
    wr(a, SCR, 0x42);
    wr(a, FCR, 0x01);
    const uint8_t in[] = {'x', 'y'};
    a.enqueue_input(in);
    SerialState st = a.save();
    CHECK(st.rx.size() == 2);

    CountingInterrupt irq;
    Serial b(p.w, &irq);
    b.restore(st);
    CHECK(irq.n == 0);  // restoring does not invent an edge
    CHECK(rd(b, LCR) == 0x1b);
    CHECK(rd(b, IER) == 0x01);
    CHECK(rd(b, SCR) == 0x42);
    CHECK(rd(b, IIR) == 0xc4);
    CHECK(rd(b, THR) == 'x');
    CHECK(rd(b, THR) == 'y');
    wr(b, LCR, 0x9b);
    CHECK(rd(b, 0) == 0x03);
}

namespace {

// Restores `dev` from `bytes`; the DataError text, or "<accepted>".
std::string restore_error(Persistent& dev, const std::vector<uint8_t>& bytes) {
    TlvReader r(bytes, "/x/vmstate: device " + dev.persist_id());
    try {
        dev.restore_from(r);
    } catch (const DataError& e) {
        return e.what();
    }
    return "<accepted>";
}

}  // namespace

TEST_CASE("serial: its own fields round trip through save_to and restore_from") {
    Pipe p;
    Serial a(p.w, nullptr);
    CHECK(a.persist_id() == "serial");
    wr(a, LCR, 0x80);
    wr(a, 0, 0x03);
    wr(a, LCR, 0x1b);
    wr(a, IER, 0x03);
    wr(a, SCR, 0x42);
    wr(a, FCR, 0x01);
    const uint8_t in[] = {'x', 'y', 'z'};
    a.enqueue_input(in);
    TlvWriter w;
    a.save_to(w);
    const std::vector<uint8_t> saved = w.take();

    CountingInterrupt irq;
    Serial b(p.w, &irq);
    CHECK(restore_error(b, saved) == "<accepted>");
    SerialState sa = a.save(), sb = b.save();
    CHECK(sb.dll == 0x03);
    CHECK(sb.dlm == sa.dlm);
    CHECK(sb.ier == 0x03);
    CHECK(sb.lcr == 0x1b);
    CHECK(sb.mcr == sa.mcr);
    CHECK(sb.scr == 0x42);
    CHECK(sb.fcr == 0x01);
    CHECK(sb.thr_empty_pending == sa.thr_empty_pending);
    CHECK(sb.rx == std::vector<uint8_t>{'x', 'y', 'z'});
    TlvWriter again;
    b.save_to(again);
    CHECK(again.data() == saved);

    // Bad input names the file and the device; nothing reads past the end.
    for (size_t n = 0; n < saved.size(); ++n) {
        CAPTURE(n);
        Serial c(p.w, nullptr);
        CHECK(restore_error(c, std::vector<uint8_t>(saved.begin(), saved.begin() + static_cast<long>(n)))
                  .rfind("/x/vmstate: device serial: ", 0) == 0);
    }
    Serial c(p.w, nullptr);
    TlvWriter twice;
    twice.put_bytes(std::span(saved.data(), saved.size()));
    twice.bytes(9, std::vector<uint8_t>{'w'});  // rx again
    CHECK(restore_error(c, twice.data()) == "/x/vmstate: device serial: field 9 appears twice");
    TlvWriter extra;
    extra.put_bytes(std::span(saved.data(), saved.size()));
    extra.integer<uint8_t>(42, 1);
    CHECK(restore_error(c, extra.data()) == "/x/vmstate: device serial: unknown field 42 (written by a newer kindling?)");
}

TEST_CASE("serial: restore refuses more input than the FIFO holds") {
    Pipe p;
    Serial a(p.w, nullptr);
    TlvWriter w;
    a.save_to(w);
    // The same fields with an rx buffer one byte over the FIFO (rx is the last field).
    std::vector<uint8_t> b = w.take();
    b.resize(b.size() - 6);
    TlvWriter big;
    big.put_bytes(b);
    big.bytes(9, std::vector<uint8_t>(Serial::kRxCapacity + 1, 'x'));
    CHECK(restore_error(a, big.data()) == "/x/vmstate: device serial: receive buffer of 65 bytes exceeds the FIFO (64)");
}

TEST_CASE("i8042: its own fields round trip through save_to and restore_from") {
    I8042 a([] {}, nullptr);
    CHECK(a.persist_id() == "i8042");
    a.write(4, std::vector<uint8_t>{0x60}.data(), 1);  // write command byte: pending
    REQUIRE(a.trigger_ctrl_alt_del());
    TlvWriter w;
    a.save_to(w);
    const std::vector<uint8_t> saved = w.take();
    I8042 b([] {}, nullptr);
    CHECK(restore_error(b, saved) == "<accepted>");
    I8042State sa = a.save(), sb = b.save();
    CHECK(sb.status == sa.status);
    CHECK(sb.control == sa.control);
    CHECK(sb.outp == sa.outp);
    CHECK(sb.pending_cmd == 0x60);
    CHECK(sb.out == sa.out);
    CHECK(sb.out.size() == 4);
    TlvWriter again;
    b.save_to(again);
    CHECK(again.data() == saved);
    for (size_t n = 0; n < saved.size(); ++n) {
        CAPTURE(n);
        I8042 c([] {}, nullptr);
        CHECK(restore_error(c, std::vector<uint8_t>(saved.begin(), saved.begin() + static_cast<long>(n)))
                  .rfind("/x/vmstate: device i8042: ", 0) == 0);
    }
}

TEST_CASE("i8042: reset command calls back; status and controller commands answer") {
    int resets = 0;
    CountingInterrupt kbd;
    auto dev = std::make_shared<I8042>([&] { ++resets; }, &kbd);
    Bus bus;
    I8042::attach(bus, dev);
    auto out = [&](uint64_t port, uint8_t v) { REQUIRE(bus.write(port, &v, 1)); };
    auto in = [&](uint64_t port) {
        uint8_t v = 0;
        REQUIRE(bus.read(port, &v, 1));
        return v;
    };
    uint8_t dummy = 0;
    CHECK_FALSE(bus.read(0x61, &dummy, 1));  // 0x61-0x63 stay free for others

    CHECK((in(0x64) & 0x03) == 0);  // output empty, input buffer never busy
    out(0x64, 0x20);                // read controller command byte
    CHECK((in(0x64) & 0x01) == 1);
    CHECK(in(0x60) == 0x05);        // keyboard interrupt + system flag
    CHECK((in(0x64) & 0x01) == 0);
    out(0x64, 0xaa);                // self test
    CHECK(in(0x60) == 0x55);
    out(0x60, 0xff);                // keyboard reset: ACK, then self-test passed
    CHECK(in(0x60) == 0xfa);
    CHECK(in(0x60) == 0xaa);
    out(0x64, 0x60);                // write command byte
    out(0x60, 0x00);                // interrupts off
    out(0x64, 0x20);
    CHECK(in(0x60) == 0x00);
    CHECK(resets == 0);

    out(0x64, 0xfe);                // pulse the reset line
    CHECK(resets == 1);
}

TEST_CASE("i8042: Ctrl+Alt+Del queues scan codes and raises IRQ 1") {
    CountingInterrupt kbd;
    I8042 dev([] {}, &kbd);
    CHECK(dev.trigger_ctrl_alt_del());
    CHECK(kbd.n >= 1);
    uint8_t v;
    std::string codes;
    for (int i = 0; i < 4; ++i) {
        dev.read(0, &v, 1);
        codes.push_back(static_cast<char>(v));
    }
    CHECK(codes == std::string("\x14\x11\xe0\x71", 4));
    dev.read(4, &v, 1);
    CHECK((v & 0x01) == 0);
    I8042State st = dev.save();
    CHECK(st.out.empty());
}
