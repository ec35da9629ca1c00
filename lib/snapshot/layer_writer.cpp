#include "snapshot/layer_writer.h"

#include <emmintrin.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"
#include "snapshot/dirty_bitmap.h"

namespace kindling {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kPage = kSnapshotPageSize;

std::string random_id() {
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = ::getrandom(b + got, sizeof b - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("getrandom");
        }
        got += static_cast<size_t>(r);
    }
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (uint8_t c : b) {
        s += hex[c >> 4];
        s += hex[c & 15];
    }
    return s;
}

bool page_is_zero(const uint8_t* p) {
    // Most non-zero pages differ from zero in their first bytes; check those cheaply,
    // then the page 256 bytes at a time (SSE2 is the x86-64 baseline).
    uint64_t first;
    std::memcpy(&first, p, 8);
    if (first) return false;
    const __m128i zero = _mm_setzero_si128();
    for (size_t off = 0; off < kPage; off += 256) {
        const auto* v = reinterpret_cast<const __m128i*>(p + off);
        __m128i acc = _mm_or_si128(_mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + 0), _mm_loadu_si128(v + 1)),
                                                _mm_or_si128(_mm_loadu_si128(v + 2), _mm_loadu_si128(v + 3))),
                                   _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + 4), _mm_loadu_si128(v + 5)),
                                                _mm_or_si128(_mm_loadu_si128(v + 6), _mm_loadu_si128(v + 7))));
        __m128i acc2 = _mm_or_si128(_mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + 8), _mm_loadu_si128(v + 9)),
                                                 _mm_or_si128(_mm_loadu_si128(v + 10), _mm_loadu_si128(v + 11))),
                                    _mm_or_si128(_mm_or_si128(_mm_loadu_si128(v + 12), _mm_loadu_si128(v + 13)),
                                                 _mm_or_si128(_mm_loadu_si128(v + 14), _mm_loadu_si128(v + 15))));
        acc = _mm_or_si128(acc, acc2);
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(acc, zero)) != 0xffff) return false;
    }
    return true;
}

// Writes runs of pages to the mem file and keeps the CRC32C of the whole logical
// file (holes count as zeros, added in O(log n) by crc32c_extend_zeros).
class MemWriter {
public:
    MemWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

    // Page `page` (file offset page*4096) with its bytes at `host`.  Pages must come
    // in increasing order.
    void add(uint64_t page, const uint8_t* host) {
        if (run_pages_ && page == run_first_ + run_pages_ && host == run_host_ + run_pages_ * kPage) {
            ++run_pages_;
            return;
        }
        flush();
        run_first_ = page;
        run_host_ = host;
        run_pages_ = 1;
    }
    void flush() {
        if (!run_pages_) return;
        const uint64_t off = run_first_ * kPage, len = run_pages_ * kPage;
        crc_ = crc32c_extend_zeros(crc_, off - crc_pos_);
        crc_ = crc32c(crc_, run_host_, len);
        crc_pos_ = off + len;
        pwrite_full(fd_, run_host_, len, static_cast<off_t>(off), path_);
        data_bytes_ += len;
        run_pages_ = 0;
    }
    uint32_t finish(uint64_t file_size) {
        flush();
        crc_ = crc32c_extend_zeros(crc_, file_size - crc_pos_);
        crc_pos_ = file_size;
        return crc_;
    }
    uint64_t data_bytes() const { return data_bytes_; }

private:
    int fd_;
    std::string path_;
    uint64_t run_first_ = 0, run_pages_ = 0;
    const uint8_t* run_host_ = nullptr;
    uint32_t crc_ = 0;
    uint64_t crc_pos_ = 0;
    uint64_t data_bytes_ = 0;
};

// The guest pages of one RAM region, in file (guest-page) order.
struct RegionPages {
    uint64_t first_page;
    uint64_t pages;
    const uint8_t* host;
    std::vector<unsigned char> resident;  // mincore(), only with kSkipNonResident
};

std::vector<RegionPages> region_pages(const GuestMemory& mem, MemScan scan) {
    std::vector<RegionPages> out;
    uint64_t first = 0;
    for (const auto& r : mem.regions()) {
        RegionPages rp{first, r.size / kPage, r.host, {}};
        if (scan == MemScan::kSkipNonResident && ::sysconf(_SC_PAGESIZE) == static_cast<long>(kPage)) {
            rp.resident.resize(rp.pages);
            if (::mincore(r.host, r.size, rp.resident.data()) < 0) rp.resident.clear();  // fall back to reading
        }
        first += rp.pages;
        out.push_back(std::move(rp));
    }
    return out;
}

void scan_page(const RegionPages& rp, uint64_t i, MemWriter& w) {
    if (!rp.resident.empty() && !(rp.resident[i] & 1)) return;  // never faulted in: zero
    const uint8_t* p = rp.host + i * kPage;
    if (!page_is_zero(p)) w.add(rp.first_page + i, p);
}

// A directory being written: DIR.tmp.XXXXXX, removed again unless commit() ran.
class TempLayerDir {
public:
    TempLayerDir(const std::string& dir, const WriteOptions& opts) : final_(dir), opts_(opts) {
        std::string tmpl = dir + ".tmp.XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw_errno("create " + tmpl);
        tmp_ = tmpl;
    }
    ~TempLayerDir() {
        if (!tmp_.empty()) {
            std::error_code ec;
            fs::remove_all(tmp_, ec);
        }
    }
    const std::string& path() const { return tmp_; }

    UniqueFd create(const std::string& name) { return open_file(tmp_ + "/" + name, O_WRONLY | O_CREAT | O_EXCL, 0644); }
    void finish_file(UniqueFd& fd, const std::string& name) {
        if (opts_.fsync && ::fsync(fd.get()) < 0) throw_errno("fsync " + tmp_ + "/" + name);
        if (::close(fd.release()) < 0) throw_errno("close " + tmp_ + "/" + name);
    }
    void write(const std::string& name, const void* data, size_t n) {
        UniqueFd fd = create(name);
        write_full(fd.get(), data, n, tmp_ + "/" + name);
        finish_file(fd, name);
    }

    void commit() {
        if (opts_.fsync) fsync_dir(tmp_);
        if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_NOREPLACE) < 0) {
            if (errno == EEXIST && opts_.replace) {
                // Swap atomically, then delete the old layer (now at the temp name).
                if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) < 0)
                    throw_errno("rename " + tmp_ + " to " + final_);
            } else if (errno == EEXIST) {
                throw SysError(final_ + ": cannot write the snapshot", EEXIST);
            } else if (errno == EINVAL && !fs::exists(final_)) {
                // A filesystem without renameat2 flags.
                if (::rename(tmp_.c_str(), final_.c_str()) < 0) throw_errno("rename " + tmp_ + " to " + final_);
                tmp_.clear();
            } else {
                throw_errno("rename " + tmp_ + " to " + final_);
            }
        } else {
            tmp_.clear();
        }
        if (opts_.fsync) fsync_dir(dirname_of(final_));
        // After RENAME_EXCHANGE tmp_ holds the old layer; the destructor removes it.
    }

private:
    std::string final_;
    std::string tmp_;
    const WriteOptions& opts_;
};

void check_config(const LayerConfig& cfg, const GuestMemory& mem) {
    if (cfg.mem_size_mib == 0 || (cfg.mem_size_mib << 20) != mem.size())
        throw UsageError("snapshot: machine config says " + std::to_string(cfg.mem_size_mib) + " MiB but guest memory is " +
                         std::to_string(mem.size()) + " bytes");
    if (cfg.vcpu_count < 1 || cfg.vcpu_count > kVmstateMaxVcpus)
        throw UsageError("snapshot: vCPU count " + std::to_string(cfg.vcpu_count) + " is out of range");
}

// The parts both writers share.  `write_mem` fills the mem file and returns its CRC.
template <class WriteMem>
LayerInfo write_layer(const std::string& dir, LayerInfo info, std::span<const uint8_t> vmstate,
                      const std::optional<std::vector<uint64_t>>& bitmap, const WriteOptions& opts,
                      WriteMem&& write_mem) {
    std::string clean = dir;
    while (clean.size() > 1 && clean.back() == '/') clean.pop_back();
    TempLayerDir tmp(clean, opts);
    {
        UniqueFd fd = tmp.create("mem");
        if (::ftruncate(fd.get(), static_cast<off_t>(info.mem_size())) < 0) throw_errno("truncate " + tmp.path() + "/mem");
        MemWriter w(fd.get(), tmp.path() + "/mem");
        write_mem(w);
        info.mem = {info.mem_size(), w.finish(info.mem_size())};
        info.mem_data_bytes = w.data_bytes();
        tmp.finish_file(fd, "mem");
    }
    tmp.write("vmstate", vmstate.data(), vmstate.size());
    info.vmstate = {vmstate.size(), crc32c(0, vmstate.data(), vmstate.size())};
    if (bitmap) {
        std::string b = encode_page_bitmap(*bitmap);
        tmp.write("mem.bitmap", b.data(), b.size());
        info.bitmap = FileSummary{b.size(), crc32c(0, b.data(), b.size())};
    }
    std::string text = encode_layer_json(info);
    tmp.write("snapshot.json", text.data(), text.size());
    tmp.commit();
    return info;
}

}  // namespace

LayerInfo write_full_layer(const std::string& dir, const LayerConfig& cfg, std::span<const uint8_t> vmstate,
                           const GuestMemory& mem, const WriteOptions& opts) {
    check_config(cfg, mem);
    LayerInfo info;
    info.id = random_id();
    info.kind = LayerKind::kFull;
    info.config = cfg;
    for (DriveConfig& d : info.config.drives) d.path_on_host = layer_reference(dir, d.path_on_host, "drive " + d.drive_id);
    return write_layer(dir, std::move(info), vmstate, std::nullopt, opts, [&](MemWriter& w) {
        for (const RegionPages& rp : region_pages(mem, opts.scan))
            for (uint64_t i = 0; i < rp.pages; ++i) scan_page(rp, i, w);
    });
}

LayerInfo write_diff_layer(const std::string& dir, const LayerConfig& cfg, const std::string& parent_dir,
                           std::span<const uint8_t> vmstate, const GuestMemory& mem,
                           std::span<const uint64_t> dirty, const WriteOptions& opts) {
    check_config(cfg, mem);
    const uint64_t pages = mem.size() / kPage;
    if (dirty.size() != (pages + 63) / 64)
        throw UsageError("snapshot: dirty bitmap of " + std::to_string(dirty.size()) + " words for " +
                         std::to_string(pages) + " pages");
    if (pages % 64 && (dirty.back() >> (pages % 64)))
        throw UsageError("snapshot: dirty bitmap has bits beyond the machine's " + std::to_string(pages) + " pages");

    LayerInfo parent = read_layer_info(parent_dir);
    if (parent.config.mem_size_mib != cfg.mem_size_mib || parent.config.vcpu_count != cfg.vcpu_count ||
        parent.config.machine_kind != cfg.machine_kind)
        throw UsageError("snapshot: parent layer " + parent_dir + " is a different machine (" +
                         machine_kind_name(parent.config.machine_kind) + ", " + std::to_string(parent.config.vcpu_count) +
                         " vCPUs, " + std::to_string(parent.config.mem_size_mib) + " MiB)");

    LayerInfo info;
    info.id = random_id();
    info.kind = LayerKind::kDiff;
    info.config = cfg;
    for (DriveConfig& d : info.config.drives) d.path_on_host = layer_reference(dir, d.path_on_host, "drive " + d.drive_id);
    // Relative to the new layer, so a tree of layers can move as a whole.
    info.parent = ParentRef{layer_reference(dir, parent_dir, "parent layer"), parent.id};

    std::vector<uint64_t> bits(dirty.begin(), dirty.end());
    return write_layer(dir, std::move(info), vmstate, bits, opts, [&](MemWriter& w) {
        for (const RegionPages& rp : region_pages(mem, MemScan::kReadAll)) {
            // A dirty page is always read: the guest wrote it, even if it is now zero.
            for (uint64_t i = 0; i < rp.pages; ++i) {
                const uint64_t p = rp.first_page + i;
                uint64_t word = dirty[p / 64];
                if (!word) {  // skip a clean word at once
                    i += 63 - p % 64;
                    continue;
                }
                if (!(word >> (p % 64) & 1)) continue;
                const uint8_t* host = rp.host + i * kPage;
                if (!page_is_zero(host)) w.add(p, host);
            }
        }
    });
}

}  // namespace kindling
