#define FUSE_USE_VERSION 312
#include "fuse/snapfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "base/error.h"
#include "base/fd.h"
#include "base/io.h"
#include "base/log.h"
#include "chunk/chunk_codec.h"
#include "snapshot/access_log.h"

namespace kindling {

namespace {

constexpr double kForever = 86400.0;  // the mount never changes: cache names and attrs

struct Node {
    std::string name;
    fuse_ino_t parent = FUSE_ROOT_ID;
    bool is_dir = true;
    uint32_t mode = 0755;
    uint64_t size = 0;
    uint64_t data_bytes = 0;  // non-zero chunks, for st_blocks
    int32_t layer = -1;
    uint32_t entry = 0;
    std::map<std::string, fuse_ino_t> children;
};

std::atomic<fuse_session*> g_session{nullptr};
std::atomic<ChunkCache*> g_cache{nullptr};
volatile sig_atomic_t g_stop_signal = 0;

// Async-signal-safe: libfuse's own handler does the same (fuse_session_exit only sets
// a flag); the interrupted read(2) or sem_wait(3) lets the loop see it.
void on_stop_signal(int sig) {
    g_stop_signal = sig;
    if (ChunkCache* c = g_cache.load()) c->request_stop();
    if (fuse_session* se = g_session.load()) fuse_session_exit(se);
}

}  // namespace

struct Snapfs::Impl {
    Store& store;
    std::vector<SnapfsLayer> layers;
    SnapfsOptions opts;
    std::vector<Node> nodes;  // ino = index + 1
    std::unique_ptr<ChunkCache> cache;
    time_t mount_time = ::time(nullptr);
    size_t stuck = 0;

    std::thread reaper;  // reads the layers' own access.log and queues its chunks

    std::mutex record_mu;
    std::vector<std::vector<bool>> seen;  // per layer, per chunk
    std::vector<std::pair<uint32_t, uint32_t>> order;

    Impl(Store& s, std::vector<SnapfsLayer> l, SnapfsOptions o) : store(s), layers(std::move(l)), opts(std::move(o)) {
        build_tree();
    }

    Node* node(fuse_ino_t ino) {
        if (ino < 1 || ino > nodes.size()) return nullptr;
        return &nodes[ino - 1];
    }

    fuse_ino_t add_child(fuse_ino_t parent, const std::string& name, Node n) {
        auto& kids = nodes[parent - 1].children;
        if (auto it = kids.find(name); it != kids.end()) return it->second;
        n.name = name;
        n.parent = parent;
        nodes.push_back(std::move(n));
        fuse_ino_t ino = nodes.size();
        nodes[parent - 1].children.emplace(name, ino);
        return ino;
    }

    void build_tree() {
        nodes.push_back(Node{});  // root
        for (uint32_t li = 0; li < layers.size(); ++li) {
            const Manifest& m = layers[li].manifest;
            fuse_ino_t top = FUSE_ROOT_ID;
            for (const auto& e : m.entries)
                if (e.path == "." && layers[li].name.empty()) nodes[0].mode = e.mode & 0777;
            if (!layers[li].name.empty()) {
                Node d;
                for (const auto& e : m.entries)
                    if (e.path == ".") d.mode = e.mode & 0777;
                if (nodes[0].children.count(layers[li].name))
                    throw UsageError("layer name '" + layers[li].name + "' given twice");
                top = add_child(FUSE_ROOT_ID, layers[li].name, d);
            }
            for (uint32_t ei = 0; ei < m.entries.size(); ++ei) {
                const auto& e = m.entries[ei];
                if (e.path == ".") continue;
                if (!is_safe_relative_path(e.path)) throw DataError("manifest path '" + e.path + "' is unsafe");
                fuse_ino_t dir = top;
                size_t start = 0;
                for (;;) {
                    size_t slash = e.path.find('/', start);
                    if (slash == std::string::npos) break;
                    dir = add_child(dir, e.path.substr(start, slash - start), Node{});
                    start = slash + 1;
                }
                Node n;
                n.is_dir = e.is_dir;
                n.mode = e.mode & 0777;  // never setuid, setgid or sticky: a manifest is input
                n.size = e.size;
                n.layer = static_cast<int32_t>(li);
                n.entry = ei;
                for (uint32_t k = 0; k < e.chunk_count; ++k)
                    if (!m.chunks[e.first_chunk + k].zero) n.data_bytes += m.chunks[e.first_chunk + k].plain_len;
                fuse_ino_t ino = add_child(dir, e.path.substr(start), n);
                if (e.is_dir) nodes[ino - 1].mode = e.mode & 0777;  // created earlier as a parent
            }
            seen.emplace_back(m.chunks.size(), false);
        }
    }

    struct stat attr(fuse_ino_t ino) {
        const Node& n = nodes[ino - 1];
        struct stat st {};
        st.st_ino = ino;
        st.st_mode = (n.is_dir ? S_IFDIR : S_IFREG) | n.mode;
        st.st_nlink = n.is_dir ? 2 : 1;
        st.st_size = static_cast<off_t>(n.size);
        st.st_blocks = static_cast<blkcnt_t>((n.data_bytes + 511) / 512);
        st.st_blksize = kChunkSize;
        st.st_uid = ::getuid();
        st.st_gid = ::getgid();
        st.st_atime = st.st_mtime = st.st_ctime = mount_time;
        return st;
    }

    void record(uint32_t layer, uint32_t chunk) {
        if (opts.record_path.empty()) return;
        std::lock_guard<std::mutex> g(record_mu);
        if (seen[layer][chunk]) return;
        seen[layer][chunk] = true;
        order.emplace_back(layer, chunk);
    }

    void write_record() {
        if (opts.record_path.empty()) return;
        std::string out = "snapfs-access 1\n";
        std::lock_guard<std::mutex> g(record_mu);
        for (auto [li, ci] : order) {
            const Manifest& m = layers[li].manifest;
            for (const auto& e : m.entries) {
                if (e.is_dir || ci < e.first_chunk || ci >= e.first_chunk + e.chunk_count) continue;
                out += (layers[li].name.empty() ? std::string(".") : layers[li].name) + "\t" + e.path + "\t" +
                       std::to_string(ci - e.first_chunk) + "\n";
                break;
            }
        }
        write_file_atomic(opts.record_path, out);
        log_verbose("access log: %zu chunks written to %s", order.size(), opts.record_path.c_str());
    }

    // REAP: a layer that carries the page access log of a first restore (access.log,
    // fc-launch --record-access) says which chunks of `mem` a restore reads first.
    // Read it and queue them, in the background so the mount is not held up.
    void start_reap() {
        reaper = std::thread([this] {
            for (const Node& n : nodes) {
                if (n.is_dir || n.name != "access.log" || n.parent != root_of(n.layer)) continue;
                std::vector<char> bytes;
                std::string why;
                if (read(n, 0, n.size, bytes, why) != 0) {
                    log_warn("access.log of layer %d: %s; no prefetch", n.layer, why.c_str());
                    continue;
                }
                try {
                    auto chunks = parse_snapfs_access_log(std::vector<uint8_t>(bytes.begin(), bytes.end()),
                                                          "access.log", layers);
                    log_verbose("prefetching %zu chunks from the layer's access.log", chunks.size());
                    cache->prefetch(chunks);
                } catch (const std::exception& e) {  // nothing may leave the thread (std::terminate)
                    log_warn("%s; no prefetch", e.what());
                }
                return;  // one log names the pages of every layer's mem
            }
        });
    }
    // The directory a layer's files are in: the root, or MOUNTPOINT/NAME.
    fuse_ino_t root_of(int32_t layer) const {
        if (layers.size() == 1) return FUSE_ROOT_ID;
        auto it = nodes[FUSE_ROOT_ID - 1].children.find(layers[static_cast<size_t>(layer)].name);
        return it == nodes[FUSE_ROOT_ID - 1].children.end() ? 0 : it->second;
    }

    // Reads [off, off+size) of a file node into `out`; returns 0 or an errno.
    int read(const Node& n, uint64_t off, size_t size, std::vector<char>& out, std::string& why) {
        if (off >= n.size) {
            out.clear();
            return 0;
        }
        size = static_cast<size_t>(std::min<uint64_t>(size, n.size - off));
        out.resize(size);
        const Manifest& m = layers[n.layer].manifest;
        const ManifestEntry& e = m.entries[n.entry];
        size_t done = 0;
        while (done < size) {
            uint64_t pos = off + done;
            uint32_t k = static_cast<uint32_t>(pos / kChunkSize);
            uint32_t ci = e.first_chunk + k;
            const ManifestChunk& c = m.chunks[ci];
            uint64_t in = pos - c.offset;
            size_t len = static_cast<size_t>(std::min<uint64_t>(size - done, c.plain_len - in));
            if (c.zero) {
                std::memset(out.data() + done, 0, len);
            } else {
                record(static_cast<uint32_t>(n.layer), ci);
                ChunkResult r = cache->get(static_cast<uint32_t>(n.layer), ci);
                if (!r.data) {
                    why = e.path + ": chunk " + std::to_string(k) + " at offset " + std::to_string(c.offset) + ": " + r.what;
                    return EIO;
                }
                std::memcpy(out.data() + done, r.data->data() + in, len);
            }
            done += len;
        }
        return 0;
    }
};

namespace {

Snapfs::Impl* self(fuse_req_t req) { return static_cast<Snapfs::Impl*>(fuse_req_userdata(req)); }

void op_init(void* userdata, fuse_conn_info* conn) {
    // Immutable files: let the kernel trust its attribute cache; no invalidation on
    // attribute changes (there are none).
    conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    auto* fs = self(req);
    Node* p = fs->node(parent);
    if (!p || !p->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
    auto it = p->children.find(name);
    if (it == p->children.end()) return (void)fuse_reply_err(req, ENOENT);
    fuse_entry_param e {};
    e.ino = it->second;
    e.attr = fs->attr(it->second);
    e.attr_timeout = kForever;
    e.entry_timeout = kForever;
    fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
    auto* fs = self(req);
    if (!fs->node(ino)) return (void)fuse_reply_err(req, ENOENT);
    struct stat st = fs->attr(ino);
    fuse_reply_attr(req, &st, kForever);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Node* n = self(req)->node(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    if (!n->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
    fi->cache_readdir = 1;
    fuse_reply_open(req, fi);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
    auto* fs = self(req);
    Node* n = fs->node(ino);
    if (!n || !n->is_dir) return (void)fuse_reply_err(req, ENOTDIR);
    std::vector<std::pair<std::string, fuse_ino_t>> list{{".", ino}, {"..", n->parent}};
    for (const auto& [name, child] : n->children) list.emplace_back(name, child);
    std::vector<char> buf(size);
    size_t used = 0;
    for (size_t i = static_cast<size_t>(off); i < list.size(); ++i) {
        struct stat st {};
        st.st_ino = list[i].second;
        st.st_mode = fs->nodes[list[i].second - 1].is_dir ? S_IFDIR : S_IFREG;
        size_t need = fuse_add_direntry(req, buf.data() + used, size - used, list[i].first.c_str(), &st,
                                        static_cast<off_t>(i + 1));
        if (need > size - used) break;
        used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    auto* fs = self(req);
    Node* n = fs->node(ino);
    if (!n) return (void)fuse_reply_err(req, ENOENT);
    if (n->is_dir) return (void)fuse_reply_err(req, EISDIR);
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return (void)fuse_reply_err(req, EROFS);
    // See snapfs.h: `mem` must stay mappable for the uffd restore backend.
    bool mappable = n->name == "mem" && !fs->opts.direct_io_everywhere;
    fi->direct_io = mappable ? 0 : 1;
    fi->keep_cache = 0;
    fi->noflush = 1;
    fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
    auto* fs = self(req);
    Node* n = fs->node(ino);
    if (!n || n->is_dir) return (void)fuse_reply_err(req, EISDIR);
    // Nothing may throw into libfuse (STYLE.md "Errors").
    try {
        thread_local std::vector<char> buf;
        std::string why;
        int err = fs->read(*n, static_cast<uint64_t>(off), size, buf, why);
        if (err) {
            log_error("%s", why.c_str());
            return (void)fuse_reply_err(req, err);
        }
        fuse_reply_buf(req, buf.data(), buf.size());
    } catch (const std::exception& e) {
        log_error("read %s: %s", n->name.c_str(), e.what());
        fuse_reply_err(req, EIO);
    }
}

// SEEK_DATA / SEEK_HOLE at chunk granularity: zero chunks are holes, so a restore
// skips them without a single fetch.
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
    auto* fs = self(req);
    Node* n = fs->node(ino);
    if (!n || n->is_dir) return (void)fuse_reply_err(req, EISDIR);
    if (whence != SEEK_DATA && whence != SEEK_HOLE) return (void)fuse_reply_err(req, EINVAL);
    uint64_t pos = static_cast<uint64_t>(off);
    if (off < 0 || pos >= n->size) return (void)fuse_reply_err(req, ENXIO);
    const Manifest& m = fs->layers[n->layer].manifest;
    const ManifestEntry& e = m.entries[n->entry];
    for (uint32_t k = static_cast<uint32_t>(pos / kChunkSize); k < e.chunk_count; ++k) {
        const ManifestChunk& c = m.chunks[e.first_chunk + k];
        if (c.zero == (whence == SEEK_HOLE))
            return (void)fuse_reply_lseek(req, static_cast<off_t>(std::max<uint64_t>(pos, c.offset)));
    }
    if (whence == SEEK_HOLE) return (void)fuse_reply_lseek(req, static_cast<off_t>(n->size));
    fuse_reply_err(req, ENXIO);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
    auto* fs = self(req);
    struct statvfs sv {};
    sv.f_bsize = kChunkSize;
    sv.f_frsize = 512;
    uint64_t blocks = 0;
    for (const auto& n : fs->nodes) blocks += (n.data_bytes + 511) / 512;
    sv.f_blocks = blocks;
    sv.f_files = fs->nodes.size();
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

fuse_lowlevel_ops make_ops() {
    fuse_lowlevel_ops ops {};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.getattr = op_getattr;
    ops.opendir = op_opendir;
    ops.readdir = op_readdir;
    ops.open = op_open;
    ops.read = op_read;
    ops.lseek = op_lseek;
    ops.statfs = op_statfs;
    return ops;
}

struct SessionDeleter {
    void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};
struct ArgsDeleter {
    void operator()(fuse_args* a) const { fuse_opt_free_args(a); }
};

}  // namespace

void check_mountpoint(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0) {
        if (errno == ENOTCONN) throw Error("mountpoint " + path + ": a dead FUSE mount is still there (fusermount3 -u it)", kExitCantCreate);
        throw SysError("mountpoint " + path, errno);
    }
    if (!S_ISDIR(st.st_mode)) throw SysError("mountpoint " + path, ENOTDIR, kExitCantCreate);
    std::string parent = path + "/..";
    struct stat pst {};
    if (::stat(parent.c_str(), &pst) == 0 && (pst.st_dev != st.st_dev || pst.st_ino == st.st_ino))
        throw Error("mountpoint " + path + ": already a mount point (in use)", kExitCantCreate);
    DIR* d = ::opendir(path.c_str());
    if (!d) throw SysError("mountpoint " + path, errno);
    bool empty = true;
    while (struct dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) empty = false;
    ::closedir(d);
    if (!empty) throw Error("mountpoint " + path + ": not empty", kExitCantCreate);
}

std::vector<std::pair<uint32_t, uint32_t>> read_snapfs_access_log(const std::string& path,
                                                                  const std::vector<SnapfsLayer>& layers) {
    return parse_snapfs_access_log(read_file_bytes(path), path, layers);
}

std::vector<std::pair<uint32_t, uint32_t>> parse_snapfs_access_log(const std::vector<uint8_t>& bytes,
                                                                   const std::string& path,
                                                                   const std::vector<SnapfsLayer>& layers) {
    std::vector<std::pair<uint32_t, uint32_t>> out;
    auto find_entry = [&](uint32_t li, const std::string& p) -> const ManifestEntry* {
        for (const auto& e : layers[li].manifest.entries)
            if (!e.is_dir && e.path == p) return &e;
        return nullptr;
    };
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), "KNACCESS", 8) == 0) {
        AccessLog log = decode_access_log(bytes, path);
        for (uint32_t li = 0; li < layers.size(); ++li) {
            const ManifestEntry* e = find_entry(li, "mem");
            if (!e) continue;
            uint32_t last = UINT32_MAX;
            for (uint32_t page : log.pages) {
                uint32_t k = static_cast<uint32_t>(uint64_t{page} * 4096 / kChunkSize);
                if (k >= e->chunk_count || k == last) continue;
                last = k;
                out.emplace_back(li, e->first_chunk + k);
            }
        }
        return out;
    }
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    std::string line;
    if (!std::getline(in, line) || line != "snapfs-access 1")
        throw DataError(path + ": not an access log (want a 'snapfs-access 1' header or an fc-launch page log)");
    size_t lineno = 1;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty()) continue;
        size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
        if (t2 == std::string::npos) throw DataError(path + ": line " + std::to_string(lineno) + ": want LAYER<TAB>PATH<TAB>CHUNK");
        std::string layer = line.substr(0, t1), p = line.substr(t1 + 1, t2 - t1 - 1);
        char* end = nullptr;
        unsigned long k = std::strtoul(line.c_str() + t2 + 1, &end, 10);
        if (!end || *end) throw DataError(path + ": line " + std::to_string(lineno) + ": bad chunk index");
        for (uint32_t li = 0; li < layers.size(); ++li) {
            std::string name = layers[li].name.empty() ? "." : layers[li].name;
            if (name != layer && layers.size() > 1) continue;
            if (const ManifestEntry* e = find_entry(li, p); e && k < e->chunk_count)
                out.emplace_back(li, e->first_chunk + static_cast<uint32_t>(k));
        }
    }
    return out;
}

Snapfs::Snapfs(Store& store, std::vector<SnapfsLayer> layers, SnapfsOptions opts)
    : impl_(std::make_unique<Impl>(store, std::move(layers), std::move(opts))) {}

Snapfs::~Snapfs() {
    // Detached fetch threads still use the cache: leave it to the process exit.
    if (impl_->stuck) (void)impl_->cache.release();
}

size_t Snapfs::stuck_fetches() const { return impl_->stuck; }

ChunkCacheStats Snapfs::stats() const { return impl_->cache ? impl_->cache->stats() : ChunkCacheStats{}; }

uint64_t Snapfs::logical_bytes() const {
    uint64_t n = 0;
    for (const auto& node : impl_->nodes) n += node.is_dir ? 0 : node.size;
    return n;
}

void Snapfs::run(const std::string& mountpoint) {
    Impl& fs = *impl_;
    check_mountpoint(mountpoint);
    std::vector<std::pair<uint32_t, uint32_t>> prefetch;
    if (!fs.opts.prefetch_path.empty()) prefetch = read_snapfs_access_log(fs.opts.prefetch_path, fs.layers);

    std::string fsname = "snapfs:" + fs.layers.front().id.hex().substr(0, 16);
    // nosuid,nodev: a layer's files are data, whatever a manifest says (modes are
    // masked to 0777 as well).
    std::string mount_opts = "ro,nosuid,nodev,default_permissions,fsname=" + fsname + ",subtype=snapfs";
    if (::getuid() == 0) mount_opts += ",allow_other";
    std::vector<std::string> argv_s = {"snapfs", "-o", mount_opts};
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    fuse_args args_raw = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    std::unique_ptr<fuse_args, ArgsDeleter> args(&args_raw);
    fuse_lowlevel_ops ops = make_ops();
    std::unique_ptr<fuse_session, SessionDeleter> se(fuse_session_new(args.get(), &ops, sizeof ops, &fs));
    if (!se) throw UnavailableError("cannot create a FUSE session (see the message above)");
    if (fuse_session_mount(se.get(), mountpoint.c_str()) != 0)
        throw UnavailableError("cannot mount FUSE at " + mountpoint + " (is /dev/fuse there and usable?)");
    bool mounted = true;
    auto unmount = [&] {
        if (mounted) fuse_session_unmount(se.get());
        mounted = false;
    };
    try {
        // fuse_daemonize() changes to "/" even in the foreground; relative store,
        // record and mountpoint paths must keep meaning what they meant.
        UniqueFd cwd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fuse_daemonize(fs.opts.foreground ? 1 : 0) != 0) throw Error("cannot daemonize", kExitOsErr);
        if (cwd && ::fchdir(cwd.get()) < 0) log_warn("cannot return to the working directory: %s", std::strerror(errno));
        // Threads only after the fork of fuse_daemonize.
        std::vector<const Manifest*> ms;
        for (const auto& l : fs.layers) ms.push_back(&l.manifest);
        fs.cache = std::make_unique<ChunkCache>(fs.store, ms, fs.opts.cache);
        if (!prefetch.empty()) {
            log_verbose("prefetching %zu chunks from %s", prefetch.size(), fs.opts.prefetch_path.c_str());
            fs.cache->prefetch(prefetch);
        } else if (fs.opts.prefetch_path.empty() && fs.opts.reap) {
            fs.start_reap();
        }

        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART: the blocked read(2)/sem_wait must return
        g_session = se.get();
        g_cache = fs.cache.get();
        for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
        struct sigaction ign {};
        ign.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &ign, nullptr);

        log_verbose("mounted %zu layer(s) at %s", fs.layers.size(), mountpoint.c_str());
        fuse_loop_config* cfg = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(cfg, 0);
        fuse_loop_cfg_set_idle_threads(cfg, 16);
        fuse_loop_cfg_set_max_threads(cfg, 64);
        int rc = fuse_session_loop_mt(se.get(), cfg);
        fuse_loop_cfg_destroy(cfg);
        g_session = nullptr;
        g_cache = nullptr;
        if (g_stop_signal) log_verbose("%s: unmounting", strsignal(g_stop_signal));
        // Readers still waiting for a chunk get EIO now, not at their timeout; a store
        // read that hangs must not hold the unmount up.
        fs.stuck = fs.cache->shutdown(std::chrono::milliseconds(1000));
        if (fs.reaper.joinable()) fs.reaper.join();  // its read ends with the shutdown
        if (fs.stuck) log_warn("%zu store reads still running at unmount; not waiting for them", fs.stuck);
        unmount();
        if (rc != 0 && !g_stop_signal) log_warn("FUSE session ended with error %d", rc);
        fs.write_record();
        ChunkCacheStats s = fs.cache->stats();
        log_verbose("%llu chunks fetched (%llu stored bytes, %llu prefetched), %llu hits, %llu failures, %llu timeouts",
                    (unsigned long long)s.fetches, (unsigned long long)s.fetched_bytes,
                    (unsigned long long)s.prefetches, (unsigned long long)s.hits,
                    (unsigned long long)s.failures, (unsigned long long)s.timeouts);
    } catch (...) {
        g_session = nullptr;
        g_cache = nullptr;
        if (fs.cache) fs.stuck = fs.cache->shutdown(std::chrono::milliseconds(1000));
        if (fs.reaper.joinable()) fs.reaper.join();
        unmount();
        throw;
    }
}

}  // namespace kindling
