#include "snapshot/snapshot_dir.h"

#include <emmintrin.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "base/byte_order.h"
#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"

namespace kindling {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kPage = kSnapshotPageSize;

std::string hex32(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08" PRIx32, v);
    return b;
}

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

json summary_json(const FileSummary& f) { return json{{"size", f.size}, {"crc32c", f.crc32c}}; }

json layer_json(const LayerInfo& l) {
    json j;
    j["format_version"] = l.format_version;
    j["id"] = l.id;
    j["kind"] = l.kind == LayerKind::kFull ? "full" : "diff";
    j["machine"] = {{"kind", machine_kind_name(l.config.machine_kind)},
                    {"vcpu_count", l.config.vcpu_count},
                    {"mem_size_mib", l.config.mem_size_mib}};
    json dev;
    if (l.config.vsock)
        dev["vsock"] = {{"guest_cid", l.config.vsock->guest_cid}, {"uds_path", l.config.vsock->uds_path}};
    else
        dev["vsock"] = nullptr;
    dev["drives"] = json::array();
    for (const auto& d : l.config.drives)
        dev["drives"].push_back({{"drive_id", d.drive_id},
                                 {"path_on_host", d.path_on_host},
                                 {"is_root_device", d.is_root_device},
                                 {"is_read_only", d.is_read_only}});
    j["devices"] = dev;
    j["parent"] = l.parent ? json{{"path", l.parent->path}, {"id", l.parent->id}} : json(nullptr);
    j["tags"] = l.config.tags;
    json files;
    files["vmstate"] = summary_json(l.vmstate);
    files["mem"] = summary_json(l.mem);
    files["mem"]["data_bytes"] = l.mem_data_bytes;
    if (l.bitmap) files["mem.bitmap"] = summary_json(*l.bitmap);
    j["files"] = files;
    return j;
}

// Typed access to snapshot.json with "FILE: field X: ..." errors.
class JsonReader {
public:
    explicit JsonReader(std::string file) : file_(std::move(file)) {}
    [[noreturn]] void fail(const std::string& field, const std::string& msg) const {
        throw DataError(file_ + ": " + field + ": " + msg);
    }
    const json& at(const json& j, const char* key, const std::string& field) const {
        if (!j.is_object() || !j.contains(key)) fail(field, "missing");
        return j.at(key);
    }
    uint64_t u64(const json& j, const char* key, const std::string& field) const {
        const json& v = at(j, key, field);
        if (!v.is_number_unsigned()) fail(field, "not an unsigned integer");
        return v.get<uint64_t>();
    }
    uint32_t u32(const json& j, const char* key, const std::string& field) const {
        uint64_t v = u64(j, key, field);
        if (v > UINT32_MAX) fail(field, std::to_string(v) + " is out of range");
        return static_cast<uint32_t>(v);
    }
    std::string str(const json& j, const char* key, const std::string& field) const {
        const json& v = at(j, key, field);
        if (!v.is_string()) fail(field, "not a string");
        return v.get<std::string>();
    }
    bool boolean(const json& j, const char* key, const std::string& field) const {
        const json& v = at(j, key, field);
        if (!v.is_boolean()) fail(field, "not a boolean");
        return v.get<bool>();
    }
    FileSummary summary(const json& j, const char* key, const std::string& field) const {
        const json& v = at(j, key, field);
        return {u64(v, "size", field + ".size"), u32(v, "crc32c", field + ".crc32c")};
    }

private:
    std::string file_;
};

bool valid_id(const std::string& s) {
    return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

LayerInfo parse_layer_json(const std::string& file, const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        auto p = what.find("] ");
        throw DataError(file + ": invalid JSON: " + (p == std::string::npos ? what : what.substr(p + 2)));
    }
    JsonReader r(file);
    if (!j.is_object()) r.fail("top level", "not an object");
    LayerInfo l;
    l.format_version = r.u32(j, "format_version", "format_version");
    if (l.format_version != kSnapshotFormatVersion)
        throw DataError(file + ": snapshot format version " + std::to_string(l.format_version) +
                        " is not supported (this kindling reads version " + std::to_string(kSnapshotFormatVersion) + ")");
    l.id = r.str(j, "id", "id");
    if (!valid_id(l.id)) r.fail("id", "\"" + l.id + "\" is not 32 lowercase hex digits");
    std::string kind = r.str(j, "kind", "kind");
    if (kind == "full") l.kind = LayerKind::kFull;
    else if (kind == "diff") l.kind = LayerKind::kDiff;
    else r.fail("kind", "\"" + kind + "\" is neither \"full\" nor \"diff\"");

    const json& m = r.at(j, "machine", "machine");
    std::string mk = r.str(m, "kind", "machine.kind");
    if (mk == "nano") l.config.machine_kind = MachineKind::kNano;
    else if (mk == "linux") l.config.machine_kind = MachineKind::kLinux;
    else r.fail("machine.kind", "\"" + mk + "\" is neither \"nano\" nor \"linux\"");
    l.config.vcpu_count = r.u32(m, "vcpu_count", "machine.vcpu_count");
    if (l.config.vcpu_count < 1 || l.config.vcpu_count > kVmstateMaxVcpus)
        r.fail("machine.vcpu_count", std::to_string(l.config.vcpu_count) + " is out of range");
    l.config.mem_size_mib = r.u64(m, "mem_size_mib", "machine.mem_size_mib");
    if (l.config.mem_size_mib < 1 || l.config.mem_size_mib > (1ull << 24))
        r.fail("machine.mem_size_mib", std::to_string(l.config.mem_size_mib) + " is out of range");

    const json& d = r.at(j, "devices", "devices");
    const json& vs = r.at(d, "vsock", "devices.vsock");
    if (!vs.is_null())
        l.config.vsock = VsockConfig{r.u32(vs, "guest_cid", "devices.vsock.guest_cid"),
                                     r.str(vs, "uds_path", "devices.vsock.uds_path")};
    const json& drives = r.at(d, "drives", "devices.drives");
    if (!drives.is_array()) r.fail("devices.drives", "not an array");
    for (size_t i = 0; i < drives.size(); ++i) {
        std::string f = "devices.drives[" + std::to_string(i) + "]";
        l.config.drives.push_back({r.str(drives[i], "drive_id", f + ".drive_id"),
                                   r.str(drives[i], "path_on_host", f + ".path_on_host"),
                                   r.boolean(drives[i], "is_root_device", f + ".is_root_device"),
                                   r.boolean(drives[i], "is_read_only", f + ".is_read_only")});
    }
    const json& tags = r.at(j, "tags", "tags");
    if (!tags.is_array()) r.fail("tags", "not an array");
    for (const auto& t : tags) {
        if (!t.is_string()) r.fail("tags", "not an array of strings");
        l.config.tags.push_back(t.get<std::string>());
    }

    const json& p = r.at(j, "parent", "parent");
    if (!p.is_null()) {
        l.parent = ParentRef{r.str(p, "path", "parent.path"), r.str(p, "id", "parent.id")};
        if (l.parent->path.empty()) r.fail("parent.path", "empty");
        if (!valid_id(l.parent->id)) r.fail("parent.id", "\"" + l.parent->id + "\" is not 32 lowercase hex digits");
    }
    if (l.kind == LayerKind::kDiff && !l.parent) r.fail("parent", "a diff layer needs a parent");
    if (l.kind == LayerKind::kFull && l.parent) r.fail("parent", "a full layer has no parent");

    const json& files = r.at(j, "files", "files");
    l.vmstate = r.summary(files, "vmstate", "files.vmstate");
    l.mem = r.summary(files, "mem", "files.mem");
    l.mem_data_bytes = r.u64(r.at(files, "mem", "files.mem"), "data_bytes", "files.mem.data_bytes");
    if (l.mem.size != l.mem_size())
        r.fail("files.mem.size", std::to_string(l.mem.size) + " is not the machine's memory size " + std::to_string(l.mem_size()));
    if (l.kind == LayerKind::kDiff) l.bitmap = r.summary(files, "mem.bitmap", "files.mem.bitmap");
    else if (files.contains("mem.bitmap")) r.fail("files.mem.bitmap", "a full layer has no bitmap");
    if (l.bitmap && l.bitmap->size != (l.page_count() + 63) / 64 * 8)
        r.fail("files.mem.bitmap.size", std::to_string(l.bitmap->size) + " bytes, the machine needs " +
                                            std::to_string((l.page_count() + 63) / 64 * 8));
    return l;
}

struct Stat {
    bool exists = false;
    uint64_t size = 0;
};

Stat stat_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) return {};
        throw_errno(path);
    }
    if (!S_ISREG(st.st_mode)) throw DataError(path + ": not a regular file");
    return {true, static_cast<uint64_t>(st.st_size)};
}

std::vector<uint64_t> read_bitmap(const std::string& dir, const LayerInfo& l) {
    const std::string path = dir + "/mem.bitmap";
    std::vector<uint8_t> b = read_file_bytes(path);
    if (b.size() != l.bitmap->size)
        throw DataError(path + ": " + std::to_string(b.size()) + " bytes, snapshot.json says " + std::to_string(l.bitmap->size));
    uint32_t crc = crc32c(0, b.data(), b.size());
    if (crc != l.bitmap->crc32c)
        throw DataError(path + ": CRC32C mismatch (snapshot.json " + hex32(l.bitmap->crc32c) + ", file " + hex32(crc) + ")");
    std::vector<uint64_t> words(b.size() / 8);
    for (size_t i = 0; i < words.size(); ++i) words[i] = load_le<uint64_t>(&b[i * 8]);
    const uint64_t pages = l.page_count();
    if (pages % 64 && !words.empty() && (words.back() >> (pages % 64)))
        throw DataError(path + ": bits set beyond the machine's " + std::to_string(pages) + " pages");
    return words;
}

std::string bitmap_bytes(std::span<const uint64_t> words) {
    std::string out;
    out.reserve(words.size() * 8);
    for (uint64_t w : words) append_le(out, w);
    return out;
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
        std::string b = bitmap_bytes(*bitmap);
        tmp.write("mem.bitmap", b.data(), b.size());
        info.bitmap = FileSummary{b.size(), crc32c(0, b.data(), b.size())};
    }
    std::string text = layer_json(info).dump(2) + "\n";
    tmp.write("snapshot.json", text.data(), text.size());
    tmp.commit();
    return info;
}

// The parent's directory as the kernel resolves it (symlinks and ".." physically),
// which is also how write_diff_layer computed the relative path.
std::string resolve_parent(const std::string& dir, const std::string& stored) {
    fs::path p = !stored.empty() && stored[0] == '/' ? fs::path(stored) : fs::path(dir) / stored;
    std::error_code ec;
    fs::path c = fs::weakly_canonical(p, ec);
    return ec ? p.lexically_normal().string() : c.string();
}

}  // namespace

void DirtyBitmap::add_slot_log(uint64_t first_page, std::span<const uint64_t> slot_bits, uint64_t slot_pages) {
    if (first_page > pages_ || slot_pages > pages_ - first_page || slot_bits.size() * 64 < slot_pages)
        throw Error("DirtyBitmap: slot of " + std::to_string(slot_pages) + " pages at page " + std::to_string(first_page) +
                    " does not fit " + std::to_string(pages_) + " pages");
    for (uint64_t w = 0; w < (slot_pages + 63) / 64; ++w) {
        uint64_t bits = slot_bits[w];
        if (w == slot_pages / 64) bits &= (1ull << (slot_pages % 64)) - 1;  // last partial word
        while (bits) {
            int b = __builtin_ctzll(bits);
            set(first_page + w * 64 + static_cast<uint64_t>(b));
            bits &= bits - 1;
        }
    }
}

LayerInfo write_full_layer(const std::string& dir, const LayerConfig& cfg, std::span<const uint8_t> vmstate,
                           const GuestMemory& mem, const WriteOptions& opts) {
    check_config(cfg, mem);
    LayerInfo info;
    info.id = random_id();
    info.kind = LayerKind::kFull;
    info.config = cfg;
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
    // Stored relative to the new layer, so a tree of layers can move as a whole.  Both
    // sides are resolved through symlinks first, as the kernel will resolve them.
    std::error_code ec;
    fs::path self = fs::weakly_canonical(fs::absolute(dir), ec);
    fs::path base = ec ? fs::path() : fs::weakly_canonical(fs::absolute(parent_dir), ec);
    fs::path rel = ec ? fs::path() : base.lexically_relative(self);
    std::string stored = rel.empty() ? fs::absolute(parent_dir).lexically_normal().string() : rel.string();
    info.parent = ParentRef{stored, parent.id};

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

LayerInfo read_layer_info(const std::string& dir) {
    const std::string json_path = dir + "/snapshot.json";
    LayerInfo l = parse_layer_json(json_path, read_file(json_path));
    Stat vs = stat_file(dir + "/vmstate");
    if (!vs.exists) throw DataError(dir + "/vmstate is missing");
    if (vs.size != l.vmstate.size)
        throw DataError(dir + "/vmstate: " + std::to_string(vs.size) + " bytes, snapshot.json says " + std::to_string(l.vmstate.size));
    Stat ms = stat_file(dir + "/mem");
    if (!ms.exists) throw DataError(dir + "/mem is missing");
    if (ms.size < l.mem_size())
        throw DataError(dir + "/mem is shorter than the machine's memory: " + std::to_string(ms.size) + " < " +
                        std::to_string(l.mem_size()) + " bytes");
    if (ms.size > l.mem_size())
        throw DataError(dir + "/mem is longer than the machine's memory: " + std::to_string(ms.size) + " > " +
                        std::to_string(l.mem_size()) + " bytes");
    if (l.kind == LayerKind::kDiff) {
        Stat bs = stat_file(dir + "/mem.bitmap");
        if (!bs.exists) throw DataError(dir + "/mem.bitmap is missing (a diff layer needs it)");
    }
    return l;
}

LayerStack LayerStack::open(const std::string& top_dir) {
    LayerStack st;
    std::set<std::string> ids;
    std::string dir = top_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::vector<std::vector<uint64_t>> bitmaps;
    for (;;) {
        LayerInfo info;
        if (st.layers_.empty()) {
            info = read_layer_info(dir);
        } else {
            const Layer& child = st.layers_.back();
            const std::string where = child.dir + "/snapshot.json: parent layer " + dir;
            try {
                info = read_layer_info(dir);
            } catch (const SysError& e) {
                if (e.err() == ENOENT || e.err() == ENOTDIR) throw DataError(where + " is missing (" + e.what() + ")");
                throw;
            }
            if (info.id != child.info.parent->id)
                throw DataError(where + " has id " + info.id + ", expected " + child.info.parent->id +
                                " (was it replaced or rewritten?)");
            const LayerConfig &a = st.layers_.front().info.config, &b = info.config;
            if (a.mem_size_mib != b.mem_size_mib || a.vcpu_count != b.vcpu_count || a.machine_kind != b.machine_kind)
                throw DataError(where + " describes a different machine (" + std::to_string(b.mem_size_mib) + " MiB, " +
                                std::to_string(b.vcpu_count) + " vCPUs, " + machine_kind_name(b.machine_kind) + ")");
        }
        if (!ids.insert(info.id).second) throw DataError(dir + "/snapshot.json: layer " + info.id + " appears twice in its own stack");
        if (st.layers_.size() == kMaxLayerDepth)
            throw DataError(top_dir + ": more than " + std::to_string(kMaxLayerDepth) + " layers");
        Layer layer{dir, info, open_file(dir + "/mem", O_RDONLY)};
        bitmaps.push_back(info.kind == LayerKind::kDiff ? read_bitmap(dir, info) : std::vector<uint64_t>{});
        st.layers_.push_back(std::move(layer));
        if (info.kind == LayerKind::kFull) break;
        dir = resolve_parent(dir, info.parent->path);
    }

    // Bottom-up: each layer overrides the pages it holds; within them, its holes are zero.
    const uint64_t pages = st.page_count();
    st.source_.assign(pages, kZero);
    std::vector<uint8_t> has_data(pages);
    for (size_t li = st.layers_.size(); li-- > 0;) {
        const Layer& l = st.layers_[li];
        std::fill(has_data.begin(), has_data.end(), 0);
        const off_t size = static_cast<off_t>(l.info.mem_size());
        off_t off = 0;
        while (off < size) {
            off_t d = ::lseek(l.mem.get(), off, SEEK_DATA);
            if (d < 0) {
                if (errno == ENXIO) break;  // no data after off
                if (errno == EINVAL) {      // no SEEK_DATA: treat everything as data
                    std::fill(has_data.begin() + off / static_cast<off_t>(kPage), has_data.end(), 1);
                    break;
                }
                throw_errno("lseek " + l.dir + "/mem");
            }
            off_t h = ::lseek(l.mem.get(), d, SEEK_HOLE);
            if (h < 0) throw_errno("lseek " + l.dir + "/mem");
            h = std::min(h, size);
            for (uint64_t p = static_cast<uint64_t>(d) / kPage; p < (static_cast<uint64_t>(h) + kPage - 1) / kPage; ++p)
                has_data[p] = 1;
            off = h;
        }
        const uint8_t idx = static_cast<uint8_t>(li);
        if (l.info.kind == LayerKind::kFull) {
            for (uint64_t p = 0; p < pages; ++p) st.source_[p] = has_data[p] ? idx : kZero;
        } else {
            const auto& bm = bitmaps[li];
            for (uint64_t w = 0; w < bm.size(); ++w) {
                uint64_t bits = bm[w];
                while (bits) {
                    const uint64_t p = w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
                    bits &= bits - 1;
                    st.source_[p] = has_data[p] ? idx : kZero;
                }
            }
        }
    }
    return st;
}

LayerStack::PageSource LayerStack::page(uint64_t p) const {
    if (p >= source_.size()) throw Error("LayerStack: page " + std::to_string(p) + " beyond " + std::to_string(source_.size()));
    if (source_[p] == kZero) return {};
    return {source_[p], p * kPage};
}

std::vector<LayerStack::Run> LayerStack::runs() const {
    std::vector<Run> out;
    for (uint64_t p = 0; p < source_.size();) {
        uint64_t q = p + 1;
        while (q < source_.size() && source_[q] == source_[p]) ++q;
        out.push_back({p, q - p, page(p)});
        p = q;
    }
    return out;
}

MachineState LayerStack::read_vmstate() const {
    const Layer& top = layers_.front();
    const std::string path = top.dir + "/vmstate";
    std::vector<uint8_t> b = read_file_bytes(path);
    if (b.size() != top.info.vmstate.size)
        throw DataError(path + ": " + std::to_string(b.size()) + " bytes, snapshot.json says " + std::to_string(top.info.vmstate.size));
    uint32_t crc = crc32c(0, b.data(), b.size());
    if (crc != top.info.vmstate.crc32c)
        throw DataError(path + ": CRC32C mismatch (snapshot.json " + hex32(top.info.vmstate.crc32c) + ", file " + hex32(crc) + ")");
    MachineState s = decode_vmstate(b, path);
    const LayerConfig& c = top.info.config;
    if (s.mem_size != top.info.mem_size())
        throw DataError(path + ": memory size " + std::to_string(s.mem_size) + " differs from snapshot.json's " +
                        std::to_string(top.info.mem_size()));
    if (s.vcpus.size() != c.vcpu_count)
        throw DataError(path + ": " + std::to_string(s.vcpus.size()) + " vCPUs, snapshot.json says " + std::to_string(c.vcpu_count));
    if (s.kind != c.machine_kind)
        throw DataError(path + ": a " + machine_kind_name(s.kind) + " machine, snapshot.json says " + machine_kind_name(c.machine_kind));
    return s;
}

void LayerStack::read_memory(uint8_t* dst, bool dst_is_zero) const {
    for (const Run& r : runs()) {
        uint8_t* to = dst + r.first_page * kPage;
        const size_t len = r.pages * kPage;
        if (r.source.zero()) {
            if (!dst_is_zero) std::memset(to, 0, len);
            continue;
        }
        const Layer& l = layers_[static_cast<size_t>(r.source.layer)];
        size_t n = pread_full(l.mem.get(), to, len, static_cast<off_t>(r.source.offset), l.dir + "/mem");
        if (n != len) throw DataError(l.dir + "/mem: short read at offset " + std::to_string(r.source.offset + n) + " (file truncated?)");
    }
}

void LayerStack::verify_memory() const {
    std::vector<uint8_t> buf(4 << 20);
    for (const Layer& l : layers_) {
        const std::string path = l.dir + "/mem";
        const uint64_t size = l.info.mem_size();
        uint32_t crc = 0;
        uint64_t pos = 0;  // the CRC covers [0, pos)
        while (pos < size) {
            // Next data extent [data, end); without SEEK_DATA everything is data.
            uint64_t data = pos, end = size;
            off_t d = ::lseek(l.mem.get(), static_cast<off_t>(pos), SEEK_DATA);
            if (d >= 0) {
                data = std::min<uint64_t>(static_cast<uint64_t>(d), size);
                off_t h = ::lseek(l.mem.get(), d, SEEK_HOLE);
                if (h < 0) throw_errno("lseek " + path);
                end = std::min<uint64_t>(static_cast<uint64_t>(h), size);
            } else if (errno == ENXIO) {
                data = end = size;
            } else if (errno != EINVAL) {
                throw_errno("lseek " + path);
            }
            crc = crc32c_extend_zeros(crc, data - pos);
            pos = data;
            while (pos < end) {
                size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - pos));
                size_t got = pread_full(l.mem.get(), buf.data(), n, static_cast<off_t>(pos), path);
                if (got != n) throw DataError(path + ": short read at offset " + std::to_string(pos + got));
                crc = crc32c(crc, buf.data(), n);
                pos += n;
            }
        }
        if (crc != l.info.mem.crc32c)
            throw DataError(path + ": CRC32C mismatch (snapshot.json " + hex32(l.info.mem.crc32c) + ", file " + hex32(crc) + ")");
    }
}

}  // namespace kindling
