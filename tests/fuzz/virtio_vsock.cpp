// virtio-vsock (lib/devices/virtio: virtio_vsock, vsock_packet, vsock_connection,
// vsock_muxer) driven by a hostile guest (guest.h) on its rx/tx/event queues, while
// the host side connects to the device's socket ("CONNECT <port>\n" + data), accepts
// the guest's connections to "<uds>_52", sends, and closes — all from the input.
// The EventLoop runs on this thread (run_once), as on a nano guest's vCPU thread.
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/event_loop.h"
#include "base/fd.h"
#include "base/unix_socket.h"
#include "devices/virtio/virtio_vsock.h"
#include "tests/fuzz/guest.h"

using namespace kindling;

namespace {

struct Host {
    std::string uds;
    UnixListener* guest_port;  // "<uds>_52": where guest-initiated connections land
    std::vector<UniqueFd> fds;

    void move(fuzz::Input& in, EventLoop& loop) {
        switch (in.take<uint8_t>() % 5) {
        case 0: loop.run_once(0); break;
        case 1: {  // a host client
            int err = 0;
            UniqueFd fd = try_connect_unix(uds, &err, SOCK_NONBLOCK);
            if (!fd) break;
            std::string hello = "CONNECT " + std::to_string(in.take<uint8_t>() % 4 ? 9000 : in.take<uint32_t>()) + "\n";
            (void)::send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (fds.size() < 16) fds.push_back(std::move(fd));
            break;
        }
        case 2: {  // accept what the guest connected to port 52
            UniqueFd fd(::accept4(guest_port->fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (fd && fds.size() < 16) fds.push_back(std::move(fd));
            break;
        }
        case 3: {  // send bytes on a host socket, or read what is there
            if (fds.empty()) break;
            int fd = fds[in.take<uint8_t>() % fds.size()].get();
            auto b = in.bytes(in.take<uint16_t>() % 8192);
            if (!b.empty()) (void)::send(fd, b.data(), b.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            char buf[4096];
            (void)::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            break;
        }
        case 4:  // close one
            if (!fds.empty()) fds.erase(fds.begin() + in.take<uint8_t>() % fds.size());
            break;
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static fuzz::TempDir* dir = (fuzz::quiet(), new fuzz::TempDir);
    static UnixListener* port52 = new UnixListener(listen_unix(dir->path + "/v.sock_52", "fuzz port 52", SOCK_NONBLOCK));
    fuzz::Input in(data, size);
    GuestMemory mem(fuzz::Guest::kMemSize);
    CountingInterrupt irq;
    EventLoop loop;
    {
        Host host{dir->path + "/v.sock", port52, {}};
        auto vsock = std::make_shared<VirtioVsock>(3, host.uds, loop);
        VirtioMmio mmio(mem, vsock, irq);
        fuzz::Guest guest(mem, mmio, 3);
        guest.run(in, [&](fuzz::Input& i) { host.move(i, loop); });
        host.fds.clear();
    }
    // Drain what the guest left on port 52's backlog for the next input.
    while (UniqueFd fd{::accept4(port52->fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)}) {
    }
    return 0;
}
