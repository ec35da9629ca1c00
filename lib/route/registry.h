// routerd's function registry: a JSON file (routerd(1) FUNCTIONS FILE), reloaded on
// SIGHUP.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kindling::route {

struct Snapshot {
    std::string dir;       // local snapshot directory, or
    std::string manifest;  // manifest id + store URI (through snapfs)
    std::string store;
};

struct Function {
    std::string name;
    std::string tenant;
    unsigned memory_mib = 128;
    double timeout_s = 3.0;
    unsigned concurrency = 10;
    std::string description;
    std::map<std::string, Snapshot> versions;     // "$LATEST", "1", ...
    std::map<std::string, std::string> aliases;   // "prod" -> "1"

    // Version for a qualifier ("" = $LATEST): a version name or an alias.
    std::optional<std::string> resolve(const std::string& qualifier) const;
};

class Registry {
public:
    // DataError naming the file and the function on bad input.
    static std::shared_ptr<const Registry> parse(const std::string& text, const std::string& what);
    static std::shared_ptr<const Registry> load(const std::string& path);

    // The function if it exists and belongs to `tenant`.
    const Function* find(const std::string& tenant, const std::string& name) const;
    // Any tenant (event replay).
    const Function* find_any(const std::string& name) const;
    std::vector<const Function*> of_tenant(const std::string& tenant) const;

private:
    std::map<std::string, Function> by_name_;  // names are unique across tenants
};

}  // namespace kindling::route
