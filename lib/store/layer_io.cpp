#include "store/layer_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/error.h"
#include "base/io.h"
#include "chunk/chunk_codec.h"

namespace kindling {

namespace {

std::string chunk_where(const std::string& path, uint64_t offset) {
    return path + ": chunk " + std::to_string(offset / kChunkSize) + " at offset " +
           std::to_string(offset);
}

// Rethrows the exception being handled with `where: ` in front, keeping its exit code.
[[noreturn]] void rethrow_in(const std::string& where) {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const Error& e) {
        throw Error(where + ": " + e.what(), e.exit_code());
    } catch (const std::exception& e) {
        throw Error(where + ": " + e.what(), kExitSoftware);
    }
}

// Runs work(state, i) for i in [0, n) on `threads` threads, each with its own state
// from make_state().  The calling thread reports progress meanwhile.  The first
// exception, from a worker or from `progress`, stops the remaining work and is
// rethrown here once every worker has returned.
template <typename MakeState, typename Work>
void run_parallel(unsigned threads, size_t n, MakeState make_state, Work work,
                  const std::atomic<uint64_t>& done, uint64_t total, const ProgressFn& progress) {
    threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<size_t>(n, 1))));
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    std::mutex mu;
    std::condition_variable cv;
    unsigned running = threads;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            try {
                auto state = make_state();
                for (;;) {
                    size_t i = next.fetch_add(1);
                    if (i >= n || failed.load(std::memory_order_relaxed)) break;
                    work(state, i);
                }
            } catch (...) {
                std::lock_guard<std::mutex> g(mu);
                if (!error) error = std::current_exception();
                failed = true;
            }
            std::lock_guard<std::mutex> g(mu);
            if (--running == 0) cv.notify_all();
        });
    }
    {
        std::unique_lock<std::mutex> lk(mu);
        while (running > 0) {
            cv.wait_for(lk, std::chrono::milliseconds(100));
            if (progress && running > 0 && !failed) {
                lk.unlock();
                try {
                    progress(done.load(), total);
                } catch (...) {
                    // The callback cancels (an interrupted tool): stop the workers,
                    // wait for them, then report its exception.
                    std::lock_guard<std::mutex> g(mu);
                    if (!error) error = std::current_exception();
                    failed = true;
                }
                lk.lock();
            }
        }
    }
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
    if (progress) progress(total, total);
}

void scan_dir(const std::string& root, const std::string& rel, std::vector<ManifestEntry>& out) {
    std::string dir = rel == "." ? root : root + "/" + rel;
    DIR* d = ::opendir(dir.c_str());
    if (!d) throw_errno(dir);
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        std::string r = rel == "." ? name : rel + "/" + name;
        std::string p = root + "/" + r;
        struct stat st {};
        if (::lstat(p.c_str(), &st) < 0) throw_errno(p);
        ManifestEntry e;
        e.path = r;
        e.mode = st.st_mode & 0777;  // setuid, setgid and sticky bits are not stored
        if (S_ISDIR(st.st_mode)) {
            e.is_dir = true;
            out.push_back(e);
            scan_dir(root, r, out);
        } else if (S_ISREG(st.st_mode)) {
            e.size = static_cast<uint64_t>(st.st_size);
            out.push_back(e);
        } else {
            throw DataError(p + ": not a regular file or directory; snapshots hold only those");
        }
    }
}

struct SealState {
    ChunkSealer sealer;
    SealedChunk sealed;
    std::vector<uint8_t> buf;
};

struct OpenState {
    ChunkOpener opener;
    std::vector<uint8_t> buf;
};

// Deletes a tree we created, even where modes were already made read-only.
void remove_tree(const std::string& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) < 0) return;
    if (S_ISDIR(st.st_mode)) {
        ::chmod(p.c_str(), 0700);
        if (DIR* d = ::opendir(p.c_str())) {
            std::vector<std::string> names;
            while (struct dirent* e = ::readdir(d))
                if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
                    names.push_back(e->d_name);
            ::closedir(d);
            for (const auto& n : names) remove_tree(p + "/" + n);
        }
        ::rmdir(p.c_str());
    } else {
        ::unlink(p.c_str());
    }
}

void mkdir_parents(const std::string& root, const std::string& rel) {
    size_t pos = 0;
    while ((pos = rel.find('/', pos)) != std::string::npos) {
        std::string d = root + "/" + rel.substr(0, pos);
        if (::mkdir(d.c_str(), 0700) < 0 && errno != EEXIST) throw_errno("mkdir " + d);
        ++pos;
    }
}

// Distinct non-zero chunks of a manifest, each with every index that uses it.
std::vector<std::vector<uint32_t>> group_chunks(const Manifest& m) {
    std::unordered_map<Digest, size_t, DigestHash> index;
    std::vector<std::vector<uint32_t>> groups;
    for (uint32_t i = 0; i < m.chunks.size(); ++i) {
        const auto& c = m.chunks[i];
        if (c.zero) continue;
        auto [it, fresh] = index.emplace(c.id, groups.size());
        if (fresh) groups.emplace_back();
        groups[it->second].push_back(i);
    }
    return groups;
}

// Moves the groups holding a chunk of `first` to the front, in the order of `first`.
void order_groups(std::vector<std::vector<uint32_t>>& groups, size_t nchunks,
                  const std::vector<uint32_t>& first) {
    if (first.empty()) return;
    std::vector<uint32_t> rank(nchunks, UINT32_MAX);
    for (uint32_t r = 0; r < first.size(); ++r)
        if (first[r] < nchunks && rank[first[r]] == UINT32_MAX) rank[first[r]] = r;
    auto group_rank = [&](const std::vector<uint32_t>& g) {
        uint32_t best = UINT32_MAX;
        for (uint32_t i : g) best = std::min(best, rank[i]);
        return best;
    };
    std::stable_sort(groups.begin(), groups.end(),
                     [&](const auto& a, const auto& b) { return group_rank(a) < group_rank(b); });
}

// The file each chunk belongs to.
std::vector<uint32_t> chunk_owners(const Manifest& m) {
    std::vector<uint32_t> owner(m.chunks.size());
    for (uint32_t f = 0; f < m.entries.size(); ++f)
        for (uint32_t k = 0; k < m.entries[f].chunk_count; ++k) owner[m.entries[f].first_chunk + k] = f;
    return owner;
}

}  // namespace

unsigned default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n ? n : 2;
}

LayerStats layer_stats(const Manifest& m) {
    LayerStats s;
    std::unordered_set<Digest, DigestHash> seen;
    for (const auto& e : m.entries) {
        if (e.is_dir) continue;
        ++s.files;
        s.logical_bytes += e.size;
    }
    for (const auto& c : m.chunks) {
        ++s.chunks;
        if (c.zero) {
            ++s.zero_chunks;
            continue;
        }
        s.data_bytes += c.plain_len;
        if (!seen.insert(c.id).second) continue;
        ++s.unique_chunks;
        s.unique_plain_bytes += c.plain_len;
        s.stored_bytes += c.stored_len;
        if (c.compressed) ++s.compressed_chunks;
    }
    return s;
}

PutResult put_layer(const std::string& snapdir, Store& store, const LayerKeys& keys,
                    const PutOptions& opts) {
    if (keys.kind() != opts.kind) throw std::logic_error("put_layer: keys for another layer kind");
    struct stat root_st {};
    if (::stat(snapdir.c_str(), &root_st) < 0) throw_errno(snapdir);
    if (!S_ISDIR(root_st.st_mode)) throw SysError(snapdir, ENOTDIR);
    if (opts.parent && !store.has(*opts.parent))
        throw Error("parent manifest " + opts.parent->hex() + " not found in " + store.uri(),
                    kExitNoInput);

    Manifest m;
    m.kind = opts.kind;
    m.parent = opts.parent;
    m.zstd_level = opts.zstd_level;
    m.zstd_version = opts.zstd_level ? ChunkSealer::zstd_version() : 0;
    m.entries.push_back({".", true, root_st.st_mode & 0777u, 0, 0, 0});
    scan_dir(snapdir, ".", m.entries);

    struct Task {
        uint32_t entry;
        uint32_t chunk;  // global index
        uint64_t offset;
        uint32_t len;
    };
    std::vector<Task> tasks;
    std::vector<UniqueFd> fds(m.entries.size());
    uint64_t total = 0;
    for (uint32_t i = 0; i < m.entries.size(); ++i) {
        auto& e = m.entries[i];
        e.first_chunk = static_cast<uint32_t>(tasks.size());
        if (e.is_dir) continue;
        fds[i] = open_file(snapdir + "/" + e.path, O_RDONLY);
        e.chunk_count = static_cast<uint32_t>((e.size + kChunkSize - 1) / kChunkSize);
        for (uint32_t k = 0; k < e.chunk_count; ++k) {
            uint64_t off = uint64_t{k} * kChunkSize;
            uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(kChunkSize, e.size - off));
            tasks.push_back({i, static_cast<uint32_t>(tasks.size()), off, len});
            total += len;
        }
    }
    if (tasks.size() > UINT32_MAX / 2) throw DataError(snapdir + ": snapshot too large");
    m.chunks.resize(tasks.size());

    std::atomic<uint64_t> done{0}, new_chunks{0}, new_bytes{0};
    std::mutex sealed_mu;
    std::unordered_map<Digest, uint32_t, DigestHash> sealed;  // plain hash -> chunk index
    auto make_state = [&] {
        return SealState{ChunkSealer(keys, opts.zstd_level), {}, std::vector<uint8_t>(kChunkSize)};
    };
    auto work = [&](SealState& st, size_t i) {
        const Task& t = tasks[i];
        const auto& e = m.entries[t.entry];
        ManifestChunk& c = m.chunks[t.chunk];
        c.offset = t.offset;
        c.plain_len = t.len;
        try {
            int fd = fds[t.entry].get();
            // Holes of a sparse memory file are zero chunks; no need to read them.
            off_t data = ::lseek(fd, static_cast<off_t>(t.offset), SEEK_DATA);
            bool hole = (data < 0 && errno == ENXIO) ||
                        (data >= 0 && static_cast<uint64_t>(data) >= t.offset + t.len);
            std::span<const uint8_t> plain(st.buf.data(), t.len);
            if (!hole) {
                size_t n = pread_full(fd, st.buf.data(), t.len, static_cast<off_t>(t.offset), "read");
                if (n != t.len) throw DataError("file shrank while it was read");
            }
            if (hole || is_all_zero(plain)) {
                c.zero = true;
            } else {
                c.plain_hash = sha256(plain);
                // A chunk repeated inside the layer is sealed and stored once.
                {
                    std::lock_guard<std::mutex> g(sealed_mu);
                    if (auto it = sealed.find(c.plain_hash); it != sealed.end()) {
                        const ManifestChunk& prev = m.chunks[it->second];
                        c.id = prev.id;
                        c.key = prev.key;
                        c.compressed = prev.compressed;
                        c.stored_len = prev.stored_len;
                        done += t.len;
                        return;
                    }
                }
                st.sealer.seal(plain, c.plain_hash, st.sealed);
                c.id = st.sealed.id;
                c.key = st.sealed.key;
                c.compressed = st.sealed.compressed;
                c.stored_len = static_cast<uint32_t>(st.sealed.blob.size());
                try {
                    if (store.put(c.id, st.sealed.blob)) {
                        ++new_chunks;
                        new_bytes += st.sealed.blob.size();
                    }
                } catch (...) {
                    rethrow_in("store write failed");
                }
                std::lock_guard<std::mutex> g(sealed_mu);
                sealed.emplace(c.plain_hash, t.chunk);
            }
        } catch (...) {
            rethrow_in(chunk_where(snapdir + "/" + e.path, t.offset));
        }
        done += t.len;
    };
    unsigned threads = opts.threads ? opts.threads : default_threads();
    run_parallel(threads, tasks.size(), make_state, work, done, total, opts.progress);

    for (uint32_t i = 0; i < m.entries.size(); ++i) {
        if (!fds[i]) continue;
        struct stat st {};
        if (::fstat(fds[i].get(), &st) < 0) throw_errno(snapdir + "/" + m.entries[i].path);
        if (static_cast<uint64_t>(st.st_size) != m.entries[i].size)
            throw DataError(snapdir + "/" + m.entries[i].path + ": file changed while it was read");
    }

    // Chunks first, durable, then the manifest that names them.
    store.flush();
    std::vector<uint8_t> bytes = encode_manifest(m, keys);
    PutResult r;
    r.manifest_id = sha256(bytes);
    r.manifest_bytes = bytes.size();
    try {
        store.put(r.manifest_id, bytes);
        store.flush();
    } catch (...) {
        rethrow_in("manifest " + r.manifest_id.hex() + ": store write failed");
    }
    r.stats = layer_stats(m);
    r.new_chunks = new_chunks;
    r.new_bytes = new_bytes;
    return r;
}

std::vector<uint8_t> fetch_manifest(Store& store, const Digest& id) {
    auto bytes = store.get(id);
    if (!bytes) throw Error("manifest " + id.hex() + " not found in " + store.uri(), kExitNoInput);
    if (!object_matches(id, *bytes))
        throw DataError("manifest " + id.hex() + ": stored bytes do not match the id (corrupt or tampered)");
    return std::move(*bytes);
}

Manifest open_manifest(Store& store, const Digest& id, const std::string& key_file) {
    auto bytes = fetch_manifest(store, id);
    try {
        LayerKind kind = peek_manifest_kind(bytes);
        Secret secret = load_layer_secret(kind, key_file);
        LayerKeys keys(kind, secret.bytes());
        return decode_manifest(bytes, keys);
    } catch (...) {
        rethrow_in("manifest " + id.hex());
    }
}

void fetch_chunk(Store& store, const Manifest& m, const ManifestChunk& c, ChunkOpener& opener,
                 std::span<uint8_t> plain) {
    std::string where = "chunk " + c.id.hex();
    std::optional<std::vector<uint8_t>> blob;
    try {
        blob = store.get(c.id);
    } catch (...) {
        rethrow_in(where + ": store read failed");
    }
    if (!blob) throw Error(where + ": not in " + store.uri(), kExitNoInput);
    if (!object_matches(c.id, *blob))
        throw DataError(where + ": stored bytes do not match the id (corrupt or tampered chunk)");
    try {
        opener.open(*blob, c.key, m.encoding(c), plain);
    } catch (...) {
        rethrow_in(where);
    }
}

void get_layer(Store& store, const Manifest& m, const std::string& out_dir, const GetOptions& opts) {
    std::string out = out_dir;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    struct stat st {};
    if (::lstat(out.c_str(), &st) == 0) {
        bool empty_dir = false;
        if (S_ISDIR(st.st_mode)) {
            empty_dir = true;
            if (DIR* d = ::opendir(out.c_str())) {
                while (struct dirent* e = ::readdir(d))
                    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) empty_dir = false;
                ::closedir(d);
            }
        }
        if (!empty_dir) throw SysError(out, EEXIST);
    }
    std::string parent = dirname_of(out);
    std::string base = out.substr(out.find_last_of('/') == std::string::npos ? 0 : out.find_last_of('/') + 1);
    std::string tmpl = parent + "/." + base + ".tmp.XXXXXX";
    std::vector<char> tbuf(tmpl.begin(), tmpl.end());
    tbuf.push_back('\0');
    if (!::mkdtemp(tbuf.data())) throw_errno("create a temp directory in " + parent);
    std::string tmp(tbuf.data());

    try {
        std::vector<UniqueFd> fds(m.entries.size());
        std::vector<std::string> dirs;
        for (uint32_t i = 0; i < m.entries.size(); ++i) {
            const auto& e = m.entries[i];
            if (e.path == ".") continue;
            mkdir_parents(tmp, e.path);
            std::string p = tmp + "/" + e.path;
            if (e.is_dir) {
                if (::mkdir(p.c_str(), 0700) < 0 && errno != EEXIST) throw_errno("mkdir " + p);
                dirs.push_back(e.path);
                continue;
            }
            fds[i] = open_file(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
            // Sets the size; chunks never written stay holes.
            if (::ftruncate(fds[i].get(), static_cast<off_t>(e.size)) < 0) throw_errno("truncate " + p);
        }

        auto owner = chunk_owners(m);
        auto groups = group_chunks(m);
        order_groups(groups, m.chunks.size(), opts.first);
        uint64_t total = 0;
        for (const auto& c : m.chunks)
            if (!c.zero) total += c.plain_len;
        std::atomic<uint64_t> done{0};
        auto make_state = [] { return OpenState{ChunkOpener(), std::vector<uint8_t>(kChunkSize)}; };
        auto work = [&](OpenState& st, size_t g) {
            const auto& idxs = groups[g];
            const ManifestChunk& c = m.chunks[idxs[0]];
            const std::string& path = m.entries[owner[idxs[0]]].path;
            std::span<uint8_t> plain(st.buf.data(), c.plain_len);
            try {
                fetch_chunk(store, m, c, st.opener, plain);
            } catch (...) {
                rethrow_in(chunk_where(path, c.offset));
            }
            for (uint32_t i : idxs) {
                const ManifestChunk& ci = m.chunks[i];
                const auto& e = m.entries[owner[i]];
                pwrite_full(fds[owner[i]].get(), plain.data(), ci.plain_len,
                            static_cast<off_t>(ci.offset), "write " + out + "/" + e.path);
                done += ci.plain_len;
            }
        };
        unsigned threads = opts.threads ? opts.threads : default_threads();
        run_parallel(threads, groups.size(), make_state, work, done, total, opts.progress);

        for (uint32_t i = 0; i < m.entries.size(); ++i) {
            if (!fds[i]) continue;
            if (opts.sync && ::fsync(fds[i].get()) < 0) throw_errno("fsync " + out + "/" + m.entries[i].path);
            if (::fchmod(fds[i].get(), m.entries[i].mode & 0777) < 0) throw_errno("chmod " + out + "/" + m.entries[i].path);
            fds[i].reset();
        }
        // Deepest directories first, so a read-only directory is filled before it closes.
        std::sort(dirs.begin(), dirs.end(), std::greater<>());
        for (const auto& d : dirs) {
            std::string p = tmp + "/" + d;
            if (opts.sync) fsync_dir(p);
            const auto* e = &*std::find_if(m.entries.begin(), m.entries.end(),
                                           [&](const ManifestEntry& x) { return x.path == d; });
            if (::chmod(p.c_str(), e->mode & 0777) < 0) throw_errno("chmod " + p);
        }
        if (opts.sync) fsync_dir(tmp);
        uint32_t root_mode = 0755;
        for (const auto& e : m.entries)
            if (e.path == ".") root_mode = e.mode & 0777;  // a manifest's setuid bits are never applied
        if (::chmod(tmp.c_str(), root_mode) < 0) throw_errno("chmod " + tmp);
        if (::rename(tmp.c_str(), out.c_str()) < 0) throw_errno("rename " + tmp + " to " + out);
        if (opts.sync) fsync_dir(parent);
    } catch (...) {
        remove_tree(tmp);
        throw;
    }
}

std::string ChunkProblem::message() const {
    return chunk_where(path, offset) + ": chunk " + id.hex() + ": " + what;
}

std::vector<ChunkProblem> verify_layer(Store& store, const Manifest& m, unsigned threads,
                                       const ProgressFn& progress, const std::vector<uint32_t>& first) {
    auto owner = chunk_owners(m);
    auto groups = group_chunks(m);
    order_groups(groups, m.chunks.size(), first);
    uint64_t total = 0;
    for (const auto& g : groups) total += m.chunks[g[0]].plain_len;
    std::atomic<uint64_t> done{0};
    std::mutex mu;
    std::vector<std::pair<size_t, ChunkProblem>> found;
    auto make_state = [] { return OpenState{ChunkOpener(), std::vector<uint8_t>(kChunkSize)}; };
    auto work = [&](OpenState& st, size_t g) {
        const ManifestChunk& c = m.chunks[groups[g][0]];
        auto problem = [&](std::string what, int code) {
            ChunkProblem p{m.entries[owner[groups[g][0]]].path, 0, c.offset, c.id, std::move(what), code};
            p.chunk = static_cast<uint32_t>(c.offset / kChunkSize);
            if (groups[g].size() > 1) p.what += " (chunk used " + std::to_string(groups[g].size()) + " times)";
            std::lock_guard<std::mutex> lk(mu);
            found.emplace_back(groups[g][0], std::move(p));
        };
        done += c.plain_len;
        auto blob = store.get(c.id);
        if (!blob) return problem("not in " + store.uri(), kExitNoInput);
        if (!object_matches(c.id, *blob))
            return problem("stored bytes do not match the id (corrupt or tampered chunk)", kExitDataErr);
        if (blob->size() != c.stored_len)
            return problem("stored length " + std::to_string(blob->size()) + " differs from the manifest's " +
                               std::to_string(c.stored_len), kExitDataErr);
        std::span<uint8_t> plain(st.buf.data(), c.plain_len);
        try {
            st.opener.open(*blob, c.key, m.encoding(c), plain);
        } catch (const Error& e) {
            return problem(e.what(), e.exit_code());
        }
        if (sha256(plain) != c.plain_hash)
            return problem("plain text does not match its SHA-256 in the manifest", kExitDataErr);
    };
    run_parallel(threads ? threads : default_threads(), groups.size(), make_state, work, done,
                 total, progress);
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<ChunkProblem> out;
    for (auto& f : found) out.push_back(std::move(f.second));
    return out;
}

}  // namespace kindling
