#include "snapshot/layer_stack.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"
#include "snapshot/dirty_bitmap.h"

namespace kindling {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kPage = kSnapshotPageSize;

// The parent's directory as the kernel resolves it (symlinks and ".." physically),
// which is also how write_diff_layer computed the relative path.  (decode_layer_json
// refuses absolute ones.)
std::string resolve_parent(const std::string& dir, const std::string& stored) {
    fs::path p = fs::path(dir) / stored;
    std::error_code ec;
    fs::path c = fs::weakly_canonical(p, ec);
    return ec ? p.lexically_normal().string() : c.string();
}

}  // namespace

LayerStack LayerStack::open(const std::string& top_dir) {
    LayerStack st;
    std::set<std::string> ids;
    std::string dir = top_dir;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::vector<std::vector<uint64_t>> bitmaps;
    const std::string scope = layer_scope(dir);
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
        for (const DriveConfig& d : info.config.drives)
            if (!in_layer_scope(scope, d.path_on_host))
                throw DataError(dir + "/snapshot.json: drive " + d.drive_id + " (" + d.path_on_host + ") is outside " + scope +
                                ": a layer's drives are files beside it or below");
        if (!ids.insert(info.id).second) throw DataError(dir + "/snapshot.json: layer " + info.id + " appears twice in its own stack");
        if (st.layers_.size() == kMaxLayerDepth)
            throw DataError(top_dir + ": more than " + std::to_string(kMaxLayerDepth) + " layers");
        Layer layer{dir, info, open_file(dir + "/mem", O_RDONLY)};
        bitmaps.push_back(info.kind == LayerKind::kDiff ? read_page_bitmap(dir, info) : std::vector<uint64_t>{});
        st.layers_.push_back(std::move(layer));
        if (info.kind == LayerKind::kFull) break;
        std::string parent = resolve_parent(dir, info.parent->path);
        if (!in_layer_scope(scope, parent))
            throw DataError(dir + "/snapshot.json: parent.path " + info.parent->path + " leads to " + parent + ", outside " +
                            scope + ": a layer's parents are beside it or below");
        dir = parent;
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
    std::vector<uint8_t> b = read_layer_file(path, top.info.vmstate);
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
        check_layer_crc(path, l.info.mem.crc32c, crc);
    }
}

}  // namespace kindling
