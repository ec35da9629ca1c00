#include "route/registry.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/json_depth.h"

namespace kindling::route {

using json = nlohmann::json;

std::optional<std::string> Function::resolve(const std::string& qualifier) const {
    std::string q = qualifier.empty() ? "$LATEST" : qualifier;
    if (versions.count(q)) return q;
    auto a = aliases.find(q);
    if (a != aliases.end() && versions.count(a->second)) return a->second;
    return std::nullopt;
}

namespace {

Snapshot parse_snapshot(const json& j, const std::string& what) {
    if (!j.is_object()) throw DataError(what + ": snapshot must be an object");
    Snapshot s;
    if (j.contains("dir")) s.dir = j.at("dir").get<std::string>();
    if (j.contains("manifest")) s.manifest = j.at("manifest").get<std::string>();
    if (j.contains("store")) s.store = j.at("store").get<std::string>();
    if (s.dir.empty() == (s.manifest.empty() || s.store.empty()))
        throw DataError(what + ": snapshot needs {\"dir\"} or {\"manifest\", \"store\"}");
    return s;
}

}  // namespace

std::shared_ptr<const Registry> Registry::parse(const std::string& text, const std::string& what) {
    auto reg = std::make_shared<Registry>();
    json doc;
    try {
        doc = parse_json<json>(text, what);
    } catch (const json::exception& e) {
        throw DataError(what + ": " + e.what());
    }
    const json& list = doc.is_object() && doc.contains("functions") ? doc.at("functions") : doc;
    if (!list.is_array()) throw DataError(what + ": expected {\"functions\": [...]} or an array");
    for (const auto& j : list) {
        std::string where = what;
        try {
            Function f;
            f.name = j.at("name").get<std::string>();
            where = what + ": function " + f.name;
            if (f.name.empty() || f.name.find_first_of(":/ ") != std::string::npos)
                throw DataError(where + ": bad function name");
            f.tenant = j.at("tenant").get<std::string>();
            f.memory_mib = j.value("memory", 128u);
            f.timeout_s = j.value("timeout", 3.0);
            f.concurrency = j.value("concurrency", 10u);
            f.description = j.value("description", std::string());
            if (f.timeout_s <= 0 || f.timeout_s > 900) throw DataError(where + ": timeout must be in (0, 900] s");
            if (j.contains("snapshot")) f.versions["$LATEST"] = parse_snapshot(j.at("snapshot"), where);
            if (j.contains("versions"))
                for (const auto& [v, vj] : j.at("versions").items())
                    f.versions[v] = parse_snapshot(vj.contains("snapshot") ? vj.at("snapshot") : vj,
                                                   where + ": version " + v);
            if (f.versions.empty()) throw DataError(where + ": no versions and no snapshot");
            if (!f.versions.count("$LATEST")) {
                // $LATEST: the highest numbered version.
                std::string best;
                for (const auto& [v, s] : f.versions)
                    if (best.empty() || std::stoul(v) > std::stoul(best)) best = v;
                f.versions["$LATEST"] = f.versions[best];
            }
            if (j.contains("aliases"))
                for (const auto& [a, v] : j.at("aliases").items()) {
                    if (!f.versions.count(v.get<std::string>()))
                        throw DataError(where + ": alias " + a + " names no version");
                    f.aliases[a] = v.get<std::string>();
                }
            if (!reg->by_name_.emplace(f.name, f).second)
                throw DataError(where + ": defined twice (names are unique across tenants)");
        } catch (const json::exception& e) {
            throw DataError(where + ": " + e.what());
        } catch (const std::logic_error& e) {
            throw DataError(where + ": " + e.what());
        }
    }
    return reg;
}

std::shared_ptr<const Registry> Registry::load(const std::string& path) { return parse(read_file(path), path); }

const Function* Registry::find(const std::string& tenant, const std::string& name) const {
    const Function* f = find_any(name);
    return f && f->tenant == tenant ? f : nullptr;
}

const Function* Registry::find_any(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &it->second;
}

std::vector<const Function*> Registry::of_tenant(const std::string& tenant) const {
    std::vector<const Function*> out;
    for (const auto& [n, f] : by_name_)
        if (f.tenant == tenant) out.push_back(&f);
    return out;
}

}  // namespace kindling::route
