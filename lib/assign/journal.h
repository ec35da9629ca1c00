// assignd's sandbox journal (DESIGN.md "Invoke path"): every sandbox state change is
// one record; the table is rebuilt by replaying them.  `Journal` is the interface
// (a later etcd:// backend replicates it); `FileJournal` is the embedded `file:`
// backend for one host.
//
// file: format.  An 8-byte header "KNJRNL1\n", then records:
//
//     u32 length (LE) | u32 crc32c(length bytes ‖ payload) (LE) | payload
//
// payload = one JSON object (encode_record).  Records are only ever appended.  On
// open the file is scanned: a bad record (partial, CRC mismatch, undecodable, or
// zeros) with no valid record anywhere after it is a torn write (a crash while
// appending) and is truncated away with a warning; a bad record followed by a valid
// one is corruption in the middle and a DataError (nothing is dropped silently).
// Group commit: appends are queued to one writer thread, which writes everything
// queued in one write(2) and covers it with one fdatasync(2); callers that need
// durability wait for their record's sequence number.  Lazy appends (a lease taken
// or given back, which a restart turns into idle anyway) wake nobody: they ride with
// the next group commit, at most kLazyFlush later, so the invoke path costs no
// syscall.  The window is timed on an injectable Clock (tests move a ManualClock
// instead of sleeping).  Compaction rewrites the file as the records that rebuild
// the current table plus whatever was appended after them (new file, fdatasync,
// rename).  Leader lock: flock(LOCK_EX) on the journal file, held while it is open;
// a second writer gets JournalLockedError (exit 75).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/fd.h"

namespace kindling {

enum class SandboxEvent { kCreated, kIdle, kBusy, kDead, kDestroyed };

const char* sandbox_event_name(SandboxEvent e);

struct JournalRecord {
    SandboxEvent event = SandboxEvent::kCreated;
    std::string sandbox;   // "sb-7"
    std::string function;  // created only
    std::string version;   // created only
    int64_t pid = 0;       // created only
    std::string vsock;     // created only
    int64_t time_ms = 0;   // wall clock, ms since the epoch

    bool operator==(const JournalRecord&) const = default;
};

std::string encode_record(const JournalRecord& r);
// Throws DataError for a payload that is not a record.
JournalRecord decode_record(std::string_view payload);

struct JournalStats {
    uint64_t appends = 0;
    uint64_t syncs = 0;  // fdatasync calls
    uint64_t bytes = 0;  // file size
    uint64_t compactions = 0;
    uint64_t compacted_bytes = 0;  // file size right after the last compaction
};

class Journal {
public:
    virtual ~Journal() = default;
    // Queues a record; returns its sequence number (1, 2, ...).  It becomes durable
    // with the next group commit; sync(seq) waits for that.
    virtual uint64_t append_nowait(const JournalRecord& r) = 0;
    // Queues a record no caller waits for; it is written with the next group commit,
    // at the latest kLazyFlush later.  Returns its sequence number.
    virtual uint64_t append_lazy(const JournalRecord& r) = 0;
    // Returns once every record up to `seq` is durable; throws if writing failed.
    virtual void sync(uint64_t seq) = 0;
    // Appends and waits until the record is durable.
    void append(const JournalRecord& r) { sync(append_nowait(r)); }
    // Calls `fn` with every record, oldest first (those present when opened plus
    // those appended since).
    virtual void replay(const std::function<void(const JournalRecord&)>& fn) = 0;
    // Replaces the history with `state`, records that rebuild the same table, as of
    // now: records queued before this call are dropped (state covers them), those
    // queued after it follow `state`.  Runs on the writer; a failure leaves the old
    // file in use (logged).  The caller must not append concurrently with this call.
    virtual void compact(const std::vector<JournalRecord>& state) = 0;
    // Flushes what is queued and releases the journal (and its lock).  Idempotent.
    virtual void close() = 0;
    virtual JournalStats stats() const = 0;
    virtual std::string describe() const = 0;
};

// The journal is held by another writer.  Exit 75 (try again later).
class JournalLockedError : public Error {
public:
    explicit JournalLockedError(const std::string& what) : Error(what, kExitTempFail) {}
};

class FileJournal : public Journal {
public:
    // Creates the file if missing, takes the lock, scans and repairs a torn tail.
    // `clock` times the lazy-flush window; it must outlive the journal.
    explicit FileJournal(const std::string& path, const Clock& clock = Clock::steady());
    ~FileJournal() override;

    uint64_t append_nowait(const JournalRecord& r) override;
    uint64_t append_lazy(const JournalRecord& r) override;
    void compact(const std::vector<JournalRecord>& state) override;
    void sync(uint64_t seq) override;
    void replay(const std::function<void(const JournalRecord&)>& fn) override;
    void close() override;
    JournalStats stats() const override;
    std::string describe() const override { return "file:" + path_; }

    // Bytes cut off the tail when opened (0: the file was clean).
    uint64_t truncated_bytes() const { return truncated_bytes_; }

    static constexpr uint32_t kMaxRecord = 1 << 20;
    static constexpr std::chrono::milliseconds kLazyFlush{50};

private:
    uint64_t queue(const JournalRecord& r, bool urgent);
    void hurry(uint64_t seq);  // under mu_: someone waits for seq, lazy or not
    void writer_loop();
    // Writes header + records to PATH.compact, locks it, renames it over PATH.
    UniqueFd rewrite(const std::string& records);

    std::string path_;
    const Clock& clock_;
    UniqueFd fd_;
    uint64_t truncated_bytes_ = 0;

    mutable std::mutex mu_;
    std::condition_variable cv_;        // writer waits for work
    std::condition_variable durable_cv_;  // callers wait for durability
    std::string pending_;               // encoded records not yet written
    Clock::time_point batch_start_;     // when the first of them was queued
    bool urgent_ = false;               // pending_ holds a record someone may wait for
    bool compact_ = false;              // a compaction is requested:
    std::string compact_state_;         //   its framed state records
    size_t compact_cut_ = 0;            //   pending_ bytes it covers
    uint64_t queued_seq_ = 0;           // last sequence number handed out
    uint64_t durable_seq_ = 0;
    uint64_t end_ = 0;                  // file size once pending_ is written
    std::string error_;                 // set when a write or sync failed
    bool closing_ = false;
    JournalStats stats_;
    std::thread writer_;
};

// "file:PATH" (or a plain path) -> FileJournal.  Other schemes: ConfigError.
std::unique_ptr<Journal> open_journal(const std::string& uri);

}  // namespace kindling
