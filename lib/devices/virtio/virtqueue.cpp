#include "devices/virtio/virtqueue.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "base/log.h"
#include "kvm/guest_memory.h"

namespace kindling {

// virtio is little-endian (virtio 1.2 §2.7); we read ring fields in place.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "virtqueue code assumes a little-endian host");

namespace {

// virtio 1.2 §2.7.5 descriptor flags, §2.7.6/§2.7.8 ring flags.
constexpr uint16_t kDescFNext = 1;
constexpr uint16_t kDescFWrite = 2;
constexpr uint16_t kDescFIndirect = 4;
constexpr uint16_t kAvailFNoInterrupt = 1;

constexpr uint64_t kDescSize = 16;

uint16_t load_acquire16(const uint8_t* p) {
    return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}

template <class Buffers>
size_t copy_part(const Buffers& bufs, uint64_t offset, uint8_t* mem, size_t n, bool to_guest) {
    size_t done = 0;
    for (const auto& b : bufs) {
        if (done == n) break;
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        size_t chunk = std::min<uint64_t>(b.len - offset, n - done);
        if (to_guest)
            std::memcpy(b.host + offset, mem + done, chunk);
        else
            std::memcpy(mem + done, b.host + offset, chunk);
        done += chunk;
        offset = 0;
    }
    return done;
}

template <class Buffers>
size_t iov_part(const Buffers& bufs, uint64_t offset, uint64_t n, std::vector<iovec>& out) {
    uint64_t done = 0;
    for (const auto& b : bufs) {
        if (done == n) break;
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        uint64_t chunk = std::min<uint64_t>(b.len - offset, n - done);
        if (chunk) out.push_back({b.host + offset, chunk});
        done += chunk;
        offset = 0;
    }
    return done;
}

}  // namespace

size_t DescriptorChain::read(uint64_t offset, void* out, size_t n) const {
    return copy_part(readable, offset, static_cast<uint8_t*>(out), n, false);
}

size_t DescriptorChain::write(uint64_t offset, const void* in, size_t n) const {
    return copy_part(writable, offset, const_cast<uint8_t*>(static_cast<const uint8_t*>(in)), n, true);
}

size_t DescriptorChain::readable_iov(uint64_t offset, uint64_t n, std::vector<iovec>& out) const {
    return iov_part(readable, offset, n, out);
}

size_t DescriptorChain::writable_iov(uint64_t offset, uint64_t n, std::vector<iovec>& out) const {
    return iov_part(writable, offset, n, out);
}

Virtqueue::Virtqueue(const GuestMemory& mem, std::string device_name, uint16_t index, uint16_t max_size)
    : mem_(mem), device_name_(std::move(device_name)), index_(index), max_size_(max_size) {
    st_.size = max_size;
}

void Virtqueue::fail(const char* fmt, ...) {
    if (failed_) return;
    failed_ = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_warn("%s: queue %u: %s; device needs reset", device_name_.c_str(), index_, msg);
    if (on_failure_) on_failure_();
}

void Virtqueue::reset() {
    st_ = VirtqueueState{};
    st_.size = max_size_;
    started_ = failed_ = indirect_ = pushed_ = false;
    desc_ = avail_ = used_ = nullptr;
}

std::string Virtqueue::layout_error() const {
    const uint16_t n = st_.size;
    char msg[256];
    if (n == 0 || n > max_size_ || (n & (n - 1)) != 0) {
        std::snprintf(msg, sizeof msg, "queue size %u is not a power of two in [1, %u]", n, max_size_);
        return msg;
    }
    // virtio 1.2 §2.7: descriptor table 16-byte aligned, avail ring 2, used ring 4.
    if (st_.desc_addr % 16 || st_.avail_addr % 2 || st_.used_addr % 4) {
        std::snprintf(msg, sizeof msg, "misaligned rings (desc 0x%" PRIx64 ", driver 0x%" PRIx64 ", device 0x%" PRIx64 ")",
                      st_.desc_addr, st_.avail_addr, st_.used_addr);
        return msg;
    }
    if (!mem_.contains(st_.desc_addr, kDescSize * n) || !mem_.contains(st_.avail_addr, 6 + 2ull * n) ||
        !mem_.contains(st_.used_addr, 6 + 8ull * n)) {
        std::snprintf(msg, sizeof msg,
                      "rings outside guest memory (desc 0x%" PRIx64 ", driver 0x%" PRIx64 ", device 0x%" PRIx64 ", size %u)",
                      st_.desc_addr, st_.avail_addr, st_.used_addr, n);
        return msg;
    }
    return {};
}

bool Virtqueue::start(bool indirect_desc) {
    started_ = false;
    if (failed_) return false;
    if (!st_.ready) return true;
    if (std::string why = layout_error(); !why.empty()) {
        fail("%s", why.c_str());
        return false;
    }
    const uint16_t n = st_.size;
    desc_ = mem_.host_ptr(st_.desc_addr, kDescSize * n);
    avail_ = mem_.host_ptr(st_.avail_addr, 6 + 2ull * n);
    used_ = mem_.host_ptr(st_.used_addr, 6 + 8ull * n);
    indirect_ = indirect_desc;
    started_ = true;
    return true;
}

uint16_t Virtqueue::avail_index() const { return started_ ? load_acquire16(avail_ + 2) : 0; }

bool Virtqueue::has_available() {
    if (!started_ || failed_) return false;
    uint16_t idx = load_acquire16(avail_ + 2);
    uint16_t pending = static_cast<uint16_t>(idx - st_.next_avail);
    if (pending > st_.size) {
        // The driver owns at most `size` descriptors, so it can never be further ahead.
        fail("available index jumped from %u to %u (queue size %u)", st_.next_avail, idx, st_.size);
        return false;
    }
    return pending != 0;
}

bool Virtqueue::add_buffer(DescriptorChain& chain, const Desc& d, uint32_t idx, bool in_indirect,
                           bool& seen_writable) {
    const char* where = in_indirect ? "indirect descriptor" : "descriptor";
    if (d.len > kMaxChainBytes) {
        fail("%s %u has an absurd length (addr 0x%" PRIx64 ", len %u)", where, idx, d.addr, d.len);
        return false;
    }
    uint8_t* host = mem_.host_ptr(d.addr, d.len);
    if (!host) {
        fail("%s %u points outside guest memory (addr 0x%" PRIx64 ", len %u)", where, idx, d.addr, d.len);
        return false;
    }
    if (d.flags & kDescFWrite) {
        seen_writable = true;
        chain.writable.push_back({host, d.len});
        chain.writable_bytes += d.len;
    } else {
        // virtio 1.2 §2.7.4.2: device-readable buffers come before device-writable ones.
        if (seen_writable) {
            fail("%s %u is device-readable but follows a device-writable one", where, idx);
            return false;
        }
        chain.readable.push_back({host, d.len});
        chain.readable_bytes += d.len;
    }
    if (chain.readable_bytes + chain.writable_bytes > kMaxChainBytes) {
        fail("descriptor chain at head %u describes more than %" PRIu64 " bytes", chain.head, kMaxChainBytes);
        return false;
    }
    return true;
}

bool Virtqueue::walk_indirect(DescriptorChain& chain, const Desc& d, uint16_t idx, bool& seen_writable) {
    // virtio 1.2 §2.7.5.3: a table of descriptors in guest memory; no nesting, and
    // the descriptor pointing at it has no NEXT.
    if (!indirect_) {
        fail("descriptor %u is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated", idx);
        return false;
    }
    if (d.flags & kDescFNext) {
        fail("descriptor %u sets both INDIRECT and NEXT", idx);
        return false;
    }
    if (d.len == 0 || d.len % kDescSize != 0 || d.len / kDescSize > kMaxIndirect) {
        fail("descriptor %u: indirect table length %u is not a multiple of 16 in [16, %u]", idx, d.len,
             static_cast<unsigned>(kDescSize * kMaxIndirect));
        return false;
    }
    const uint8_t* table = mem_.host_ptr(d.addr, d.len);
    if (!table) {
        fail("descriptor %u: indirect table outside guest memory (addr 0x%" PRIx64 ", len %u)", idx, d.addr, d.len);
        return false;
    }
    uint32_t n = d.len / kDescSize;
    uint32_t i = 0;
    for (uint32_t count = 1;; ++count) {
        if (count > n) {
            fail("indirect table of descriptor %u loops (more than %u entries)", idx, n);
            return false;
        }
        Desc e;
        std::memcpy(&e, table + kDescSize * i, sizeof e);
        if (e.flags & kDescFIndirect) {
            fail("indirect descriptor %u in the table of descriptor %u is itself indirect", i, idx);
            return false;
        }
        if (!add_buffer(chain, e, i, true, seen_writable)) return false;
        if (!(e.flags & kDescFNext)) return true;
        if (e.next >= n) {
            fail("indirect descriptor %u: next %u is outside the table of %u", i, e.next, n);
            return false;
        }
        i = e.next;
    }
}

bool Virtqueue::pop(DescriptorChain& chain) {
    chain.clear();
    if (!has_available()) return false;
    const uint16_t n = st_.size;
    // The acquire load in has_available() orders this read after the driver's write.
    uint16_t head;
    std::memcpy(&head, avail_ + 4 + 2 * (st_.next_avail % n), sizeof head);
    if (head >= n) {
        fail("available ring entry %u names descriptor %u (queue size %u)", st_.next_avail % n, head, n);
        return false;
    }
    chain.head = head;
    bool seen_writable = false;
    uint16_t idx = head;
    for (uint32_t count = 1;; ++count) {
        if (count > n) {
            fail("descriptor chain at head %u is longer than the queue (%u): it loops", head, n);
            return false;
        }
        Desc d;
        std::memcpy(&d, desc_ + kDescSize * idx, sizeof d);  // one copy, then only the copy is trusted
        if (d.flags & kDescFIndirect) {
            if (!walk_indirect(chain, d, idx, seen_writable)) return false;
            break;
        }
        if (!add_buffer(chain, d, idx, false, seen_writable)) return false;
        if (!(d.flags & kDescFNext)) break;
        if (d.next >= n) {
            fail("descriptor %u: next %u is outside the queue (size %u)", idx, d.next, n);
            return false;
        }
        idx = d.next;
    }
    ++st_.next_avail;
    return true;
}

void Virtqueue::undo_pop() { --st_.next_avail; }

void Virtqueue::push(uint16_t head, uint32_t written) {
    if (!started_ || failed_) return;
    uint8_t* elem = used_ + 4 + 8 * (st_.next_used % st_.size);
    uint32_t id = head;
    std::memcpy(elem, &id, 4);
    std::memcpy(elem + 4, &written, 4);
    ++st_.next_used;
    // virtio 1.2 §2.7.8: the element must be visible before the index that covers it.
    __atomic_store_n(reinterpret_cast<uint16_t*>(used_ + 2), st_.next_used, __ATOMIC_RELEASE);
    pushed_ = true;
}

bool Virtqueue::take_notify_needed() {
    if (!pushed_ || !started_ || failed_) return false;
    pushed_ = false;
    // Our used-index store must be visible before we read the driver's flag, or we
    // could miss an interrupt the driver asked for after seeing the old index.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t flags = load_acquire16(avail_);
    return !(flags & kAvailFNoInterrupt);
}

}  // namespace kindling
