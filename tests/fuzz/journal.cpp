// assignd's journal replay (lib/assign/journal FileJournal + SandboxTable::rebuild):
// the input is the journal file.  Tried as given (torn tails, damage in the middle)
// and with every frame's CRC32C fixed so mutations reach the records' JSON.  A
// journal that opens must rebuild the same table after compaction and a reopen.
#include <cstdlib>
#include <fstream>
#include <vector>

#include "assign/journal.h"
#include "assign/sandbox_table.h"
#include "base/byte_order.h"
#include "base/error.h"
#include "hash/crc32c.h"
#include "tests/fuzz/fuzz.h"

using namespace kindling;

namespace {

const fuzz::TempDir& dir() {
    static fuzz::TempDir d;
    return d;
}

std::vector<JournalRecord> rebuild(const std::string& path) {
    FileJournal j(path);
    SandboxTable t(j);
    t.rebuild();
    std::vector<JournalRecord> state = t.state_records();
    j.compact(state);
    j.close();
    for (auto& r : state) r.time_ms = 0;  // state_records() stamps the time of the call
    return state;
}

void open_replay(const std::vector<uint8_t>& bytes) {
    std::string path = dir().path + "/journal";
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(bytes.data()),
                                                                   static_cast<std::streamsize>(bytes.size()));
    std::vector<JournalRecord> first;
    try {
        first = rebuild(path);
    } catch (const DataError&) {
        return;
    }
    if (rebuild(path) != first) std::abort();  // compaction changed the table
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static bool init = (fuzz::quiet(), true);
    (void)init;
    std::vector<uint8_t> b(data, data + size);
    open_replay(b);
    bool fixed = false;
    for (size_t off = 8; off + 8 <= b.size();) {
        uint32_t len = load_le<uint32_t>(&b[off]);
        if (len > b.size() - off - 8) break;
        uint32_t crc = crc32c(crc32c(0, &b[off], 4), &b[off + 8], len);
        if (crc != load_le<uint32_t>(&b[off + 4])) store_le(&b[off + 4], crc), fixed = true;
        off += 8 + len;
    }
    if (fixed) open_replay(b);
    return 0;
}
