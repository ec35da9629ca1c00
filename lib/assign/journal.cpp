#include "assign/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "base/byte_order.h"
#include "base/io.h"
#include "base/log.h"
#include "hash/crc32c.h"

namespace kindling {

namespace {

constexpr char kHeader[8] = {'K', 'N', 'J', 'R', 'N', 'L', '1', '\n'};

const SandboxEvent kEvents[] = {SandboxEvent::kCreated, SandboxEvent::kIdle, SandboxEvent::kBusy,
                                SandboxEvent::kDead, SandboxEvent::kDestroyed};

uint32_t record_crc(uint32_t len, const void* payload) {
    uint8_t l[4];
    store_le(l, len);
    return crc32c(crc32c(0, l, 4), payload, len);
}

void frame(std::string& out, const std::string& payload) {
    append_le(out, static_cast<uint32_t>(payload.size()));
    append_le(out, record_crc(static_cast<uint32_t>(payload.size()), payload.data()));
    out += payload;
}

}  // namespace

const char* sandbox_event_name(SandboxEvent e) {
    switch (e) {
    case SandboxEvent::kCreated: return "created";
    case SandboxEvent::kIdle: return "idle";
    case SandboxEvent::kBusy: return "busy";
    case SandboxEvent::kDead: return "dead";
    case SandboxEvent::kDestroyed: return "destroyed";
    }
    return "?";
}

std::string encode_record(const JournalRecord& r) {
    nlohmann::json j = {{"ev", sandbox_event_name(r.event)}, {"id", r.sandbox}, {"t", r.time_ms}};
    if (r.event == SandboxEvent::kCreated) {
        j["fn"] = r.function;
        j["ver"] = r.version;
        j["pid"] = r.pid;
        j["vsock"] = r.vsock;
    }
    return j.dump();
}

JournalRecord decode_record(std::string_view payload) {
    nlohmann::json j = nlohmann::json::parse(payload, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw DataError("journal record is not a JSON object");
    JournalRecord r;
    try {
        std::string ev = j.at("ev").get<std::string>();
        bool known = false;
        for (SandboxEvent e : kEvents)
            if (ev == sandbox_event_name(e)) r.event = e, known = true;
        if (!known) throw DataError("journal record has unknown event '" + ev + "'");
        r.sandbox = j.at("id").get<std::string>();
        r.time_ms = j.value("t", int64_t(0));
        if (r.event == SandboxEvent::kCreated) {
            r.function = j.at("fn").get<std::string>();
            r.version = j.at("ver").get<std::string>();
            r.pid = j.at("pid").get<int64_t>();
            r.vsock = j.at("vsock").get<std::string>();
        }
    } catch (const nlohmann::json::exception& e) {
        throw DataError(std::string("journal record: ") + e.what());
    }
    return r;
}

FileJournal::FileJournal(const std::string& path, const Clock& clock) : path_(path), clock_(clock) {
    fd_ = open_file(path, O_RDWR | O_CREAT, 0644);
    if (::flock(fd_.get(), LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            throw JournalLockedError(path + ": journal is locked by another assignd (leader lock)");
        throw_errno("flock " + path);
    }
    struct stat st {};
    if (::fstat(fd_.get(), &st) < 0) throw_errno("stat " + path);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < sizeof kHeader) {
        // New (or torn while being created): write the header.
        if (size > 0) {
            std::vector<uint8_t> head(size);
            pread_full(fd_.get(), head.data(), size, 0, path);
            if (std::memcmp(head.data(), kHeader, size) != 0)
                throw DataError(path + ": not a kindling journal (bad header)");
        }
        if (::ftruncate(fd_.get(), 0) < 0) throw_errno("truncate " + path);
        pwrite_full(fd_.get(), kHeader, sizeof kHeader, 0, path);
        if (::fdatasync(fd_.get()) < 0) throw_errno("fdatasync " + path);
        fsync_dir(dirname_of(path));
        end_ = sizeof kHeader;
    } else {
        std::vector<uint8_t> data(size);
        pread_full(fd_.get(), data.data(), size, 0, path);
        if (std::memcmp(data.data(), kHeader, sizeof kHeader) != 0)
            throw DataError(path + ": not a kindling journal (bad header)");
        // A frame is valid if it fits, its CRC matches and it decodes.
        auto valid_at = [&](uint64_t p, uint32_t* len_out) {
            if (size - p < 8) return false;
            uint32_t len = load_le<uint32_t>(&data[p]);
            if (len > kMaxRecord || len > size - p - 8) return false;
            if (record_crc(len, &data[p + 8]) != load_le<uint32_t>(&data[p + 4])) return false;
            try {
                decode_record(std::string_view(reinterpret_cast<const char*>(&data[p + 8]), len));
            } catch (const DataError&) {
                return false;
            }
            if (len_out) *len_out = len;
            return true;
        };
        uint64_t off = sizeof kHeader;
        uint64_t records = 0;
        while (off < size) {
            uint32_t len = 0;
            if (valid_at(off, &len)) {
                off += 8 + len;
                records++;
                continue;
            }
            // A torn append leaves a partial or garbled record (or zeros) at the end of
            // the file and nothing valid after it.  A valid record anywhere after the bad
            // one means the middle of the journal is damaged: refuse, don't drop data.
            uint64_t left = size - off;
            for (uint64_t p = off + 1; p + 9 <= size; p++) {
                if (data[p + 8] != '{') continue;
                if (valid_at(p, nullptr))
                    throw DataError(path + ": record " + std::to_string(records + 1) + " at offset " +
                                    std::to_string(off) + " is corrupt and valid records follow it at offset " +
                                    std::to_string(p) + " (journal damaged in the middle)");
            }
            log_warn("%s: torn last record at offset %llu: truncating %llu bytes", path.c_str(),
                     static_cast<unsigned long long>(off), static_cast<unsigned long long>(left));
            if (::ftruncate(fd_.get(), static_cast<off_t>(off)) < 0) throw_errno("truncate " + path);
            if (::fdatasync(fd_.get()) < 0) throw_errno("fdatasync " + path);
            truncated_bytes_ = left;
            size = off;
            break;
        }
        end_ = size;
    }
    stats_.bytes = end_;
    writer_ = std::thread([this] { writer_loop(); });
}

FileJournal::~FileJournal() {
    try {
        close();
    } catch (const std::exception& e) {
        log_error("%s: %s", path_.c_str(), e.what());
    }
}

uint64_t FileJournal::queue(const JournalRecord& r, bool urgent) {
    std::string payload = encode_record(r);
    if (payload.size() > kMaxRecord) throw DataError(path_ + ": journal record too large");
    std::lock_guard lk(mu_);
    if (closing_) throw Error(path_ + ": journal is closed");
    if (!error_.empty()) throw Error(error_, kExitIoErr);
    // The writer sleeps until pending_ is non-empty, then (for lazy records) until
    // kLazyFlush after the batch's first record: only that record wakes it, or the
    // first urgent one.  urgent_ is only ever set while pending_ holds records.
    bool wake = pending_.empty() || (urgent && !urgent_);
    if (pending_.empty()) batch_start_ = clock_.now();
    frame(pending_, payload);
    urgent_ = urgent_ || urgent;
    stats_.appends++;
    if (wake) cv_.notify_one();
    return ++queued_seq_;
}

uint64_t FileJournal::append_nowait(const JournalRecord& r) { return queue(r, true); }

uint64_t FileJournal::append_lazy(const JournalRecord& r) { return queue(r, false); }

void FileJournal::compact(const std::vector<JournalRecord>& state) {
    std::string framed;
    for (const JournalRecord& r : state) frame(framed, encode_record(r));
    std::lock_guard lk(mu_);
    if (closing_ || !error_.empty()) return;
    compact_ = true;
    compact_state_ = std::move(framed);
    compact_cut_ = pending_.size();
    cv_.notify_one();
}

void FileJournal::hurry(uint64_t seq) {
    if (durable_seq_ < seq && !pending_.empty() && !urgent_) {
        urgent_ = true;
        cv_.notify_one();
    }
}

void FileJournal::sync(uint64_t seq) {
    std::unique_lock lk(mu_);
    hurry(seq);
    durable_cv_.wait(lk, [&] { return durable_seq_ >= seq || !error_.empty(); });
    if (durable_seq_ < seq) throw Error(error_, kExitIoErr);
}

UniqueFd FileJournal::rewrite(const std::string& records) {
    std::string tmp = path_ + ".compact";
    UniqueFd fd = open_file(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    try {
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) < 0) throw_errno("flock " + tmp);
        std::string data(kHeader, sizeof kHeader);
        data += records;
        pwrite_full(fd.get(), data.data(), data.size(), 0, tmp);
        if (::fdatasync(fd.get()) < 0) throw_errno("fdatasync " + tmp);
        // The new file carries our lock before it takes the name: a second assignd
        // opening PATH finds it locked either way.
        if (::rename(tmp.c_str(), path_.c_str()) < 0) throw_errno("rename " + tmp + " to " + path_);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_dir(dirname_of(path_));
    return fd;
}

void FileJournal::writer_loop() {
    std::unique_lock lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return !pending_.empty() || compact_ || closing_; });
        if (!urgent_ && !compact_ && !closing_)
            wait_until(clock_, cv_, lk, batch_start_ + kLazyFlush, [&] { return urgent_ || compact_ || closing_; });
        if (pending_.empty() && !compact_) return;  // closing with nothing left
        std::string batch;
        batch.swap(pending_);
        urgent_ = false;
        bool compact = compact_;
        compact_ = false;
        std::string state;
        state.swap(compact_state_);
        size_t cut = compact_cut_;
        uint64_t seq = queued_seq_;
        uint64_t off = end_;
        lk.unlock();
        std::string err;
        UniqueFd fresh;
        if (compact) {
            try {
                fresh = rewrite(state + batch.substr(cut));
            } catch (const std::exception& e) {
                log_warn("%s: compaction failed, the journal keeps growing: %s", path_.c_str(), e.what());
            }
        }
        if (!fresh) {
            try {
                pwrite_full(fd_.get(), batch.data(), batch.size(), static_cast<off_t>(off), path_);
                if (::fdatasync(fd_.get()) < 0) throw_errno("fdatasync " + path_);
            } catch (const std::exception& e) {
                err = e.what();
            }
        }
        lk.lock();
        if (!err.empty()) {
            // The journal can no longer promise durability: every later append fails.
            log_error("%s", err.c_str());
            error_ = err;
            durable_cv_.notify_all();
            return;
        }
        if (fresh) {
            fd_ = std::move(fresh);  // closing the old file releases its lock
            end_ = sizeof kHeader + state.size() + (batch.size() - cut);
            stats_.compactions++;
            stats_.compacted_bytes = end_;
        } else {
            end_ = off + batch.size();
        }
        stats_.syncs++;
        stats_.bytes = end_;
        durable_seq_ = seq;
        durable_cv_.notify_all();
    }
}

void FileJournal::replay(const std::function<void(const JournalRecord&)>& fn) {
    uint64_t end;
    std::vector<uint8_t> data;
    {
        std::unique_lock lk(mu_);
        uint64_t seq = queued_seq_;
        hurry(seq);
        durable_cv_.wait(lk, [&] { return durable_seq_ >= seq || !error_.empty(); });
        if (!fd_) throw Error(path_ + ": journal is closed");
        end = end_;
        data.resize(end);
        pread_full(fd_.get(), data.data(), end, 0, path_);
    }
    uint64_t off = sizeof kHeader;
    while (off + 8 <= end) {
        uint32_t len = load_le<uint32_t>(&data[off]);
        if (off + 8 + len > end) break;
        fn(decode_record(std::string_view(reinterpret_cast<const char*>(&data[off + 8]), len)));
        off += 8 + len;
    }
}

void FileJournal::close() {
    {
        std::lock_guard lk(mu_);
        if (closing_ && !writer_.joinable()) return;
        closing_ = true;
        cv_.notify_all();
    }
    if (writer_.joinable()) writer_.join();
    std::lock_guard lk(mu_);
    fd_.reset();  // releases the flock
}

JournalStats FileJournal::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

std::unique_ptr<Journal> open_journal(const std::string& uri) {
    std::string path = uri;
    if (uri.rfind("file:", 0) == 0) {
        path = uri.substr(5);
    } else if (uri.find("://") != std::string::npos) {
        throw ConfigError("journal '" + uri + "': unsupported scheme (only file:PATH)");
    }
    if (path.empty()) throw ConfigError("journal '" + uri + "': empty path");
    return std::make_unique<FileJournal>(path);
}

}  // namespace kindling
