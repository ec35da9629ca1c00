// Snapshot directories: full and diff layers written and read back, sparse mem,
// layer stacking, and clear errors for every broken layer.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/io.h"
#include "hash/crc32c.h"
#include "snapshot/snapshot_dir.h"

using namespace kindling;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPage = 4096;

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/kindling-snapdir.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

LayerConfig config(uint64_t mib, std::vector<std::string> tags = {}) {
    LayerConfig c;
    c.machine_kind = MachineKind::kNano;
    c.vcpu_count = 1;
    c.mem_size_mib = mib;
    c.vsock = VsockConfig{3, "/tmp/v.sock"};
    c.tags = std::move(tags);
    return c;
}

std::vector<uint8_t> vmstate_for(uint64_t mem_size, uint64_t marker = 0) {
    MachineState s;
    s.kind = MachineKind::kNano;
    s.mem_size = mem_size;
    VcpuState v;
    v.regs.rip = 0x100000 + marker;
    kvm_fpu f{};
    v.fpu = f;
    s.vcpus.push_back(v);
    return encode_vmstate(s);
}

void fill_page(GuestMemory& m, uint64_t page, uint64_t seed) {
    auto* p = reinterpret_cast<uint64_t*>(m.base() + page * kPage);
    for (size_t i = 0; i < kPage / 8; ++i) p[i] = seed * 0x9e3779b97f4a7c15ull + i;
}

WriteOptions fast() {
    WriteOptions o;
    o.fsync = false;
    return o;
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no error)";
}

std::vector<uint8_t> stacked(const std::string& dir) {
    LayerStack st = LayerStack::open(dir);
    std::vector<uint8_t> out(st.mem_size(), 0xee);
    st.read_memory(out.data());
    return out;
}

bool equals_memory(const std::vector<uint8_t>& img, const GuestMemory& m) {
    return img.size() == m.size() && std::memcmp(img.data(), m.base(), m.size()) == 0;
}

void edit_json(const std::string& dir, const std::function<void(nlohmann::json&)>& fn) {
    auto j = nlohmann::json::parse(read_file(dir + "/snapshot.json"));
    fn(j);
    std::ofstream(dir + "/snapshot.json") << j.dump(2);
}

}  // namespace

TEST_CASE("snapshot_dir: full layer round trip, sparse mem") {
    TempDir t;
    GuestMemory mem(16 * kMiB);
    for (uint64_t p : {0ull, 1ull, 2ull, 100ull, 2047ull, 4095ull}) fill_page(mem, p, p + 1);
    mem.base()[3000 * kPage + 4095] = 1;  // a page non-zero only in its last byte
    const std::string dir = t.path + "/snap";
    auto vs = vmstate_for(mem.size(), 5);
    LayerConfig c = config(16, {"base"});
    c.drives.push_back({"rootfs", t.path + "/root.ext4", true, false});  // beside the layer
    LayerInfo w = write_full_layer(dir, c, vs, mem);
    CHECK(w.kind == LayerKind::kFull);
    CHECK(w.mem_data_bytes == 7 * kPage);
    CHECK(!fs::exists(dir + ".tmp"));
    for (const auto& e : fs::directory_iterator(t.path)) CHECK(e.path().filename() == "snap");  // no temp dirs left

    struct stat st {};
    REQUIRE(::stat((dir + "/mem").c_str(), &st) == 0);
    CHECK(static_cast<uint64_t>(st.st_size) == mem.size());
    CHECK(static_cast<uint64_t>(st.st_blocks) * 512 <= 7 * kPage + 64 * 1024);  // holes, not zeros

    LayerInfo r = read_layer_info(dir);
    CHECK(r.id == w.id);
    CHECK(r.config.tags == std::vector<std::string>{"base"});
    CHECK(r.config.vsock->guest_cid == 3);
    CHECK(r.config.vsock->uds_path == "/tmp/v.sock");
    REQUIRE(r.config.drives.size() == 1);
    CHECK(r.config.drives[0].path_on_host == dir + "/../root.ext4");
    CHECK(decode_layer_json("x", read_file(dir + "/snapshot.json")).config.drives[0].path_on_host == "../root.ext4");
    CHECK(r.config.drives[0].is_root_device);
    CHECK(r.mem.crc32c == w.mem.crc32c);
    CHECK(r.vmstate.size == vs.size());
    CHECK(!r.parent);

    LayerStack stack = LayerStack::open(dir);
    REQUIRE(stack.layers().size() == 1);
    CHECK(equals_memory(stacked(dir), mem));
    CHECK(stack.page(0).layer == 0);
    CHECK(stack.page(0).offset == 0);
    CHECK(stack.page(4095).offset == 4095 * kPage);
    CHECK(stack.page(3).zero());
    CHECK(stack.page(3000).layer == 0);
    stack.verify_memory();
    MachineState ms = stack.read_vmstate();
    CHECK(ms.vcpus.at(0).regs.rip == 0x100005);

    // The mem CRC in snapshot.json is the CRC of the whole file, holes included.
    std::vector<uint8_t> all = read_file_bytes(dir + "/mem");
    CHECK(crc32c(0, all.data(), all.size()) == r.mem.crc32c);
}

TEST_CASE("snapshot_dir: writing is atomic and never clobbers by accident") {
    TempDir t;
    GuestMemory mem(4 * kMiB);
    fill_page(mem, 1, 1);
    const std::string dir = t.path + "/snap";
    auto vs = vmstate_for(mem.size());
    LayerInfo first = write_full_layer(dir, config(4), vs, mem, fast());
    CHECK(error_of([&] { write_full_layer(dir, config(4), vs, mem, fast()); }) ==
          dir + ": cannot write the snapshot: File exists");
    CHECK(read_layer_info(dir).id == first.id);
    WriteOptions replace = fast();
    replace.replace = true;
    LayerInfo second = write_full_layer(dir + "/", config(4), vs, mem, replace);
    CHECK(read_layer_info(dir).id == second.id);
    // A config that does not match the memory: nothing written, no temp dir left.
    CHECK_THROWS_AS(write_full_layer(t.path + "/other", config(8), vs, mem, fast()), UsageError);
    size_t entries = 0;
    for (const auto& e : fs::directory_iterator(t.path)) {
        (void)e;
        ++entries;
    }
    CHECK(entries == 1);
}

TEST_CASE("snapshot_dir: diff layers stack to the same image as a full snapshot") {
    TempDir t;
    const uint64_t pages = 8 * kMiB / kPage;
    GuestMemory mem(8 * kMiB);
    std::mt19937_64 rng(11);
    for (uint64_t p = 0; p < pages; p += 3) fill_page(mem, p, rng());
    const std::string base = t.path + "/base", runtime = t.path + "/runtime", function = t.path + "/function";
    write_full_layer(base, config(8, {"base"}), vmstate_for(mem.size(), 1), mem, fast());

    // Runtime layer: rewrites some pages, zeroes some, fills some holes.
    DirtyBitmap d1(pages);
    for (uint64_t p = 0; p < pages; p += 7) {
        if (p % 2) fill_page(mem, p, rng());
        else std::memset(mem.base() + p * kPage, 0, kPage);
        d1.set(p);
    }
    LayerInfo l1 = write_diff_layer(runtime, config(8, {"runtime"}), base, vmstate_for(mem.size(), 2), mem, d1.words(), fast());
    CHECK(l1.kind == LayerKind::kDiff);
    REQUIRE(l1.parent);
    CHECK(l1.parent->path == "../base");
    CHECK(l1.parent->id == read_layer_info(base).id);
    CHECK(l1.bitmap);
    CHECK(equals_memory(stacked(runtime), mem));

    // Function layer: a few pages, including one the runtime zeroed and one only the base has.
    DirtyBitmap d2(pages);
    for (uint64_t p : std::vector<uint64_t>{0, 14, 3, 1000, pages - 1}) {
        fill_page(mem, p, rng());
        d2.set(p);
    }
    std::memset(mem.base() + 21 * kPage, 0, kPage);  // the base had data, the runtime rewrote it
    d2.set(21);
    LayerInfo l2 = write_diff_layer(function, config(8, {"function"}), runtime, vmstate_for(mem.size(), 3), mem, d2.words(), fast());
    CHECK(l2.mem_data_bytes == 5 * kPage);

    LayerStack st = LayerStack::open(function);
    REQUIRE(st.layers().size() == 3);
    CHECK(st.layers()[0].dir == function);
    CHECK(st.layers()[1].dir == fs::canonical(runtime).string());
    CHECK(st.layers()[2].dir == fs::canonical(base).string());
    CHECK(equals_memory(stacked(function), mem));
    CHECK(st.page(0).layer == 0);                           // function
    CHECK(st.page(7).layer == 1);                           // runtime, odd: rewritten
    CHECK(st.page(28).zero());                              // runtime zeroed it
    CHECK(st.page(21).zero());                              // function zeroed it
    CHECK(st.page(6).layer == 2);                           // base only
    CHECK(st.page(1).zero());                               // never written anywhere
    CHECK(st.page(pages - 1).offset == (pages - 1) * kPage);
    CHECK(st.read_vmstate().vcpus.at(0).regs.rip == 0x100003);  // the top layer's machine
    st.verify_memory();

    // A full snapshot of the same machine reads back identically.
    write_full_layer(t.path + "/full", config(8), vmstate_for(mem.size(), 3), mem, fast());
    CHECK(stacked(t.path + "/full") == stacked(function));

    // runs() covers every page exactly once, in order.
    uint64_t next = 0;
    for (const auto& r : st.runs()) {
        CHECK(r.first_page == next);
        next += r.pages;
    }
    CHECK(next == pages);

    // The layers move as a tree: relative parent paths keep working.
    fs::rename(t.path, t.path + ".moved");
    fs::create_directory(t.path);  // so TempDir's cleanup has something to remove
    CHECK(stacked(t.path + ".moved/function").size() == mem.size());
    fs::remove_all(t.path + ".moved");
}

TEST_CASE("snapshot_dir: broken layers fail with the file and the reason") {
    TempDir t;
    GuestMemory mem(16 * kMiB);
    fill_page(mem, 5, 5);
    const std::string base = t.path + "/base", top = t.path + "/top";
    auto vs = vmstate_for(mem.size());
    write_full_layer(base, config(16), vs, mem, fast());
    DirtyBitmap d(mem.size() / kPage);
    d.set(5);
    write_diff_layer(top, config(16), base, vs, mem, d.words(), fast());

    SUBCASE("missing parent") {
        fs::rename(base, t.path + "/elsewhere");
        std::string e = error_of([&] { LayerStack::open(top); });
        CHECK(e.find(top + "/snapshot.json: parent layer " + fs::canonical(t.path).string() + "/base is missing (") == 0);
        CHECK_THROWS_AS(LayerStack::open(top), DataError);
    }
    SUBCASE("parent replaced by another layer") {
        fs::remove_all(base);
        write_full_layer(base, config(16), vs, mem, fast());
        CHECK(error_of([&] { LayerStack::open(top); }).find(top + "/snapshot.json: parent layer " + fs::canonical(t.path).string() + "/base has id ") != std::string::npos);
    }
    SUBCASE("mem shorter than the machine") {
        REQUIRE(::truncate((base + "/mem").c_str(), 1 << 20) == 0);
        CHECK(error_of([&] { LayerStack::open(base); }) ==
              base + "/mem is shorter than the machine's memory: 1048576 < 16777216 bytes");
    }
    SUBCASE("mem missing") {
        fs::remove(top + "/mem");
        CHECK(error_of([&] { read_layer_info(top); }) == top + "/mem is missing");
    }
    SUBCASE("bitmap corrupt") {
        std::fstream f(top + "/mem.bitmap", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(3);
        f.put('\x7f');
        f.close();
        CHECK(error_of([&] { LayerStack::open(top); }).find(top + "/mem.bitmap: CRC32C mismatch (snapshot.json 0x") == 0);
    }
    SUBCASE("vmstate corrupt") {
        std::fstream f(top + "/vmstate", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(40);
        f.put('\x01');
        f.close();
        LayerStack st = LayerStack::open(top);
        CHECK(error_of([&] { st.read_vmstate(); }).find(top + "/vmstate: CRC32C mismatch (snapshot.json 0x") == 0);
    }
    SUBCASE("mem corrupt: only verify_memory reads it all") {
        std::fstream f(base + "/mem", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(5 * kPage + 9);
        f.put('\x42');
        f.close();
        LayerStack st = LayerStack::open(top);
        CHECK(error_of([&] { st.verify_memory(); }).find(base + "/mem: CRC32C mismatch") == 0);
    }
    SUBCASE("snapshot.json: bad JSON, newer version, wrong types, wrong kind") {
        std::ofstream(top + "/snapshot.json") << "{\"format_version\": 1,";
        CHECK(error_of([&] { read_layer_info(top); }).find(top + "/snapshot.json: invalid JSON: ") == 0);
        // A number beyond double (tests/fuzz/layer_info found it escaping as nlohmann's out_of_range).
        std::ofstream(top + "/snapshot.json") << "{\"format_version\": 1e999}";
        CHECK(error_of([&] { read_layer_info(top); }).find(top + "/snapshot.json: invalid JSON: number overflow") == 0);
        std::ofstream(top + "/snapshot.json") << "{\"tags\": " << std::string(100000, '[') << std::string(100000, ']') << "}";
        CHECK(error_of([&] { read_layer_info(top); }) ==
              top + "/snapshot.json: JSON nested deeper than 64 levels (at byte 72)");
        write_diff_layer(t.path + "/v", config(16), base, vs, mem, d.words(), fast());
        edit_json(t.path + "/v", [](auto& j) { j["format_version"] = 2; });
        CHECK(error_of([&] { read_layer_info(t.path + "/v"); }) ==
              t.path + "/v/snapshot.json: snapshot format version 2 is not supported (this kindling reads version 1)");
        edit_json(t.path + "/v", [](auto& j) {
            j["format_version"] = 1;
            j["machine"]["vcpu_count"] = "one";
        });
        CHECK(error_of([&] { read_layer_info(t.path + "/v"); }) ==
              t.path + "/v/snapshot.json: machine.vcpu_count: not an unsigned integer");
        edit_json(t.path + "/v", [](auto& j) {
            j["machine"]["vcpu_count"] = 1;
            j["parent"] = nullptr;
        });
        CHECK(error_of([&] { read_layer_info(t.path + "/v"); }) ==
              t.path + "/v/snapshot.json: parent: a diff layer needs a parent");
        edit_json(t.path + "/v", [](auto& j) {
            j["parent"] = {{"path", "../base"}, {"id", std::string(32, 'a')}};
            j.erase("files");
        });
        CHECK(error_of([&] { read_layer_info(t.path + "/v"); }) == t.path + "/v/snapshot.json: files: missing");
    }
    SUBCASE("vmstate of another machine") {
        const std::string odd = t.path + "/odd";
        write_full_layer(odd, config(16), vmstate_for(32 * kMiB), mem, fast());
        CHECK(error_of([&] { LayerStack::open(odd).read_vmstate(); }) ==
              odd + "/vmstate: memory size 33554432 differs from snapshot.json's 16777216");
    }
    SUBCASE("diff over a different machine is refused at write time") {
        GuestMemory other(8 * kMiB);
        DirtyBitmap d8(other.size() / kPage);
        CHECK_THROWS_WITH_AS(write_diff_layer(t.path + "/x", config(8), base, vmstate_for(other.size()), other, d8.words(), fast()),
                             doctest::Contains("is a different machine"), UsageError);
    }
    SUBCASE("no snapshot at all") {
        CHECK_THROWS_AS(LayerStack::open(t.path + "/nothing"), SysError);
    }
}

TEST_CASE("snapshot_dir: DirtyBitmap from per-slot KVM logs") {
    DirtyBitmap b(200);
    std::vector<uint64_t> slot0 = {0x8000000000000001ull, 0x1ull};   // pages 0, 63, 64 of a 70-page slot
    std::vector<uint64_t> slot1 = {~0ull, ~0ull, ~0ull};  // only 130 bits count
    b.add_slot_log(0, slot0, 70);
    b.add_slot_log(70, slot1, 130);
    CHECK(b.test(0));
    CHECK(b.test(63));
    CHECK(b.test(64));
    CHECK(!b.test(65));
    CHECK(!b.test(69));
    for (uint64_t p = 70; p < 200; ++p) CHECK(b.test(p));
    CHECK(b.words().size() == 4);
    CHECK((b.words()[3] >> 8) == 0);  // nothing beyond page 199
    CHECK_THROWS(b.add_slot_log(100, slot1, 130));
}

TEST_CASE("snapshot_dir: the mincore skip stores the same image as reading every page") {
    // Figures for both scans: bench/snapshot_dir.
    TempDir t;
    GuestMemory mem(8 * kMiB);
    const uint64_t pages = mem.size() / kPage;
    // 1% of pages hold data; half of the rest was read (resident zero pages), the
    // other half never touched.
    for (uint64_t p = 0; p < pages; p += 100) fill_page(mem, p, p);
    for (uint64_t p = 0; p < pages / 2; ++p) (void)*reinterpret_cast<volatile uint8_t*>(mem.base() + p * kPage + 64);
    auto vs = vmstate_for(mem.size());
    WriteOptions skip = fast();
    skip.scan = MemScan::kSkipNonResident;
    LayerInfo a = write_full_layer(t.path + "/a", config(8), vs, mem, fast());
    LayerInfo b = write_full_layer(t.path + "/b", config(8), vs, mem, skip);
    CHECK(b.mem.crc32c == a.mem.crc32c);
    CHECK(b.mem_data_bytes == a.mem_data_bytes);
    CHECK(b.mem_data_bytes == (pages + 99) / 100 * kPage);
    CHECK(equals_memory(stacked(t.path + "/b"), mem));
}

TEST_CASE("snapshot_dir: a layer references no host file outside the directory holding it") {
    TempDir t;
    GuestMemory mem(1 * kMiB);
    const std::string base = t.path + "/fn/base", top = t.path + "/fn/top";
    fs::create_directories(t.path + "/fn");
    // Writing: a drive or a parent outside the layer's directory is refused at once.
    LayerConfig c = config(1);
    c.drives.push_back({"rootfs", "/etc/passwd", true, false});
    CHECK_THROWS_AS(write_full_layer(base, c, vmstate_for(mem.size(), 1), mem), UsageError);
    CHECK_FALSE(fs::exists(base));
    write_full_layer(base, config(1), vmstate_for(mem.size(), 1), mem);
    std::vector<uint64_t> dirty((mem.size() / kPage + 63) / 64);
    CHECK_THROWS_AS(write_diff_layer(t.path + "/elsewhere/top", config(1), base, vmstate_for(mem.size(), 2), mem, dirty), UsageError);
    write_diff_layer(top, config(1), base, vmstate_for(mem.size(), 2), mem, dirty);
    CHECK(LayerStack::open(top).layers().size() == 2);

    // Reading: snapshot.json edited to point elsewhere.
    auto edit = [&](const std::string& dir, auto f) {
        auto j = nlohmann::json::parse(read_file(dir + "/snapshot.json"));
        f(j);
        write_file_atomic(dir + "/snapshot.json", j.dump());
    };
    const std::string good = read_file(top + "/snapshot.json");
    edit(top, [](auto& j) { j["devices"]["drives"] = {{{"drive_id", "d"}, {"path_on_host", "/etc/shadow"},
                                                       {"is_root_device", false}, {"is_read_only", true}}}; });
    CHECK_THROWS_WITH_AS(LayerStack::open(top), doctest::Contains("is absolute"), DataError);
    edit(top, [](auto& j) { j["devices"]["drives"] = {{{"drive_id", "d"}, {"path_on_host", "../../../../../etc/shadow"},
                                                       {"is_root_device", false}, {"is_read_only", true}}}; });
    CHECK_THROWS_WITH_AS(LayerStack::open(top), doctest::Contains("is outside"), DataError);
    write_file_atomic(top + "/snapshot.json", good);
    edit(top, [&](auto& j) { j["parent"]["path"] = fs::absolute(base).string(); });
    CHECK_THROWS_WITH_AS(LayerStack::open(top), doctest::Contains("parent.path"), DataError);
    // A symlink beside the layer that leads out is resolved before the check.
    fs::create_directory_symlink("/", t.path + "/fn/out");
    write_file_atomic(top + "/snapshot.json", good);
    edit(top, [](auto& j) { j["parent"]["path"] = "../out/tmp"; });
    CHECK_THROWS_WITH_AS(LayerStack::open(top), doctest::Contains("outside"), DataError);
}
