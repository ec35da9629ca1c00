// snapfs: mount snapshot layers from a chunk store with FUSE (man/snapfs.1.scd).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"
#include "cli/cli.h"
#include "fuse/snapfs.h"
#include "store/layer_io.h"
#include "store/store.h"

using namespace kindling;
using json = nlohmann::json;

namespace {

struct Flags {
    CommonFlags common;
    std::vector<std::string> positional;  // ID|NAME=ID ... MOUNTPOINT
    std::string store;
    std::string key_file;
    uint64_t cache_mb = 256;
    std::string record;
    std::string prefetch;
    bool no_prefetch = false;
    uint64_t timeout_ms = 10000;
    unsigned fetch_threads = 8;
    bool foreground = false;
    bool cache_mem = false;
};

Digest parse_id(const std::string& s) {
    auto d = Digest::from_hex(s);
    if (!d) throw UsageError("'" + s + "' is not a manifest id (64 hex digits)");
    return *d;
}

int run(Flags& f) {
    if (f.positional.size() < 2) throw UsageError("give a manifest ID and a MOUNTPOINT (see --help)");
    std::string mountpoint = f.positional.back();
    f.positional.pop_back();
    std::vector<SnapfsLayer> layers;
    for (const auto& arg : f.positional) {
        SnapfsLayer l;
        size_t eq = arg.find('=');
        if (eq != std::string::npos) {
            l.name = arg.substr(0, eq);
            if (l.name.empty() || l.name == "." || l.name == ".." || l.name.find('/') != std::string::npos)
                throw UsageError("'" + l.name + "' is not a layer name (one path component)");
            l.id = parse_id(arg.substr(eq + 1));
        } else {
            if (f.positional.size() > 1) throw UsageError("with several layers, name each one: NAME=ID");
            l.id = parse_id(arg);
        }
        layers.push_back(std::move(l));
    }
    // Everything that can fail for a bad id, key or mountpoint fails here, before
    // anything is mounted.
    check_mountpoint(mountpoint);
    auto store = make_store(f.store);
    for (auto& l : layers) l.manifest = open_manifest(*store, l.id, f.key_file);

    SnapfsOptions o;
    o.cache.capacity_bytes = f.cache_mb << 20;
    o.cache.timeout = std::chrono::milliseconds(f.timeout_ms);
    o.cache.fetch_threads = f.fetch_threads;
    o.record_path = f.record;
    o.prefetch_path = f.prefetch;
    o.reap = !f.no_prefetch;
    o.foreground = f.foreground;
    o.direct_io_everywhere = !f.cache_mem;
    Snapfs fs(*store, std::move(layers), std::move(o));
    fs.run(mountpoint);
    ChunkCacheStats s = fs.stats();
    if (f.common.json) {
        json j = {{"mountpoint", mountpoint},      {"logical_bytes", fs.logical_bytes()},
                  {"chunks_fetched", s.fetches},   {"fetched_bytes", s.fetched_bytes},
                  {"plain_bytes", s.plain_bytes},  {"prefetched_chunks", s.prefetches},
                  {"cache_hits", s.hits},          {"joined_fetches", s.waits},
                  {"failures", s.failures},        {"timeouts", s.timeouts},
                  {"evictions", s.evictions}};
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
    }
    if (fs.stuck_fetches()) {
        // Fetch threads are still inside the store: exit without destroying it.
        std::fflush(nullptr);
        std::_Exit(0);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    log_init("snapfs", LogLevel::kNormal);
    CLI::App app{"snapfs: mount snapshot layers from a chunk store, read-only; chunks are fetched,\n"
                 "checked, decrypted and decompressed on first read; no shared page cache.",
                 "snapfs"};
    Flags f;
    add_common_flags(app, f.common);
    app.add_option("ARGS", f.positional,
                   "ID MOUNTPOINT, or NAME=ID... MOUNTPOINT to mount layers side by side as "
                   "MOUNTPOINT/NAME; MOUNTPOINT is an empty directory")
        ->required()
        ->expected(2, 1 << 16);
    app.add_option("--store", f.store, "Store URI: dir:/path, memcached://..., s3://..., tiered:...")->required();
    app.add_option("--key-file", f.key_file,
                   "Secret for the layers (hex or >= 16 raw bytes); default: $KINDLING_CONVERGENCE_SECRET "
                   "for base/runtime layers, $KINDLING_TENANT_KEY for function layers");
    app.add_option("--cache-mb", f.cache_mb, "Decrypted chunks kept in memory, MiB (default 256)")
        ->check(CLI::Range(1, 1 << 20));
    app.add_option("--record", f.record, "On unmount, write the order of first chunk reads to FILE");
    CLI::Option* prefetch = app.add_option("--prefetch", f.prefetch,
                   "Fetch the chunks of this access log (snapfs --record or fc-launch --record-access) "
                   "in the background, in order (default: the layer's own access.log, if any)");
    app.add_flag("--no-prefetch", f.no_prefetch, "Fetch nothing ahead of the readers, not even for the layer's access.log")
        ->excludes(prefetch);
    app.add_option("--timeout-ms", f.timeout_ms, "A read waits at most this long for a chunk, then EIO (default 10000)")
        ->check(CLI::Range(1, 3600000));
    app.add_option("--fetch-threads", f.fetch_threads, "Parallel store reads (default 8)")->check(CLI::Range(1, 256));
    app.add_flag("-f,--foreground", f.foreground, "Stay in the foreground (default: detach once mounted)");
    app.add_flag("--cache-mem", f.cache_mem,
                 "Let mem go through the kernel page cache so it can be mmapped (shared between readers; "
                 "default: direct I/O for every file)");
    app.footer("Stop with SIGTERM/SIGINT or fusermount3 -u MOUNTPOINT.\n"
               "Exit status: 64 usage; 65 corrupt manifest or wrong key; 66 missing manifest or mountpoint;\n"
               "69 store or FUSE unavailable; 73 mountpoint not empty or in use; 78 no secret.  See snapfs(1).");
    int rc = parse_cli(app, argc, argv);
    if (rc >= 0) return rc;
    return run_tool("snapfs", [&] {
        apply_common_flags(f.common);
        return run(f);
    });
}
