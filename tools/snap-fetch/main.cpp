// snap-fetch: fetch a layer's manifest and chunks through a store (typically tiered:
// local cache | memcached | S3), in parallel and optionally in the order of an access
// log, then reassemble the layer (--out) or only warm the upper tiers (--warm); print
// per-tier statistics.  Wiring only: lib/store does the work.

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "base/cancel.h"
#include "base/progress.h"
#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"
#include "chunk/chunk_codec.h"
#include "chunk/manifest.h"
#include "cli/cli.h"
#include "snapshot/access_log.h"
#include "store/layer_io.h"
#include "store/memcached_store.h"
#include "store/store.h"
#include "store/tiered_store.h"

using namespace kindling;
using json = nlohmann::json;

namespace {

constexpr uint64_t kPageSize = 4096;

struct Flags {
    CommonFlags common;
    std::string id;
    std::string store;
    std::string key_file;
    std::string out;
    std::string order;
    bool warm = false;
    unsigned parallel = 16;
    bool progress = false;
    bool no_progress = false;
    bool no_sync = false;
};

bool show_progress(const Flags& f) { return progress_enabled(f.progress, f.no_progress); }

// Chunks of the layer's `mem` file holding the logged pages, in first-touch order,
// each once.
std::vector<uint32_t> chunks_in_access_order(const Manifest& m, const std::string& path) {
    const ManifestEntry* mem = nullptr;
    for (const auto& e : m.entries)
        if (!e.is_dir && e.path == "mem") mem = &e;
    if (!mem) throw DataError(path + ": the layer has no mem file to order by");
    AccessLog log = read_access_log(path, mem->size);
    std::vector<uint32_t> out;
    std::unordered_set<uint32_t> seen;
    for (uint32_t page : log.pages) {
        uint64_t k = uint64_t{page} * kPageSize / kChunkSize;
        if (k >= mem->chunk_count) continue;
        uint32_t idx = mem->first_chunk + static_cast<uint32_t>(k);
        if (seen.insert(idx).second) out.push_back(idx);
    }
    return out;
}

std::string tier_summary(TieredStore& t) {
    std::string s;
    auto st = t.stats();
    for (size_t i = 0; i < st.size(); ++i) {
        if (i) s += "; ";
        s += "tier " + std::to_string(i) + " " + st[i].uri + ": " + std::to_string(st[i].misses) + " misses, " +
             std::to_string(st[i].errors) + " errors";
        if (auto* mc = dynamic_cast<MemcachedStore*>(&t.tier(i)))
            s += " (" + std::to_string(mc->counters().get_errors) + " server errors counted as misses)";
    }
    return s;
}

// A chunk or the manifest in no tier: exit 69 and how each tier answered.
[[noreturn]] void rethrow_missing(TieredStore& t) {
    try {
        throw;
    } catch (const Error& e) {
        if (e.exit_code() != kExitNoInput) throw;
        throw Error(std::string(e.what()) + " (" + tier_summary(t) + ")", kExitUnavailable);
    }
}

json tiers_json(TieredStore& t, double secs) {
    json arr = json::array();
    auto st = t.stats();
    for (size_t i = 0; i < st.size(); ++i) {
        const auto& s = st[i];
        json j = {{"tier", i},
                  {"uri", s.uri},
                  {"hits", s.hits},
                  {"misses", s.misses},
                  {"errors", s.errors},
                  {"corrupt", s.corrupt},
                  {"fills", s.fills},
                  {"fill_errors", s.fill_errors},
                  {"bypassed", s.bypassed},
                  {"bytes", s.bytes},
                  {"gets", s.gets},
                  {"get_seconds", s.get_seconds},
                  {"p50_ms", s.p50_s * 1e3},
                  {"p99_ms", s.p99_s * 1e3},
                  {"mb_per_s", secs > 0 ? double(s.bytes) / secs / 1e6 : 0.0}};
        if (auto* mc = dynamic_cast<MemcachedStore*>(&t.tier(i))) {
            auto c = mc->counters();
            j["memcached"] = {{"hits", c.hits},         {"misses", c.misses},
                              {"get_errors", c.get_errors}, {"put_errors", c.put_errors},
                              {"bytes_read", c.bytes_read}, {"bytes_written", c.bytes_written}};
        }
        arr.push_back(j);
    }
    return arr;
}

void print_table(TieredStore& t, double secs) {
    auto st = t.stats();
    std::printf("%-4s %-40s %7s %7s %6s %7s %6s %10s %8s %8s %8s\n", "tier", "store", "hits", "misses", "errors",
                "corrupt", "fills", "MB", "MB/s", "p50 ms", "p99 ms");
    for (size_t i = 0; i < st.size(); ++i) {
        const auto& s = st[i];
        std::string uri = s.uri.size() > 40 ? s.uri.substr(0, 37) + "..." : s.uri;
        std::printf("%-4zu %-40s %7llu %7llu %6llu %7llu %6llu %10.1f %8.1f %8.2f %8.2f%s\n", i, uri.c_str(),
                    (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.errors,
                    (unsigned long long)s.corrupt, (unsigned long long)s.fills, double(s.bytes) / 1e6,
                    secs > 0 ? double(s.bytes) / secs / 1e6 : 0.0, s.p50_s * 1e3, s.p99_s * 1e3,
                    s.bypassed ? "  (bypassed)" : "");
    }
}

int run(Flags& f) {
    auto id = Digest::from_hex(f.id);
    if (!id) throw UsageError("'" + f.id + "' is not a manifest id (64 hex digits)");
    if (f.warm == !f.out.empty()) throw UsageError("give --out DIR or --warm (one of them)");
    if (f.progress && f.no_progress) throw UsageError("give --progress or --no-progress, not both");

    // A plain store is read through a one-tier TieredStore: the same checks and counters.
    std::unique_ptr<Store> opened = make_store(f.store);
    std::unique_ptr<TieredStore> owned;
    auto* tiered = dynamic_cast<TieredStore*>(opened.get());
    if (!tiered) {
        std::vector<std::unique_ptr<Store>> one;
        one.push_back(std::move(opened));
        owned = std::make_unique<TieredStore>(std::move(one));
        tiered = owned.get();
    }

    auto t0 = std::chrono::steady_clock::now();
    Manifest m;
    try {
        m = open_manifest(*tiered, *id, f.key_file);
    } catch (...) {
        rethrow_missing(*tiered);
    }
    std::vector<uint32_t> first;
    if (!f.order.empty()) first = chunks_in_access_order(m, f.order);

    ProgressBar bar(f.warm ? "warm" : "fetch", show_progress(f));
    ProgressFn progress = [&](uint64_t d, uint64_t t) {
        throw_if_cancelled();
        bar.update(d, t);
    };
    try {
        if (f.warm) {
            auto problems = verify_layer(*tiered, m, f.parallel, progress, first);
            if (!problems.empty()) {
                const auto& p = problems[0];
                std::string more = problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) +
                                                             " more chunks)"
                                                       : "";
                throw Error(p.message() + more, p.exit_code);
            }
        } else {
            GetOptions o;
            o.threads = f.parallel;
            o.sync = !f.no_sync;
            o.progress = progress;
            o.first = first;
            get_layer(*tiered, m, f.out, o);
        }
    } catch (...) {
        bar.finish();
        rethrow_missing(*tiered);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bar.finish();

    LayerStats s = layer_stats(m);
    if (f.common.json) {
        json j = {{"manifest", id->hex()},
                  {"layer", layer_kind_name(m.kind)},
                  {"parent", m.parent ? json(m.parent->hex()) : json(nullptr)},
                  {"mode", f.warm ? "warm" : "out"},
                  {"out", f.warm ? json(nullptr) : json(f.out)},
                  {"chunks", s.unique_chunks},
                  {"ordered_chunks", first.size()},
                  {"stored_bytes", s.stored_bytes},
                  {"logical_bytes", s.logical_bytes},
                  {"parallel", f.parallel},
                  {"seconds", secs},
                  {"mb_per_s", secs > 0 ? double(s.stored_bytes) / secs / 1e6 : 0.0},
                  {"tiers", tiers_json(*tiered, secs)}};
        std::printf("%s\n", j.dump().c_str());
    } else if (log_level() >= LogLevel::kNormal) {
        print_table(*tiered, secs);
        std::printf("%s: %llu chunks, %.1f MB in %.2f s (%.1f MB/s)%s\n", id->hex().c_str(),
                    (unsigned long long)s.unique_chunks, double(s.stored_bytes) / 1e6, secs,
                    secs > 0 ? double(s.stored_bytes) / secs / 1e6 : 0.0,
                    f.warm ? ", upper tiers warmed" : "");
    }
    if (m.parent) log_verbose("parent layer %s not fetched (run snap-fetch on it)", m.parent->hex().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    log_init("snap-fetch", LogLevel::kNormal);
    CLI::App app{"snap-fetch: fetch a snapshot layer's manifest and chunks through a store (typically\n"
                 "tiered: local cache | memcached | origin) with parallel requests, optionally in the\n"
                 "order of an access log; reassemble it (--out) or warm the upper tiers (--warm).",
                 "snap-fetch"};
    Flags f;
    add_common_flags(app, f.common);
    app.add_option("ID", f.id, "Manifest id of the layer")->required();
    app.add_option("--store", f.store,
                   "Store URI, e.g. 'tiered:dir:/var/cache/kindling|memcached://h1:11211,h2:11211|s3://b/p'")
        ->required();
    app.add_option("--out", f.out, "Reassemble the layer into DIR (must not exist, or be empty)");
    app.add_flag("--warm", f.warm, "Only fetch and check the chunks, filling the upper tiers");
    app.add_option("--parallel", f.parallel, "Requests in flight (default 16)")->check(CLI::Range(1, 256));
    app.add_option("--order", f.order,
                   "Access log (fc-launch --record-access): fetch the chunks of mem holding those pages first");
    app.add_option("--key-file", f.key_file,
                   "Secret for the layer (hex or >= 16 raw bytes); default: $KINDLING_CONVERGENCE_SECRET "
                   "for base/runtime layers, $KINDLING_TENANT_KEY for function layers");
    app.add_flag("--no-sync", f.no_sync, "With --out: do not fsync the output");
    app.add_flag("--progress", f.progress, "Draw a progress bar on stderr even when it is not a terminal");
    app.add_flag("--no-progress", f.no_progress, "Never draw a progress bar");
    app.footer("Tiers: tiered:URI|URI|... top first, origin last; stores: dir:/path[?max=SIZE],\n"
               "memcached://HOST:PORT,...[?timeout_ms=N], s3://BUCKET/PREFIX?endpoint=URL&region=R.\n"
               "Exit status: 65 corrupt in every tier, tampered or wrong key; 69 a chunk or the manifest\n"
               "is in no tier; 73 output exists; 75 a tier failed and no other tier had the chunk;\n"
               "78 no secret.  See snap-fetch(1).");
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("snap-fetch", [&] {
        apply_common_flags(f.common);
        install_cancel_signals();
        return run(f);
    });
}
