// snap-chunk: cut a snapshot directory into convergently encrypted 512 KiB chunks in
// a store, and put it back together.  Wiring only: lib/chunk and lib/store do the work.


#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"
#include "chunk/layer_keys.h"
#include "chunk/manifest.h"
#include "cli/cli.h"
#include "base/cancel.h"
#include "base/progress.h"
#include "store/layer_io.h"
#include "store/store.h"

using namespace kindling;
using json = nlohmann::json;

namespace {

struct Flags {
    CommonFlags common;
    std::string store;
    std::string key_file;
    unsigned threads = 0;
    bool progress = false;
    bool no_progress = false;
    // put
    std::string snapdir;
    std::string layer;
    std::string parent;
    bool compress = false;
    bool no_compress = false;
    int zstd_level = 1;
    // get, verify, stat
    std::vector<std::string> ids;
    std::string out;
    bool no_sync = false;
    bool chunks = false;
};

bool show_progress(const Flags& f) { return progress_enabled(f.progress, f.no_progress); }

Digest parse_id(const std::string& s) {
    auto d = Digest::from_hex(s);
    if (!d) throw UsageError("'" + s + "' is not a manifest id (64 hex digits)");
    return *d;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

json stats_json(const LayerStats& s) {
    return {{"files", s.files},
            {"logical_bytes", s.logical_bytes},
            {"chunks", s.chunks},
            {"zero_chunks", s.zero_chunks},
            {"data_bytes", s.data_bytes},
            {"unique_chunks", s.unique_chunks},
            {"unique_plain_bytes", s.unique_plain_bytes},
            {"compressed_chunks", s.compressed_chunks},
            {"stored_bytes", s.stored_bytes},
            // No stored bytes (an all-zero layer): no ratio.
            {"dedup_ratio", s.stored_bytes ? json(s.dedup_ratio()) : json(nullptr)}};
}

int cmd_put(Flags& f) {
    auto kind = parse_layer_kind(f.layer);
    if (!kind) throw UsageError("--layer must be base, runtime or function");
    if (f.compress && f.no_compress) throw UsageError("give --compress or --no-compress, not both");
    // Compressed sizes leak content, so function layers are not compressed by default.
    bool compress = f.compress || (!f.no_compress && *kind != LayerKind::kFunction);
    Secret secret = load_layer_secret(*kind, f.key_file);
    LayerKeys keys(*kind, secret.bytes());
    auto store = make_store(f.store, {.create = true});

    PutOptions o;
    o.kind = *kind;
    if (!f.parent.empty()) o.parent = parse_id(f.parent);
    o.zstd_level = compress ? f.zstd_level : 0;
    o.threads = f.threads;
    ProgressBar bar("put", show_progress(f));
    o.progress = [&](uint64_t d, uint64_t t) {
        throw_if_cancelled();
        bar.update(d, t);
    };
    auto t0 = std::chrono::steady_clock::now();
    PutResult r = put_layer(f.snapdir, *store, keys, o);
    double secs = seconds_since(t0);
    bar.finish();

    double mbs = secs > 0 ? double(r.stats.logical_bytes) / secs / 1e6 : 0;
    if (f.common.json) {
        json j = stats_json(r.stats);
        j["manifest"] = r.manifest_id.hex();
        j["layer"] = layer_kind_name(*kind);
        j["parent"] = o.parent ? json(o.parent->hex()) : json(nullptr);
        j["compressed"] = compress;
        j["new_chunks"] = r.new_chunks;
        j["new_bytes"] = r.new_bytes;
        j["manifest_bytes"] = r.manifest_bytes;
        j["seconds"] = secs;
        j["mb_per_s"] = mbs;
        std::printf("%s\n", j.dump().c_str());
    } else {
        std::printf("%s\n", r.manifest_id.hex().c_str());
    }
    log_verbose("%llu chunks (%llu zero, %llu unique, %llu new, %llu bytes new) in %.2f s, %.0f MB/s",
                (unsigned long long)r.stats.chunks, (unsigned long long)r.stats.zero_chunks,
                (unsigned long long)r.stats.unique_chunks, (unsigned long long)r.new_chunks,
                (unsigned long long)r.new_bytes, secs, mbs);
    return 0;
}

int cmd_get(Flags& f) {
    Digest id = parse_id(f.ids.at(0));
    auto store = make_store(f.store);
    Manifest m = open_manifest(*store, id, f.key_file);
    GetOptions o;
    o.threads = f.threads;
    o.sync = !f.no_sync;
    ProgressBar bar("get", show_progress(f));
    o.progress = [&](uint64_t d, uint64_t t) {
        throw_if_cancelled();
        bar.update(d, t);
    };
    auto t0 = std::chrono::steady_clock::now();
    get_layer(*store, m, f.out, o);
    double secs = seconds_since(t0);
    bar.finish();
    LayerStats s = layer_stats(m);
    if (f.common.json) {
        json j = stats_json(s);
        j["manifest"] = id.hex();
        j["out"] = f.out;
        j["seconds"] = secs;
        j["mb_per_s"] = secs > 0 ? double(s.logical_bytes) / secs / 1e6 : 0;
        std::printf("%s\n", j.dump().c_str());
    }
    log_verbose("%llu bytes in %.2f s", (unsigned long long)s.logical_bytes, secs);
    return 0;
}

int cmd_verify(Flags& f) {
    Digest id = parse_id(f.ids.at(0));
    auto store = make_store(f.store);
    Manifest m = open_manifest(*store, id, f.key_file);
    ProgressBar bar("verify", show_progress(f));
    auto problems = verify_layer(*store, m, f.threads,
                                 [&](uint64_t d, uint64_t t) {
                                     throw_if_cancelled();
                                     bar.update(d, t);
                                 });
    bar.finish();
    LayerStats s = layer_stats(m);
    bool parent_missing = m.parent && !store->has(*m.parent);
    if (parent_missing) log_warn("parent manifest %s is not in %s", m.parent->hex().c_str(), store->uri().c_str());
    int rc = 0;
    for (const auto& p : problems) {
        log_error("%s", p.message().c_str());
        rc = std::max(rc, p.exit_code == kExitDataErr ? 2 : 1);
    }
    if (f.common.json) {
        json probs = json::array();
        for (const auto& p : problems)
            probs.push_back({{"path", p.path}, {"chunk", p.chunk}, {"offset", p.offset},
                             {"id", p.id.hex()}, {"error", p.what}});
        json j = {{"manifest", id.hex()}, {"ok", problems.empty()},
                  {"chunks_checked", s.unique_chunks}, {"problems", probs},
                  {"parent_present", m.parent ? json(!parent_missing) : json(nullptr)}};
        std::printf("%s\n", j.dump().c_str());
    } else if (problems.empty()) {
        std::printf("%s: ok, %llu chunks checked\n", id.hex().c_str(), (unsigned long long)s.unique_chunks);
    }
    if (rc == 0) return 0;
    log_error("manifest %s: %zu of %llu chunks failed verification", id.hex().c_str(), problems.size(),
              (unsigned long long)s.unique_chunks);
    return rc == 2 ? kExitDataErr : kExitNoInput;
}

int cmd_stat(Flags& f) {
    auto store = make_store(f.store);
    json layers = json::array();
    std::unordered_set<Digest, DigestHash> all;
    uint64_t total_logical = 0, total_stored = 0, total_chunks = 0, total_zero = 0;
    for (const auto& s_id : f.ids) {
        Digest id = parse_id(s_id);
        Manifest m = open_manifest(*store, id, f.key_file);
        LayerStats s = layer_stats(m);
        total_logical += s.logical_bytes;
        total_chunks += s.chunks;
        total_zero += s.zero_chunks;
        std::vector<uint32_t> owner(m.chunks.size());
        for (uint32_t e = 0; e < m.entries.size(); ++e)
            for (uint32_t k = 0; k < m.entries[e].chunk_count; ++k) owner[m.entries[e].first_chunk + k] = e;
        for (const auto& c : m.chunks)
            if (!c.zero && all.insert(c.id).second) total_stored += c.stored_len;
        if (f.common.json) {
            json j = stats_json(s);
            j["manifest"] = id.hex();
            j["layer"] = layer_kind_name(m.kind);
            j["parent"] = m.parent ? json(m.parent->hex()) : json(nullptr);
            json files = json::array();
            for (const auto& e : m.entries)
                files.push_back({{"path", e.path}, {"type", e.is_dir ? "dir" : "file"}, {"mode", e.mode},
                                 {"size", e.size}, {"chunks", e.chunk_count}});
            j["files"] = files;
            if (f.chunks) {
                json cs = json::array();
                for (uint32_t i = 0; i < m.chunks.size(); ++i) {
                    const auto& c = m.chunks[i];
                    cs.push_back({{"path", m.entries[owner[i]].path}, {"offset", c.offset},
                                  {"id", c.zero ? json(nullptr) : json(c.id.hex())}, {"zero", c.zero},
                                  {"compressed", c.compressed}, {"plain_len", c.plain_len},
                                  {"stored_len", c.stored_len}});
                }
                j["chunk_list"] = cs;
            }
            layers.push_back(j);
            continue;
        }
        std::printf("manifest     %s\n", id.hex().c_str());
        std::printf("layer        %s, parent %s\n", layer_kind_name(m.kind),
                    m.parent ? m.parent->hex().c_str() : "none");
        std::printf("files        %llu, %llu bytes\n", (unsigned long long)s.files,
                    (unsigned long long)s.logical_bytes);
        std::printf("chunks       %llu: %llu zero, %llu unique (%llu compressed)\n",
                    (unsigned long long)s.chunks, (unsigned long long)s.zero_chunks,
                    (unsigned long long)s.unique_chunks, (unsigned long long)s.compressed_chunks);
        std::printf("stored       %llu bytes\n", (unsigned long long)s.stored_bytes);
        std::printf("dedup        %.2fx\n", s.dedup_ratio());
        if (f.chunks) {
            for (uint32_t i = 0; i < m.chunks.size(); ++i) {
                const auto& c = m.chunks[i];
                std::printf("chunk        %s %llu %llu %s %u %u%s\n", m.entries[owner[i]].path.c_str(),
                            (unsigned long long)(c.offset / kChunkSize), (unsigned long long)c.offset,
                            c.zero ? "zero" : c.id.hex().c_str(), c.plain_len, c.stored_len,
                            c.compressed ? " compressed" : "");
            }
        }
        if (f.ids.size() > 1) std::printf("\n");
    }
    double ratio = total_stored ? double(total_logical) / double(total_stored) : 0.0;
    if (f.common.json) {
        json j = f.ids.size() == 1 ? layers[0] : json{{"layers", layers},
                                                     {"total", {{"logical_bytes", total_logical},
                                                                {"chunks", total_chunks},
                                                                {"zero_chunks", total_zero},
                                                                {"unique_chunks", all.size()},
                                                                {"stored_bytes", total_stored},
                                                                {"dedup_ratio", ratio}}}};
        std::printf("%s\n", j.dump().c_str());
    } else if (f.ids.size() > 1) {
        std::printf("total        %zu layers, %llu bytes, %llu chunks (%llu zero, %zu unique), "
                    "%llu bytes stored, dedup %.2fx\n",
                    f.ids.size(), (unsigned long long)total_logical, (unsigned long long)total_chunks,
                    (unsigned long long)total_zero, all.size(), (unsigned long long)total_stored, ratio);
    }
    return 0;
}

void add_shared(CLI::App* sc, Flags& f) {
    add_common_flags(*sc, f.common);
    sc->add_option("--store", f.store, "Store URI, e.g. dir:/var/lib/kindling/chunks[?max=SIZE]")->required();
    sc->add_option("--key-file", f.key_file,
                   "Secret for the layer (hex or >= 16 raw bytes); default: $KINDLING_CONVERGENCE_SECRET "
                   "for base/runtime layers, $KINDLING_TENANT_KEY for function layers");
    sc->add_option("--threads", f.threads, "Worker threads (default: one per CPU)")->check(CLI::Range(1, 256));
    sc->add_flag("--progress", f.progress, "Draw a progress bar on stderr even when it is not a terminal");
    sc->add_flag("--no-progress", f.no_progress, "Never draw a progress bar");
}

}  // namespace

int main(int argc, char** argv) {
    log_init("snap-chunk", LogLevel::kNormal);
    CLI::App app{"snap-chunk: cut a snapshot directory into convergently encrypted 512 KiB chunks\n"
                 "in a content-addressed store, and reassemble, verify or describe it by manifest id.",
                 "snap-chunk"};
    app.set_version_flag("--version", std::string(kVersion));
    app.require_subcommand(1);
    app.footer("Secrets: --key-file FILE, else $KINDLING_CONVERGENCE_SECRET (base, runtime layers) or\n"
               "$KINDLING_TENANT_KEY (function layers), in hex; never on the command line.\n"
               "Stores: dir:/path[?max=SIZE].\n"
               "Exit status: 65 corrupt, tampered or wrong key; 66 missing input; 69 store unavailable;\n"
               "73 output exists; 74 I/O error; 78 no secret.  See snap-chunk(1).");
    Flags f;

    auto* put = app.add_subcommand("put", "Chunk SNAPDIR into the store; print the manifest id");
    add_shared(put, f);
    put->add_option("SNAPDIR", f.snapdir, "Snapshot directory")->required();
    put->add_option("--layer", f.layer, "Layer kind: base, runtime or function")->required();
    put->add_option("--parent", f.parent, "Manifest id of the parent layer (must be in the store)");
    put->add_flag("--compress", f.compress, "Compress chunks with zstd (default for base and runtime layers)");
    put->add_flag("--no-compress", f.no_compress, "Do not compress (default for function layers)");
    put->add_option("--zstd-level", f.zstd_level, "zstd level when compressing (default 1)")->check(CLI::Range(1, 19));

    auto* get = app.add_subcommand("get", "Reassemble a layer into a new directory");
    add_shared(get, f);
    get->add_option("ID", f.ids, "Manifest id")->required()->expected(1);
    get->add_option("--out", f.out, "Output directory (must not exist, or be empty)")->required();
    get->add_flag("--no-sync", f.no_sync, "Do not fsync the output (faster; a crash may leave it incomplete)");

    auto* verify = app.add_subcommand("verify", "Fetch and check every chunk of a layer");
    add_shared(verify, f);
    verify->add_option("ID", f.ids, "Manifest id")->required()->expected(1);

    auto* stat = app.add_subcommand("stat", "Show files, chunks, stored bytes and dedup of layers");
    add_shared(stat, f);
    stat->add_option("ID", f.ids, "Manifest ids (several: also their combined figures)")->required();
    stat->add_flag("--chunks", f.chunks, "List every chunk");

    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("snap-chunk", [&] {
        apply_common_flags(f.common);
        install_cancel_signals();
        if (f.progress && f.no_progress) throw UsageError("give --progress or --no-progress, not both");
        if (put->parsed()) return cmd_put(f);
        if (get->parsed()) return cmd_get(f);
        if (verify->parsed()) return cmd_verify(f);
        return cmd_stat(f);
    });
}
