// uffd_handler SOCKET MEM_FILE — an external page-fault handler written to
// Firecracker's documented protocol
// (docs/snapshotting/handling-page-faults-on-snapshot-resume.md), the way a
// Firecracker user would write one, sharing no code with kindling's VMM side:
//
//   1. bind and listen on SOCKET, print "listening SOCKET" on stdout;
//   2. accept one VMM; receive ONE message: a JSON array of
//      {"base_host_virt_addr", "size", "offset", "page_size"} (older Firecracker:
//      "page_size_kib", in bytes) with the userfaultfd attached as SCM_RIGHTS;
//   3. mmap MEM_FILE privately, read-only;
//   4. serve every missing-page fault with UFFDIO_COPY of the page at
//      region.offset + (addr - region.base_host_virt_addr), until the VMM exits
//      (its pid, from SO_PEERCRED, watched through a pidfd; or ESRCH from the
//      ioctl) or SIGTERM/SIGINT;
//   5. print "served N faults, B bytes, E already present" on stdout, exit 0.
// Any protocol error: one line on stderr, exit 1.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

struct Region {
    uint64_t base = 0;
    uint64_t size = 0;
    uint64_t offset = 0;
    uint64_t page_size = 0;
};

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "uffd_handler: %s\n", what.c_str());
    std::exit(1);
}
[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

// Waits up to `ms` for `fd` to become readable (the protocol doc asks handlers to
// time out rather than wait forever for a VMM that crashed before connecting).
void wait_readable(int fd, int ms, const char* what) {
    pollfd p{fd, POLLIN, 0};
    int r;
    do {
        r = ::poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    if (r < 0) die_errno(what);
    if (r == 0) die(std::string("timed out waiting for ") + what);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: uffd_handler SOCKET MEM_FILE\n");
        return 2;
    }
    const std::string sock_path = argv[1];
    const std::string mem_path = argv[2];

    // SIGTERM/SIGINT end the loop through a signalfd so the counters get printed.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) die_errno("signalfd");

    int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0) die_errno("socket");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (sock_path.size() >= sizeof sa.sun_path) die("socket path too long");
    std::memcpy(sa.sun_path, sock_path.c_str(), sock_path.size());
    ::unlink(sock_path.c_str());
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) die_errno("bind " + sock_path);
    if (::listen(lfd, 1) < 0) die_errno("listen");
    std::printf("listening %s\n", sock_path.c_str());
    std::fflush(stdout);

    wait_readable(lfd, 30000, "the VMM to connect");
    int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (cfd < 0) die_errno("accept");
    ::close(lfd);
    ::unlink(sock_path.c_str());

    // The one handshake message: JSON body + the uffd.
    std::string body;
    int uffd = -1;
    for (;;) {
        wait_readable(cfd, 10000, "the handshake");
        char buf[65536];
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl;
        msg.msg_controllen = sizeof ctrl;
        ssize_t n = ::recvmsg(cfd, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            die_errno("recvmsg");
        }
        if (n == 0) die("the VMM closed the connection before the handshake was complete");
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
                std::memcpy(&uffd, CMSG_DATA(cm), sizeof(int));
        }
        if (msg.msg_flags & MSG_CTRUNC) die("handshake: control message truncated");
        body.append(buf, static_cast<size_t>(n));
        if (nlohmann::json::accept(body)) break;  // a stream may deliver the body in parts
    }
    if (uffd < 0) die("handshake: no userfaultfd attached");

    std::vector<Region> regions;
    try {
        for (const auto& j : nlohmann::json::parse(body)) {
            Region r;
            r.base = j.at("base_host_virt_addr").get<uint64_t>();
            r.size = j.at("size").get<uint64_t>();
            r.offset = j.at("offset").get<uint64_t>();
            r.page_size = j.contains("page_size") ? j["page_size"].get<uint64_t>() : j.at("page_size_kib").get<uint64_t>();
            if (r.page_size == 0 || (r.page_size & (r.page_size - 1)) != 0 || r.base % r.page_size != 0 ||
                r.size % r.page_size != 0)
                die("handshake: region at " + std::to_string(r.base) + " is not aligned to its page size");
            regions.push_back(r);
        }
    } catch (const nlohmann::json::exception& e) {
        die(std::string("handshake: bad JSON: ") + e.what());
    }
    if (regions.empty()) die("handshake: no regions");

    int mfd = ::open(mem_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (mfd < 0) die_errno(mem_path);
    struct stat st;
    if (::fstat(mfd, &st) < 0) die_errno(mem_path);
    uint64_t mem_size = static_cast<uint64_t>(st.st_size);
    for (const auto& r : regions) {
        if (r.offset > mem_size || r.size > mem_size - r.offset)
            die(mem_path + ": shorter than the regions the VMM described");
    }
    auto* mem = static_cast<const uint8_t*>(::mmap(nullptr, mem_size, PROT_READ, MAP_PRIVATE, mfd, 0));
    if (mem == MAP_FAILED) die_errno("mmap " + mem_path);

    // Learn when the VMM exits: its pid from the connection, watched via a pidfd.
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (::getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) die_errno("SO_PEERCRED");
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, cred.pid, 0));
    if (pidfd < 0) die_errno("pidfd_open");

    uint64_t faults = 0, bytes = 0, present = 0;
    bool vmm_gone = false;
    pollfd fds[3] = {{uffd, POLLIN, 0}, {pidfd, POLLIN, 0}, {sfd, POLLIN, 0}};
    while (!vmm_gone) {
        int r = ::poll(fds, 3, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            die_errno("poll");
        }
        if (fds[0].revents & POLLIN) {
            uffd_msg msgs[32];
            ssize_t n = ::read(uffd, msgs, sizeof msgs);
            if (n < 0 && errno != EAGAIN && errno != EINTR) die_errno("read uffd");
            for (ssize_t i = 0; n > 0 && i < n / static_cast<ssize_t>(sizeof(uffd_msg)); i++) {
                if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no events were requested
                uint64_t addr = msgs[i].arg.pagefault.address;
                const Region* reg = nullptr;
                for (const auto& rr : regions)
                    if (addr >= rr.base && addr - rr.base < rr.size) reg = &rr;
                if (!reg) die("fault at " + std::to_string(addr) + " outside every region");
                uint64_t page = addr & ~(reg->page_size - 1);
                uffdio_copy c{};
                c.dst = page;
                c.src = reinterpret_cast<uint64_t>(mem + reg->offset + (page - reg->base));
                c.len = reg->page_size;
                for (;;) {
                    if (::ioctl(uffd, UFFDIO_COPY, &c) == 0) {
                        faults++;
                        bytes += reg->page_size;
                        break;
                    }
                    if (errno == EAGAIN) continue;
                    if (errno == EEXIST) {  // already there: make sure the faulting thread runs
                        present++;
                        uffdio_range wr{page, reg->page_size};
                        ::ioctl(uffd, UFFDIO_WAKE, &wr);
                        break;
                    }
                    if (errno == ESRCH) {  // the VMM's address space is gone
                        vmm_gone = true;
                        break;
                    }
                    die_errno("UFFDIO_COPY");
                }
            }
        }
        if (fds[1].revents & POLLIN) vmm_gone = true;
        if (fds[2].revents & POLLIN) break;
    }
    std::printf("served %llu faults, %llu bytes, %llu already present\n", static_cast<unsigned long long>(faults),
                static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(present));
    return 0;
}
