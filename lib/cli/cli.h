// CLI11 glue shared by the tools: common flags and parse-error handling.
// Header-only so lib/base stays free of outside libraries.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.h"
#include "base/log.h"
#include "base/tool.h"

namespace kindling {

struct CommonFlags {
    bool json = false;
    bool quiet = false;
    int verbose = 0;
};

// Adds --version, -q, -v (repeatable) and optionally --json.
inline void add_common_flags(CLI::App& app, CommonFlags& f, bool with_json = true) {
    app.set_version_flag("--version", std::string(kVersion));
    app.add_flag("-q,--quiet", f.quiet, "Print only errors");
    app.add_flag("-v,--verbose", f.verbose, "More diagnostics on stderr (-vv for debug)");
    if (with_json) app.add_flag("--json", f.json, "Machine-readable output on stdout");
}

inline void apply_common_flags(const CommonFlags& f) {
    LogLevel lvl = f.quiet ? LogLevel::kQuiet
                   : f.verbose >= 2 ? LogLevel::kDebug
                   : f.verbose == 1 ? LogLevel::kVerbose
                                    : LogLevel::kNormal;
    log_init(log_tool_name(), lvl);
}

// Parses argv. Returns -1 to continue, or the exit code to return now
// (0 for --help/--version, 64 for a usage error, printed as one line).
inline int parse_cli(CLI::App& app, int argc, char** argv) {
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        log_error("%s (see --help)", e.what());
        return kExitUsage;
    }
    return -1;
}

}  // namespace kindling
