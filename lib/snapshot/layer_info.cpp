#include "snapshot/layer_info.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/io.h"
#include "base/json_depth.h"
#include "hash/crc32c.h"

namespace kindling {

using json = nlohmann::json;

namespace {

std::string hex32(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08" PRIx32, v);
    return b;
}

json summary_json(const FileSummary& f) { return json{{"size", f.size}, {"crc32c", f.crc32c}}; }

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

}  // namespace

std::string encode_layer_json(const LayerInfo& l) {
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
                                 {"is_read_only", d.is_read_only},
                                 {"copy_on_write", d.copy_on_write}});
    j["devices"] = dev;
    j["parent"] = l.parent ? json{{"path", l.parent->path}, {"id", l.parent->id}} : json(nullptr);
    j["tags"] = l.config.tags;
    json files;
    files["vmstate"] = summary_json(l.vmstate);
    files["mem"] = summary_json(l.mem);
    files["mem"]["data_bytes"] = l.mem_data_bytes;
    if (l.bitmap) files["mem.bitmap"] = summary_json(*l.bitmap);
    j["files"] = files;
    return j.dump(2) + "\n";
}

LayerInfo decode_layer_json(const std::string& file, const std::string& text) {
    json j;
    try {
        j = parse_json<json>(text, file);
    } catch (const json::exception& e) {  // parse_error, or out_of_range: a number like 1e999
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
        DriveConfig dc{r.str(drives[i], "drive_id", f + ".drive_id"), r.str(drives[i], "path_on_host", f + ".path_on_host"),
                       r.boolean(drives[i], "is_root_device", f + ".is_root_device"),
                       r.boolean(drives[i], "is_read_only", f + ".is_read_only")};
        if (dc.path_on_host.empty()) r.fail(f + ".path_on_host", "empty");
        // A snapshot names no host file: its drives are files of its layers.
        if (dc.path_on_host[0] == '/')
            r.fail(f + ".path_on_host", "\"" + dc.path_on_host + "\" is absolute: a layer's drives are files inside its directory or its parents'");
        // Optional: layers written before copy-on-write drives existed lack it.
        if (drives[i].contains("copy_on_write")) dc.copy_on_write = r.boolean(drives[i], "copy_on_write", f + ".copy_on_write");
        if (dc.copy_on_write && dc.is_read_only) r.fail(f + ".copy_on_write", "a read-only drive cannot also be copy-on-write");
        l.config.drives.push_back(std::move(dc));
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
        if (l.parent->path[0] == '/') r.fail("parent.path", "\"" + l.parent->path + "\" is absolute: a parent layer is named relative to its child");
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

LayerInfo read_layer_info(const std::string& dir) {
    const std::string json_path = dir + "/snapshot.json";
    LayerInfo l = decode_layer_json(json_path, read_file(json_path));
    for (auto& d : l.config.drives) d.path_on_host = dir + "/" + d.path_on_host;
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

std::vector<uint8_t> read_layer_file(const std::string& path, const FileSummary& expected) {
    std::vector<uint8_t> b = read_file_bytes(path);
    if (b.size() != expected.size)
        throw DataError(path + ": " + std::to_string(b.size()) + " bytes, snapshot.json says " + std::to_string(expected.size));
    check_layer_crc(path, expected.crc32c, crc32c(0, b.data(), b.size()));
    return b;
}

void check_layer_crc(const std::string& path, uint32_t expected, uint32_t actual) {
    if (actual != expected)
        throw DataError(path + ": CRC32C mismatch (snapshot.json " + hex32(expected) + ", file " + hex32(actual) + ")");
}

std::string layer_scope(const std::string& dir) {
    std::filesystem::path d = resolve_path(dir);
    return (d.has_filename() ? d.parent_path() : d.parent_path().parent_path()).string();
}

bool in_layer_scope(const std::string& scope, const std::string& path) { return path_within(scope, path); }

std::string layer_reference(const std::string& dir, const std::string& path, const std::string& what) {
    if (!in_layer_scope(layer_scope(dir), path))
        throw UsageError("snapshot: " + what + " " + path + " is outside " + layer_scope(dir) +
                         ": a layer may only reference files beside it or below (a restore would refuse it)");
    return std::filesystem::path(resolve_path(path)).lexically_relative(resolve_path(dir)).string();
}

}  // namespace kindling
