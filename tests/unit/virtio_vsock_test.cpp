// virtio-vsock with Firecracker's hybrid host side: real Unix sockets on the host,
// the test plays the guest driver through virtio-mmio, and runs the EventLoop
// with run_once() on this thread.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/event_loop.h"
#include "base/tlv.h"
#include "devices/virtio/test_driver.h"
#include "devices/virtio/virtio_mmio.h"
#include "devices/virtio/virtio_vsock.h"
#include "kvm/guest_memory.h"

using namespace kindling;

namespace {

constexpr uint64_t kCid = 3;
constexpr uint16_t kRx = 0, kTx = 1, kEv = 2;

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/kindling-vsock.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

UniqueFd unix_connect(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) throw_errno("connect " + path);
    return fd;
}

UniqueFd unix_listen(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) throw_errno("bind " + path);
    if (::listen(fd.get(), 8) < 0) throw_errno("listen");
    return fd;
}

// Non-blocking read of whatever is there; "" when nothing, nullopt on EOF.
std::optional<std::string> try_read(int fd) {
    char b[65536];
    ssize_t n = ::recv(fd, b, sizeof b, MSG_DONTWAIT);
    if (n == 0) return std::nullopt;
    if (n < 0) return std::string();
    return std::string(b, static_cast<size_t>(n));
}

// VsockHeader is packed (44 bytes on the wire); doctest wants plain fields.
struct Header {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
};
Header plain(const VsockHeader& v) {
    return {v.src_cid, v.dst_cid, v.src_port, v.dst_port, v.len, v.type, v.op, v.flags, v.buf_alloc, v.fwd_cnt};
}

struct Packet {
    Header h;
    std::string data;
};

// The guest: a virtio-vsock driver on the test driver's rings.
class Guest {
public:
    Guest(GuestMemory& mem, TestVirtioDriver& drv, uint32_t rx_buf = 4096) : mem_(mem), drv_(drv), rx_buf_(rx_buf) {
        for (int i = 0; i < 8; ++i) tx_area_.push_back(drv_.alloc(sizeof(VsockHeader) + 65536));
    }
    // The same guest in a restored VM (its bookkeeping would be in its memory).
    Guest(GuestMemory& mem, TestVirtioDriver& drv, const Guest& before_snapshot)
        : buf_alloc(before_snapshot.buf_alloc), fwd_cnt(before_snapshot.fwd_cnt), repost(before_snapshot.repost),
          mem_(mem), drv_(drv), rx_buf_(before_snapshot.rx_buf_), rx_addr_(before_snapshot.rx_addr_),
          tx_area_(before_snapshot.tx_area_), tx_next_(before_snapshot.tx_next_), split_(before_snapshot.split_) {}

    // Gives the device `n` rx buffers (alternating one descriptor and header+data split).
    void post_rx(int n) {
        for (int i = 0; i < n; ++i) {
            uint64_t a = drv_.alloc(sizeof(VsockHeader) + rx_buf_);
            post_one(a);
        }
    }

    // Collects every used rx buffer into inbox (and gives the buffer back).
    void collect() {
        while (auto u = drv_.pop_used(kRx)) {
            uint64_t a = rx_addr_.at(u->id);
            REQUIRE(u->len >= sizeof(VsockHeader));
            Packet p;
            VsockHeader wire{};
            mem_.read(a, &wire, sizeof wire);
            p.h = plain(wire);
            REQUIRE(u->len == sizeof(VsockHeader) + p.h.len);
            REQUIRE(p.h.len <= rx_buf_);
            p.data.resize(p.h.len);
            mem_.read(a + sizeof(VsockHeader), p.data.data(), p.h.len);
            inbox.push_back(std::move(p));
            if (repost) post_one(a);
        }
        while (drv_.pop_used(kTx)) {
        }
    }

    VsockHeader hdr(uint32_t src_port, uint32_t dst_port, uint16_t op) const {
        VsockHeader h{};
        h.src_cid = kCid;
        h.dst_cid = kVsockHostCid;
        h.src_port = src_port;
        h.dst_port = dst_port;
        h.type = kVsockTypeStream;
        h.op = op;
        h.buf_alloc = buf_alloc;
        h.fwd_cnt = fwd_cnt;
        return h;
    }

    // Puts a packet on the tx queue; `kick` writes QueueNotify (else the next poll finds it).
    void send(VsockHeader h, const std::string& payload = "", bool kick = true) {
        h.len = static_cast<uint32_t>(payload.size());
        uint64_t a = tx_area_[tx_next_++ % tx_area_.size()];
        mem_.write(a, &h, sizeof h);
        std::vector<TestVirtioDriver::Buf> bufs{{a, sizeof h, false}};
        if (!payload.empty()) {
            mem_.write(a + sizeof h, payload.data(), payload.size());
            bufs.push_back({a + sizeof h, static_cast<uint32_t>(payload.size()), false});
        }
        drv_.add_chain(kTx, bufs);
        if (kick) drv_.notify(kTx);
        collect();
    }

    std::optional<Packet> next() {
        collect();
        if (inbox.empty()) return std::nullopt;
        Packet p = std::move(inbox.front());
        inbox.pop_front();
        return p;
    }

    std::deque<Packet> inbox;
    uint32_t buf_alloc = 256 * 1024;
    uint32_t fwd_cnt = 0;
    bool repost = true;

private:
    void post_one(uint64_t a) {
        uint16_t head;
        if (split_++ % 2)
            head = drv_.add_chain(kRx, {{a, sizeof(VsockHeader), true}, {a + sizeof(VsockHeader), rx_buf_, true}});
        else
            head = drv_.add_chain(kRx, {{a, static_cast<uint32_t>(sizeof(VsockHeader) + rx_buf_), true}});
        rx_addr_[head] = a;
    }

    GuestMemory& mem_;
    TestVirtioDriver& drv_;
    uint32_t rx_buf_;
    std::map<uint32_t, uint64_t> rx_addr_;
    std::vector<uint64_t> tx_area_;
    size_t tx_next_ = 0;
    int split_ = 0;
};

// What the Machine keeps of a vsock device in a snapshot: the fields its transport
// wrote, with the device's own nested inside.
using VsockSnapshot = std::vector<uint8_t>;

struct VsockFixture {
    TempDir dir;
    std::string uds = dir.path + "/v.sock";
    GuestMemory mem{8 << 20};
    EventLoop loop;
    CountingInterrupt irq;
    std::shared_ptr<VirtioVsock> vsock;
    std::unique_ptr<VirtioMmio> mmio;
    std::unique_ptr<TestVirtioDriver> drv;
    std::unique_ptr<Guest> guest;

    explicit VsockFixture(VirtioVsock::Options opts = {}, int rx_buffers = 32, uint32_t rx_buf = 4096) {
        vsock = std::make_shared<VirtioVsock>(kCid, uds, loop, opts);
        mmio = std::make_unique<VirtioMmio>(mem, vsock, irq);
        drv = std::make_unique<TestVirtioDriver>(mem, *mmio);
        REQUIRE((drv->init(kVirtioFVersion1 | 1, {64, 64, 8}) & kVirtioStatusDriverOk));
        guest = std::make_unique<Guest>(mem, *drv, rx_buf);
        guest->post_rx(rx_buffers);
    }
    // A VM restored from `snap`, taken of `old`: a copy of its memory, a fresh device
    // on a socket of its own, restored in the order the Machine uses.
    VsockFixture(const VsockFixture& old, const VsockSnapshot& snap, VirtioVsock::Options opts = {})
        : mem{old.mem.size()} {
        std::memcpy(mem.base(), old.mem.base(), old.mem.size());
        vsock = std::make_shared<VirtioVsock>(kCid, uds, loop, opts);
        mmio = std::make_unique<VirtioMmio>(mem, vsock, irq);
        drv = std::make_unique<TestVirtioDriver>(mem, *mmio, *old.drv);
        guest = std::make_unique<Guest>(mem, *drv, *old.guest);
        TlvReader r(snap, "test vmstate: device vsock");
        mmio->restore_from(r);
    }
    ~VsockFixture() {
        mmio.reset();
        vsock.reset();  // before the loop goes
    }

    // As the Machine saves it (the transport saves the device first: it ends its
    // connections).
    VsockSnapshot snapshot() {
        TlvWriter w;
        mmio->save_to(w);
        return w.take();
    }

    // Gives the device `n` 8-byte event buffers; returns their addresses.
    std::vector<uint64_t> post_events(int n) {
        std::vector<uint64_t> a;
        for (int i = 0; i < n; ++i) {
            a.push_back(drv->alloc(8));
            mem.write_obj(a.back(), uint32_t{0xffffffff});
            drv->add_chain(kEv, {{a.back(), 8, true}});
        }
        return a;
    }
    // Event ids the device has put on the event queue since the last call.  As
    // Linux's event work does, each buffer is handled, made available again and the
    // queue notified (`refill` false: the driver has not got to them yet).
    std::vector<uint32_t> events(bool refill = true) {
        std::vector<uint32_t> ids;
        while (auto u = drv->pop_used(kEv)) {
            REQUIRE(u->len == 4);
            uint8_t d[16] = {};
            mem.read(drv->ring(kEv).desc + 16ull * u->id, d, 16);
            uint64_t addr;
            std::memcpy(&addr, d, 8);
            uint32_t id = 0;
            mem.read_obj(addr, id);
            ids.push_back(id);
            if (refill) drv->add_chain(kEv, {{addr, 8, true}});
        }
        if (refill && !ids.empty()) drv->notify(kEv);
        return ids;
    }

    // Runs the event loop (and polls the device, as KN_PORT_WAIT does) until pred().
    bool pump(const std::function<bool()>& pred, int timeout_ms = 2000) {
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            guest->collect();
            if (pred()) return true;
            if (std::chrono::steady_clock::now() > end) return false;
            loop.run_once(1);
            mmio->poll();
        }
    }
    void settle(int ms = 50) {
        pump([] { return false; }, ms);
    }

    std::optional<Packet> wait_packet(int timeout_ms = 2000) {
        pump([&] { return !guest->inbox.empty(); }, timeout_ms);
        return guest->next();
    }

    // Reads from a host socket until `n` bytes arrived (pumping the device meanwhile).
    std::string read_host(int fd, size_t n, int timeout_ms = 3000) {
        std::string got;
        pump([&] {
            while (got.size() < n) {
                auto s = try_read(fd);
                if (!s || s->empty()) break;
                got += *s;
            }
            return got.size() >= n;
        }, timeout_ms);
        return got;
    }
    bool host_sees_eof(int fd, int timeout_ms = 2000) {
        return pump([&] {
            auto s = try_read(fd);
            return !s.has_value();
        }, timeout_ms);
    }

    // Host client connects to guest port `port`; the guest accepts.  Returns the
    // client socket and the host-side port from "OK <port>".
    std::pair<UniqueFd, uint32_t> host_connect(uint32_t port) {
        UniqueFd c = unix_connect(uds);
        std::string line = "CONNECT " + std::to_string(port) + "\n";
        REQUIRE(::write(c.get(), line.data(), line.size()) == static_cast<ssize_t>(line.size()));
        auto req = wait_packet();
        REQUIRE(req);
        CHECK(req->h.op == kVsockOpRequest);
        CHECK(req->h.src_cid == kVsockHostCid);
        CHECK(req->h.dst_cid == kCid);
        CHECK(req->h.dst_port == port);
        CHECK(req->h.type == kVsockTypeStream);
        CHECK(req->h.src_port >= (1u << 30));
        guest->send(guest->hdr(port, req->h.src_port, kVsockOpResponse));
        std::string ok = "OK " + std::to_string(req->h.src_port) + "\n";
        CHECK(read_host(c.get(), ok.size()) == ok);
        return {std::move(c), req->h.src_port};
    }
};

std::string random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    return s;
}

}  // namespace

TEST_CASE("vsock: config space holds the guest CID") {
    VsockFixture f;
    uint64_t cid = 0;
    f.mmio->read(VirtioMmio::kConfig, reinterpret_cast<uint8_t*>(&cid), 4);
    f.mmio->read(VirtioMmio::kConfig + 4, reinterpret_cast<uint8_t*>(&cid) + 4, 4);
    CHECK(cid == kCid);
    CHECK(f.drv->reg(VirtioMmio::kDeviceId) == 19);
}

TEST_CASE("vsock: host-initiated connection, data both ways byte-exact") {
    VsockFixture f;
    auto [client, hport] = f.host_connect(9000);
    CHECK(f.vsock->connection_count() == 1);

    // host -> guest
    std::string msg = "hello from the host";
    REQUIRE(::write(client.get(), msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
    auto p = f.wait_packet();
    REQUIRE(p);
    CHECK(p->h.op == kVsockOpRw);
    CHECK(p->h.src_port == hport);
    CHECK(p->h.dst_port == 9000);
    CHECK(p->data == msg);
    CHECK(p->h.buf_alloc == 256 * 1024);

    // guest -> host
    f.guest->send(f.guest->hdr(9000, hport, kVsockOpRw), "hello from the guest");
    CHECK(f.read_host(client.get(), 20) == "hello from the guest");

    // Bulk both ways: 1 MiB host -> guest (guest returns credit as it reads) and
    // 1 MiB guest -> host (guest respects the device's credit).
    std::string down = random_bytes(1 << 20, 1), up = random_bytes(1 << 20, 2);
    size_t down_sent = 0, up_sent = 0;
    std::string down_got, up_got;
    uint32_t dev_buf_alloc = 0, dev_fwd_cnt = 0;
    uint32_t guest_tx_cnt = static_cast<uint32_t>(20);
    uint32_t fwd_told = 0;
    int fl = ::fcntl(client.get(), F_GETFL);
    ::fcntl(client.get(), F_SETFL, fl | O_NONBLOCK);
    bool done = f.pump([&] {
        if (down_sent < down.size()) {
            ssize_t n = ::write(client.get(), down.data() + down_sent, std::min<size_t>(down.size() - down_sent, 65536));
            if (n > 0) down_sent += static_cast<size_t>(n);
        }
        while (auto pk = f.guest->next()) {
            if (pk->h.op == kVsockOpRw) {
                down_got += pk->data;
                f.guest->fwd_cnt += pk->h.len;  // the guest app consumed it
            }
            dev_buf_alloc = pk->h.buf_alloc;
            dev_fwd_cnt = pk->h.fwd_cnt;
        }
        // Return credit now and then, as Linux does.
        if (f.guest->fwd_cnt - fwd_told >= f.guest->buf_alloc / 4) {
            f.guest->send(f.guest->hdr(9000, hport, kVsockOpCreditUpdate));
            fwd_told = f.guest->fwd_cnt;
        }
        // Send what the device's credit allows.
        if (up_sent < up.size() && dev_buf_alloc) {
            uint32_t credit = dev_buf_alloc - (guest_tx_cnt - dev_fwd_cnt);
            size_t n = std::min<size_t>({credit, 4096, up.size() - up_sent});
            if (n) {
                f.guest->send(f.guest->hdr(9000, hport, kVsockOpRw), up.substr(up_sent, n));
                up_sent += n;
                guest_tx_cnt += static_cast<uint32_t>(n);
            }
        }
        if (auto s = try_read(client.get())) up_got += *s;
        return down_got.size() == down.size() && up_got.size() == up.size();
    }, 20000);
    CHECK(done);
    CHECK(down_got.size() == down.size());
    CHECK(down_got == down);
    CHECK(up_got.size() == up.size());
    CHECK(up_got == up);
    CHECK_FALSE((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
}

TEST_CASE("vsock: the host never sends beyond the guest's buf_alloc") {
    VsockFixture f;
    f.guest->buf_alloc = 8192;
    auto [client, hport] = f.host_connect(9001);
    std::string data = random_bytes(100 * 1024, 3);
    int fl = ::fcntl(client.get(), F_GETFL);
    ::fcntl(client.get(), F_SETFL, fl | O_NONBLOCK);
    size_t sent = 0;
    std::string got;
    int credit_requests = 0;
    auto drain = [&] {
        while (auto p = f.guest->next()) {
            if (p->h.op == kVsockOpRw) got += p->data;
            if (p->h.op == kVsockOpCreditRequest) ++credit_requests;
        }
    };
    uint32_t returned = 0;
    while (got.size() < data.size()) {
        f.pump([&] {
            if (sent < data.size()) {
                ssize_t n = ::write(client.get(), data.data() + sent, data.size() - sent);
                if (n > 0) sent += static_cast<size_t>(n);
            }
            drain();
            return false;
        }, 30);
        // The guest has not consumed beyond `returned`: at most buf_alloc more may be in flight.
        REQUIRE(got.size() <= returned + 8192);
        if (got.size() < data.size()) CHECK(got.size() == returned + 8192);
        // The guest app reads everything and returns the credit.
        returned = static_cast<uint32_t>(got.size());
        f.guest->fwd_cnt = returned;
        f.guest->send(f.guest->hdr(9001, hport, kVsockOpCreditUpdate));
    }
    CHECK(got == data);
    CHECK(credit_requests >= 1);  // the device asked when it ran dry
}

TEST_CASE("vsock: the device returns credit to a guest that only sends") {
    VirtioVsock::Options o;
    o.buf_alloc = 32 * 1024;
    VsockFixture f(o);
    auto [client, hport] = f.host_connect(9006);
    std::string up = random_bytes(2 << 20, 5), got;
    size_t sent = 0;
    uint32_t dev_buf_alloc = 32 * 1024, dev_fwd_cnt = 0, tx_cnt = 0;
    int updates = 0;
    bool done = f.pump([&] {
        while (auto p = f.guest->next()) {
            REQUIRE(p->h.op == kVsockOpCreditUpdate);
            ++updates;
            dev_buf_alloc = p->h.buf_alloc;
            dev_fwd_cnt = p->h.fwd_cnt;
        }
        uint32_t credit = dev_buf_alloc - (tx_cnt - dev_fwd_cnt);
        REQUIRE(credit <= dev_buf_alloc);
        size_t n = std::min<size_t>({credit, 8192, up.size() - sent});
        if (n) {
            f.guest->send(f.guest->hdr(9006, hport, kVsockOpRw), up.substr(sent, n));
            sent += n;
            tx_cnt += static_cast<uint32_t>(n);
        }
        if (auto s = try_read(client.get())) got += *s;
        return got.size() == up.size();
    }, 20000);
    CHECK(done);
    CHECK(got == up);
    CHECK(updates >= 10);  // credit came back in CREDIT_UPDATE packets, not all at the end
    CHECK(f.vsock->connection_count() == 1);
}

TEST_CASE("vsock: a guest that ignores the device's credit is reset") {
    VirtioVsock::Options o;
    o.buf_alloc = 16 * 1024;
    VsockFixture f(o);
    auto [client, hport] = f.host_connect(9002);
    // The client does not read; the host socket fills up, then the device buffers
    // up to buf_alloc; one byte more is a violation.
    std::string chunk(4096, 'x');
    bool reset = false;
    for (int i = 0; i < 1000 && !reset; ++i) {
        f.guest->send(f.guest->hdr(9002, hport, kVsockOpRw), chunk);
        while (auto p = f.guest->next()) reset |= p->h.op == kVsockOpRst;
    }
    CHECK(reset);
    CHECK(f.vsock->connection_count() == 0);
    // The client gets what was delivered before the reset, then EOF.
    CHECK(f.pump([&] {
        auto s = try_read(client.get());
        return !s.has_value();
    }));
}

TEST_CASE("vsock: rx batching fills every buffer with one interrupt") {
    VsockFixture f({}, 32, 4096);
    auto [client, hport] = f.host_connect(9003);
    f.settle(20);
    std::string data = random_bytes(40 * 1024, 4);
    REQUIRE(::write(client.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    int before = f.irq.count;
    f.loop.run_once(100);  // one readable event
    f.guest->collect();
    CHECK(f.guest->inbox.size() == 10);
    CHECK(f.irq.count - before == 1);
    std::string got;
    while (auto p = f.guest->next()) got += p->data;
    CHECK(got == data);
}

TEST_CASE("vsock: poll() serves the tx queue without a QueueNotify") {
    VsockFixture f;
    auto [client, hport] = f.host_connect(9004);
    f.guest->send(f.guest->hdr(9004, hport, kVsockOpRw), "no kick needed", false);
    f.mmio->poll();
    CHECK(f.read_host(client.get(), 14) == "no kick needed");
}

TEST_CASE("vsock: guest-initiated connection to <uds>_P") {
    VsockFixture f;
    UniqueFd lst = unix_listen(f.uds + "_5000");
    f.guest->send(f.guest->hdr(1234, 5000, kVsockOpRequest));
    auto resp = f.wait_packet();
    REQUIRE(resp);
    CHECK(resp->h.op == kVsockOpResponse);
    CHECK(resp->h.src_port == 5000);
    CHECK(resp->h.dst_port == 1234);
    UniqueFd srv(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(srv);

    f.guest->send(f.guest->hdr(1234, 5000, kVsockOpRw), "ping");
    CHECK(f.read_host(srv.get(), 4) == "ping");
    REQUIRE(::write(srv.get(), "pong", 4) == 4);
    auto p = f.wait_packet();
    REQUIRE(p);
    CHECK(p->h.op == kVsockOpRw);
    CHECK(p->data == "pong");

    SUBCASE("the guest closes: host sees EOF, guest gets RST") {
        f.guest->send(f.guest->hdr(1234, 5000, kVsockOpShutdown));
        // (flags 0 is not a close) -- now a real one:
        VsockHeader h = f.guest->hdr(1234, 5000, kVsockOpShutdown);
        h.flags = kVsockShutdownRcv | kVsockShutdownSend;
        f.guest->send(h);
        CHECK(f.host_sees_eof(srv.get()));
        auto r = f.wait_packet();
        REQUIRE(r);
        CHECK(r->h.op == kVsockOpRst);
        CHECK(f.vsock->connection_count() == 0);
    }
    SUBCASE("the host closes: guest gets SHUTDOWN, answers RST") {
        srv.reset();
        auto s = f.wait_packet();
        REQUIRE(s);
        CHECK(s->h.op == kVsockOpShutdown);
        CHECK((s->h.flags & kVsockShutdownSend));
        f.guest->send(f.guest->hdr(1234, 5000, kVsockOpRst));
        CHECK(f.vsock->connection_count() == 0);
    }
    SUBCASE("the host half-closes: guest gets SHUTDOWN(send) and can still send") {
        ::shutdown(srv.get(), SHUT_WR);
        auto s = f.wait_packet();
        REQUIRE(s);
        CHECK(s->h.op == kVsockOpShutdown);
        CHECK(s->h.flags == kVsockShutdownSend);
        f.guest->send(f.guest->hdr(1234, 5000, kVsockOpRw), "still here");
        CHECK(f.read_host(srv.get(), 10) == "still here");
    }
}

TEST_CASE("vsock: guest connection to a port nobody listens on gets RST") {
    VsockFixture f;
    f.guest->send(f.guest->hdr(1235, 5001, kVsockOpRequest));
    auto r = f.wait_packet();
    REQUIRE(r);
    CHECK(r->h.op == kVsockOpRst);
    CHECK(r->h.dst_port == 1235);
    CHECK(f.vsock->connection_count() == 0);
}

TEST_CASE("vsock: a VM's connections and what they may buffer are bounded; more are refused") {
    VsockOptions defaults;
    // Guest -> host bytes are buffered per connection up to buf_alloc (a guest past
    // its credit is reset), so this is all a VM's connections can hold.
    CHECK(defaults.max_buffered_bytes() <= 8u << 20);
    CHECK(defaults.max_connections <= 64);
    VsockOptions o;
    o.max_connections = 5;
    VsockFixture f(o);
    UniqueFd lst = unix_listen(f.uds + "_5000");
    std::vector<UniqueFd> accepted;
    for (uint32_t i = 0; i < o.max_connections; ++i) {
        f.guest->send(f.guest->hdr(2000 + i, 5000, kVsockOpRequest));
        auto r = f.wait_packet();
        REQUIRE(r);
        CHECK(r->h.op == kVsockOpResponse);
        accepted.emplace_back(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
    // One more from the guest: RST.
    f.guest->send(f.guest->hdr(3000, 5000, kVsockOpRequest));
    auto r = f.wait_packet();
    REQUIRE(r);
    CHECK(r->h.op == kVsockOpRst);
    CHECK(r->h.dst_port == 3000);
    // One more from the host: closed at once.
    UniqueFd extra(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, f.uds.c_str(), sizeof a.sun_path - 1);
    REQUIRE(::connect(extra.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    CHECK(f.host_sees_eof(extra.get()));
    CHECK(f.vsock->connection_count() == o.max_connections);
}

TEST_CASE("vsock: packets for unknown connections get RST, RSTs get nothing") {
    VsockFixture f;
    f.guest->send(f.guest->hdr(7, 8, kVsockOpRw), "stray");
    auto r = f.wait_packet();
    REQUIRE(r);
    CHECK(r->h.op == kVsockOpRst);
    f.guest->send(f.guest->hdr(7, 8, kVsockOpRst));
    f.settle(20);
    CHECK(f.guest->inbox.empty());
}

TEST_CASE("vsock: host connection refused by the guest, or never answered") {
    VirtioVsock::Options o;
    o.connect_timeout = std::chrono::milliseconds(100);
    VsockFixture f(o);
    SUBCASE("guest RST closes the client") {
        UniqueFd c = unix_connect(f.uds);
        REQUIRE(::write(c.get(), "CONNECT 77\n", 11) == 11);
        auto req = f.wait_packet();
        REQUIRE(req);
        f.guest->send(f.guest->hdr(77, req->h.src_port, kVsockOpRst));
        CHECK(f.host_sees_eof(c.get()));
        CHECK(f.vsock->connection_count() == 0);
    }
    SUBCASE("no answer: timeout closes the client and RSTs the guest") {
        UniqueFd c = unix_connect(f.uds);
        REQUIRE(::write(c.get(), "CONNECT 78\n", 11) == 11);
        auto req = f.wait_packet();
        REQUIRE(req);
        CHECK(f.host_sees_eof(c.get(), 1000));
        auto r = f.wait_packet();
        REQUIRE(r);
        CHECK(r->h.op == kVsockOpRst);
        CHECK(f.vsock->connection_count() == 0);
    }
    SUBCASE("a client that never sends CONNECT is closed") {
        UniqueFd c = unix_connect(f.uds);
        CHECK(f.host_sees_eof(c.get(), 1000));
    }
    SUBCASE("a malformed CONNECT line is closed") {
        UniqueFd c = unix_connect(f.uds);
        REQUIRE(::write(c.get(), "CONNECT x\n", 10) == 10);
        CHECK(f.host_sees_eof(c.get(), 1000));
        CHECK(f.guest->inbox.empty());
    }
}

TEST_CASE("vsock: a host client that disconnects is shut down towards the guest") {
    VsockFixture f;
    auto [client, hport] = f.host_connect(9005);
    client.reset();
    auto s = f.wait_packet();
    REQUIRE(s);
    CHECK(s->h.op == kVsockOpShutdown);
    CHECK(s->h.flags == (kVsockShutdownRcv | kVsockShutdownSend));
    f.guest->send(f.guest->hdr(9005, hport, kVsockOpRst));
    CHECK(f.vsock->connection_count() == 0);
}

TEST_CASE("vsock: several connections at once stay separate") {
    VsockFixture f;
    std::vector<std::pair<UniqueFd, uint32_t>> cs;
    for (uint32_t i = 0; i < 4; ++i) cs.push_back(f.host_connect(9100 + i));
    for (uint32_t i = 0; i < 4; ++i) {
        std::string m = "to guest port " + std::to_string(9100 + i);
        REQUIRE(::write(cs[i].first.get(), m.data(), m.size()) == static_cast<ssize_t>(m.size()));
    }
    std::map<uint32_t, std::string> got;
    f.pump([&] {
        while (auto p = f.guest->next())
            if (p->h.op == kVsockOpRw) got[p->h.dst_port] += p->data;
        return got.size() == 4;
    });
    for (uint32_t i = 0; i < 4; ++i) {
        CHECK(got[9100 + i] == "to guest port " + std::to_string(9100 + i));
        std::string m = "from " + std::to_string(9100 + i);
        f.guest->send(f.guest->hdr(9100 + i, cs[i].second, kVsockOpRw), m);
    }
    for (uint32_t i = 0; i < 4; ++i) CHECK(f.read_host(cs[i].first.get(), 9) == "from " + std::to_string(9100 + i));

    f.vsock->reset_connections();
    CHECK(f.vsock->connection_count() == 0);
    for (auto& c : cs) CHECK(f.host_sees_eof(c.first.get()));
}

TEST_CASE("vsock: host clients may connect before the driver is up") {
    TempDir dir;
    std::string uds = dir.path + "/v.sock";
    GuestMemory mem{4 << 20};
    EventLoop loop;
    CountingInterrupt irq;
    auto vs = std::make_shared<VirtioVsock>(kCid, uds, loop);
    VirtioMmio mmio(mem, vs, irq);
    UniqueFd c = unix_connect(uds);
    REQUIRE(::write(c.get(), "CONNECT 10\n", 11) == 11);
    for (int i = 0; i < 5; ++i) loop.run_once(5);
    TestVirtioDriver drv(mem, mmio);
    REQUIRE((drv.init(kVirtioFVersion1, {64, 64, 8}) & kVirtioStatusDriverOk));
    Guest g(mem, drv);
    g.post_rx(4);
    mmio.poll();
    auto p = g.next();
    REQUIRE(p);
    CHECK(p->h.op == kVsockOpRequest);
    CHECK(p->h.dst_port == 10);
    vs.reset();
}

TEST_CASE("vsock: transport reset event") {
    VsockFixture f;
    uint64_t ev = f.drv->alloc(8);
    f.drv->add_chain(kEv, {{ev, 8, true}});
    CHECK(f.vsock->send_transport_reset());
    auto u = f.drv->pop_used(kEv);
    REQUIRE(u);
    CHECK(u->len == 4);
    uint32_t id = 0xff;
    f.mem.read_obj(ev, id);
    CHECK(id == 0);
    CHECK_FALSE(f.vsock->send_transport_reset());  // no buffer left
}

TEST_CASE("vsock: the listening socket") {
    TempDir dir;
    std::string uds = dir.path + "/v.sock";
    EventLoop loop;
    SUBCASE("is removed on destruction") {
        { VirtioVsock v(kCid, uds, loop); CHECK(std::filesystem::exists(uds)); }
        CHECK_FALSE(std::filesystem::exists(uds));
    }
    SUBCASE("a live listener at the path is EADDRINUSE naming the path") {
        UniqueFd other = unix_listen(uds);
        try {
            VirtioVsock v(kCid, uds, loop);
            FAIL("no throw");
        } catch (const SysError& e) {
            CHECK(e.err() == EADDRINUSE);
            CHECK(std::string(e.what()).find(uds) != std::string::npos);
        }
        CHECK(std::filesystem::exists(uds));  // left alone
    }
    SUBCASE("a stale socket file is replaced") {
        { UniqueFd stale = unix_listen(uds); }
        REQUIRE(std::filesystem::exists(uds));
        VirtioVsock v(kCid, uds, loop);
        UniqueFd c = unix_connect(uds);
        CHECK(c);
    }
    SUBCASE("a regular file at the path is not clobbered") {
        { FILE* fp = std::fopen(uds.c_str(), "w"); std::fputs("keep", fp); std::fclose(fp); }
        CHECK_THROWS_AS(VirtioVsock(kCid, uds, loop), SysError);
        CHECK(std::filesystem::is_regular_file(uds));
    }
}

TEST_CASE("vsock: malformed tx packets fail the device, the VMM keeps going") {
    VsockFixture f;
    uint64_t a = f.drv->alloc(64);
    SUBCASE("header shorter than 44 bytes") {
        f.drv->add_chain(kTx, {{a, 20, false}});
    }
    SUBCASE("len larger than the buffer") {
        VsockHeader h = f.guest->hdr(1, 2, kVsockOpRw);
        h.len = 1000;
        f.mem.write(a, &h, sizeof h);
        f.drv->add_chain(kTx, {{a, sizeof h + 8, false}});
    }
    f.drv->notify(kTx);
    CHECK((f.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));
    // Host side still works (accepts, and times out into nothing) with no crash.
    UniqueFd c = unix_connect(f.uds);
    REQUIRE(::write(c.get(), "CONNECT 1\n", 10) == 10);
    f.settle(20);
    CHECK(f.guest->inbox.empty());
}

TEST_CASE("vsock: event loop on its own thread (linux guests) while the guest polls") {
    TempDir dir;
    std::string uds = dir.path + "/v.sock";
    GuestMemory mem{8 << 20};
    EventLoop loop;
    CountingInterrupt irq;
    auto vs = std::make_shared<VirtioVsock>(kCid, uds, loop);
    auto mmio = std::make_unique<VirtioMmio>(mem, vs, irq);
    TestVirtioDriver drv(mem, *mmio);
    REQUIRE((drv.init(kVirtioFVersion1, {64, 64, 8}) & kVirtioStatusDriverOk));
    Guest g(mem, drv);
    g.post_rx(32);
    std::thread loop_thread([&] { loop.run(); });

    UniqueFd client = unix_connect(uds);
    REQUIRE(::write(client.get(), "CONNECT 42\n", 11) == 11);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto wait_for = [&](auto pred) {
        while (!pred() && std::chrono::steady_clock::now() < deadline) {
            mmio->poll();
            g.collect();
            std::this_thread::yield();
        }
        return pred();
    };
    REQUIRE(wait_for([&] { return !g.inbox.empty(); }));
    Packet req = *g.next();
    REQUIRE(req.h.op == kVsockOpRequest);
    g.send(g.hdr(42, req.h.src_port, kVsockOpResponse));
    int fl = ::fcntl(client.get(), F_GETFL);
    ::fcntl(client.get(), F_SETFL, fl | O_NONBLOCK);

    std::string down = random_bytes(512 * 1024, 7), up = random_bytes(512 * 1024, 8);
    std::string ok = "OK " + std::to_string(req.h.src_port) + "\n";
    std::string down_got, up_got;
    size_t down_sent = 0, up_sent = 0;
    uint32_t dev_alloc = 0, dev_fwd = 0, tx_cnt = 0, told = 0;
    bool done = wait_for([&] {
        if (down_sent < down.size()) {
            ssize_t n = ::write(client.get(), down.data() + down_sent, std::min<size_t>(down.size() - down_sent, 32768));
            if (n > 0) down_sent += static_cast<size_t>(n);
        }
        while (auto p = g.next()) {
            if (p->h.op == kVsockOpRw) {
                down_got += p->data;
                g.fwd_cnt += p->h.len;
            }
            dev_alloc = p->h.buf_alloc;
            dev_fwd = p->h.fwd_cnt;
        }
        if (g.fwd_cnt - told >= g.buf_alloc / 4) {
            g.send(g.hdr(42, req.h.src_port, kVsockOpCreditUpdate));
            told = g.fwd_cnt;
        }
        uint32_t credit = dev_alloc ? dev_alloc - (tx_cnt - dev_fwd) : 0;
        size_t n = std::min<size_t>({credit, 4096, up.size() - up_sent});
        if (n) {
            g.send(g.hdr(42, req.h.src_port, kVsockOpRw), up.substr(up_sent, n), false);  // poll() picks it up
            up_sent += n;
            tx_cnt += static_cast<uint32_t>(n);
        }
        if (auto s = try_read(client.get())) up_got += *s;
        return down_got.size() == down.size() && up_got.size() == ok.size() + up.size();
    });
    loop.stop();
    loop_thread.join();
    CHECK(done);
    CHECK(down_got == down);
    CHECK(up_got == ok + up);
    mmio.reset();
    vs.reset();
}

// ---- snapshots ------------------------------------------------------------------

TEST_CASE("vsock snapshot: connections are reset, the restored guest hears TRANSPORT_RESET, new connections work") {
    VsockFixture f;
    f.post_events(2);
    auto [c1, hport1] = f.host_connect(9000);
    auto [c2, hport2] = f.host_connect(9001);
    REQUIRE(::write(c1.get(), "down", 4) == 4);
    auto p = f.wait_packet();
    REQUIRE(p);
    CHECK(p->data == "down");
    f.guest->send(f.guest->hdr(9000, hport1, kVsockOpRw), "up");
    CHECK(f.read_host(c1.get(), 2) == "up");
    UniqueFd lst = unix_listen(f.uds + "_5000");  // and one the guest opened
    f.guest->send(f.guest->hdr(1234, 5000, kVsockOpRequest));
    auto resp = f.wait_packet();
    REQUIRE(resp);
    REQUIRE(resp->h.op == kVsockOpResponse);
    UniqueFd srv(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(srv);
    CHECK(f.vsock->connection_count() == 3);
    // At the snapshot the guest has queued a packet the device has not seen.
    f.guest->send(f.guest->hdr(9000, hport1, kVsockOpRw), "stale", false);
    const uint16_t tx_avail = f.drv->ring(kTx).avail_idx;
    const uint16_t rx_used = f.drv->used_idx(kRx);

    VsockSnapshot snap = f.snapshot();
    CHECK(f.vsock->connection_count() == 0);
    CHECK(f.vsock->transport_reset_pending());  // owed to this guest, should it resume
    VsockFixture r(f, snap);

    // Every host end of the old connections sees EOF, and nothing else.
    for (int fd : {c1.get(), c2.get(), srv.get()}) {
        char b[16];
        CHECK(::recv(fd, b, sizeof b, MSG_DONTWAIT) == 0);
    }

    // The restored guest: one TRANSPORT_RESET (§5.10.6.7, id 0) on the event queue,
    // the stale packet handed back unanswered, nothing on rx, nothing re-delivered.
    CHECK(r.irq.count >= 1);
    CHECK(r.events() == std::vector<uint32_t>{0});
    CHECK_FALSE(r.vsock->transport_reset_pending());
    CHECK(r.drv->used_idx(kTx) == tx_avail);
    CHECK(r.drv->used_idx(kRx) == rx_used);
    r.settle(30);  // runs the loop and polls, as the nano wait does
    CHECK(r.guest->inbox.empty());
    CHECK(r.events().empty());
    CHECK(r.vsock->connection_count() == 0);
    CHECK(r.drv->reg(VirtioMmio::kStatus) == f.drv->reg(VirtioMmio::kStatus));

    // New connections both ways; host ports keep counting from the saved position,
    // so none collides with a connection the guest may not have dropped yet.
    auto [n1, nport] = r.host_connect(9000);
    CHECK(nport == hport2 + 1);
    REQUIRE(::write(n1.get(), "after restore", 13) == 13);
    auto q = r.wait_packet();
    REQUIRE(q);
    CHECK(q->h.op == kVsockOpRw);
    CHECK(q->data == "after restore");
    r.guest->send(r.guest->hdr(9000, nport, kVsockOpRw), "answer");
    CHECK(r.read_host(n1.get(), 6) == "answer");
    UniqueFd lst2 = unix_listen(r.uds + "_5000");
    r.guest->send(r.guest->hdr(1234, 5000, kVsockOpRequest));
    auto resp2 = r.wait_packet();
    REQUIRE(resp2);
    CHECK(resp2->h.op == kVsockOpResponse);
    CHECK_FALSE((r.drv->reg(VirtioMmio::kStatus) & kVirtioStatusNeedsReset));

    // The original VM, resumed, is told too (Firecracker's SnapshotCreate event),
    // before anything new reaches its rx queue.
    UniqueFd c3 = unix_connect(f.uds);
    REQUIRE(::write(c3.get(), "CONNECT 9000\n", 13) == 13);
    f.mmio->poll();
    CHECK(f.events() == std::vector<uint32_t>{0});
    auto req = f.wait_packet();
    REQUIRE(req);
    CHECK(req->h.op == kVsockOpRequest);
}

TEST_CASE("vsock snapshot: the reset waits for an event buffer, and rx waits behind it") {
    VsockFixture f;  // no event buffers posted
    auto [c1, hport1] = f.host_connect(9000);
    VsockSnapshot snap = f.snapshot();
    VsockFixture r(f, snap);
    CHECK(r.vsock->transport_reset_pending());
    CHECK(r.events().empty());

    // A host client connects; its REQUEST must not overtake the reset.
    UniqueFd c = unix_connect(r.uds);
    REQUIRE(::write(c.get(), "CONNECT 9000\n", 13) == 13);
    r.settle(50);
    CHECK(r.guest->inbox.empty());

    // The guest posts an event buffer: the reset goes out, then the REQUEST.
    r.post_events(1);
    SUBCASE("found by poll()") { r.mmio->poll(); }
    SUBCASE("announced with QueueNotify") { r.drv->notify(kEv); }
    CHECK(r.events() == std::vector<uint32_t>{0});
    CHECK_FALSE(r.vsock->transport_reset_pending());
    auto req = r.wait_packet();
    REQUIRE(req);
    CHECK(req->h.op == kVsockOpRequest);
    CHECK(req->h.dst_port == 9000);
    r.post_events(1);
    r.mmio->poll();
    CHECK(r.events().empty());  // exactly one reset
}

TEST_CASE("vsock snapshot: rx waits until the driver has handled the reset") {
    // Linux handles rx before events after one interrupt: a REQUEST delivered with
    // the reset still unhandled would be reset too.
    VsockFixture f;
    f.post_events(2);
    auto [c1, hport1] = f.host_connect(9000);
    VsockSnapshot snap = f.snapshot();
    VsockFixture r(f, snap);
    UniqueFd c = unix_connect(r.uds);
    REQUIRE(::write(c.get(), "CONNECT 9000\n", 13) == 13);
    r.settle(50);
    CHECK(r.events(false) == std::vector<uint32_t>{0});
    CHECK(r.vsock->transport_reset_pending());
    r.settle(50);
    CHECK(r.guest->inbox.empty());  // the second event buffer is no sign of handling
    // The driver handles the event and makes its buffer available again.
    r.post_events(1);
    r.drv->notify(kEv);
    CHECK_FALSE(r.vsock->transport_reset_pending());
    auto req = r.wait_packet();
    REQUIRE(req);
    CHECK(req->h.op == kVsockOpRequest);
    CHECK(req->h.dst_port == 9000);
}

TEST_CASE("vsock snapshot: a driver without an event queue gets no reset and no stall") {
    TempDir dir;
    GuestMemory mem{8 << 20};
    EventLoop loop;
    CountingInterrupt irq;
    auto vs = std::make_shared<VirtioVsock>(kCid, dir.path + "/a.sock", loop);
    VirtioMmio mmio(mem, vs, irq);
    TestVirtioDriver drv(mem, mmio);
    REQUIRE((drv.init(kVirtioFVersion1 | 1, {64, 64, 0}) & kVirtioStatusDriverOk));
    Guest g(mem, drv);
    g.post_rx(4);
    VirtioVsockState vst = vs->save();
    VirtioMmioState st = mmio.save();

    GuestMemory mem2{mem.size()};
    std::memcpy(mem2.base(), mem.base(), mem.size());
    auto vs2 = std::make_shared<VirtioVsock>(kCid, dir.path + "/b.sock", loop);
    VirtioMmio mmio2(mem2, vs2, irq);
    TestVirtioDriver drv2(mem2, mmio2, drv);
    Guest g2(mem2, drv2, g);
    mmio2.restore(st);
    vs2->restore(vst);
    CHECK_FALSE(vs2->transport_reset_pending());
    UniqueFd c = unix_connect(dir.path + "/b.sock");
    REQUIRE(::write(c.get(), "CONNECT 7\n", 10) == 10);
    for (int i = 0; i < 5; ++i) loop.run_once(5);
    mmio2.poll();
    auto p = g2.next();
    REQUIRE(p);
    CHECK(p->h.op == kVsockOpRequest);
    vs.reset();
    vs2.reset();
}

TEST_CASE("vsock snapshot: restored before the driver ran, the device needs no reset") {
    TempDir dir;
    GuestMemory mem{4 << 20};
    EventLoop loop;
    CountingInterrupt irq;
    auto vs = std::make_shared<VirtioVsock>(kCid, dir.path + "/a.sock", loop);
    VirtioMmio mmio(mem, vs, irq);
    VirtioVsockState vst = vs->save();
    VirtioMmioState st = mmio.save();
    CHECK_FALSE(vs->transport_reset_pending());
    auto vs2 = std::make_shared<VirtioVsock>(kCid, dir.path + "/b.sock", loop);
    VirtioMmio mmio2(mem, vs2, irq);
    mmio2.restore(st);
    vs2->restore(vst);
    CHECK_FALSE(vs2->transport_reset_pending());
    CHECK_FALSE(mmio2.active());
    vs.reset();
    vs2.reset();
}

TEST_CASE("vsock snapshot: the device's own fields") {
    TempDir dir;
    EventLoop loop;
    auto vs = std::make_shared<VirtioVsock>(kCid, dir.path + "/a.sock", loop);
    const std::string what = "/x/vmstate: device virtio-mmio@0xd0000000: virtio-vsock";
    auto restore = [&](const std::vector<uint8_t>& b) {
        TlvReader r(b, what);
        try {
            vs->restore_from(r);
        } catch (const DataError& e) {
            return std::string(e.what());
        }
        return std::string("<accepted>");
    };
    // guest_cid (1), acked_features (2), next_local_port (3).  The driver is not
    // running, so features are not checked against a transport.
    TlvWriter w;
    w.integer<uint64_t>(1, kCid);
    w.integer<uint64_t>(2, 0);
    w.integer<uint32_t>(3, (1u << 30) + 17);
    const std::vector<uint8_t> b = w.data();
    CHECK(restore(b) == "<accepted>");
    TlvWriter again;
    vs->save_to(again);
    CHECK(again.data() == b);  // next_local_port came back

    // Every truncation is refused, none reads past the end (ASan would tell).
    for (size_t n = 0; n < b.size(); ++n) {
        CAPTURE(n);
        CHECK(restore(std::vector<uint8_t>(b.begin(), b.begin() + static_cast<long>(n))).rfind(what + ": ", 0) == 0);
    }
    TlvWriter extra;
    extra.put_bytes(b);
    extra.integer<uint8_t>(9, 1);
    CHECK(restore(extra.data()) == what + ": unknown field 9 (written by a newer kindling?)");
    TlvWriter port;
    port.integer<uint64_t>(1, kCid);
    port.integer<uint64_t>(2, 0);
    port.integer<uint32_t>(3, 17);
    CHECK(restore(port.data()) == what + ": next local port 17 is below 2^30");
    TlvWriter narrow;
    narrow.integer<uint64_t>(1, kCid);
    narrow.integer<uint32_t>(2, 0);
    narrow.integer<uint32_t>(3, 1u << 30);
    CHECK(restore(narrow.data()) == what + ": acked_features: 4 bytes, expected 8");
    vs.reset();
}

TEST_CASE("vsock snapshot: restore refuses state that does not fit the device") {
    VsockFixture f;
    SUBCASE("a truncated snapshot") {
        VsockSnapshot snap = f.snapshot();
        snap.resize(12);
        CHECK_THROWS_WITH_AS(VsockFixture(f, snap),
                             "test vmstate: device vsock: truncated field length at offset 12 (0 bytes left, need 4)",
                             DataError);
    }
    SUBCASE("features that differ from the transport's") {
        VirtioVsockState s = f.vsock->save();
        VirtioMmioState st = f.mmio->save();
        GuestMemory mem2{f.mem.size()};
        std::memcpy(mem2.base(), f.mem.base(), f.mem.size());
        auto vs2 = std::make_shared<VirtioVsock>(kCid, f.dir.path + "/b.sock", f.loop);
        VirtioMmio mmio2(mem2, vs2, f.irq);
        mmio2.restore(st);
        s.acked_features = kVirtioFVersion1;
        CHECK_THROWS_WITH_AS(vs2->restore(s, "test vmstate: device vsock"),
                             "test vmstate: device vsock: features 0x100000000 differ from the transport's negotiated 0x100000001",
                             DataError);
    }
    SUBCASE("state saved from another kind of device") {
        TlvWriter w;
        w.integer<uint32_t>(1, kVirtioIdBlock);
        CHECK_THROWS_WITH_AS(VsockFixture(f, w.data()),
                             "test vmstate: device vsock: saved from a device with id 2, this machine has virtio-vsock (id 19) here",
                             DataError);
    }
}
