#include "base/tlv.h"

#include <limits>

#include "base/error.h"

namespace kindling {

// ---- TlvWriter ----------------------------------------------------------------

void TlvWriter::header(uint16_t tag, size_t len) {
    if (len > std::numeric_limits<uint32_t>::max())
        throw Error("TLV field " + std::to_string(tag) + " of " + std::to_string(len) + " bytes does not fit its u32 length");
    put<uint16_t>(tag);
    put<uint32_t>(static_cast<uint32_t>(len));
}

void TlvWriter::put_bytes(std::span<const uint8_t> data) {
    if (data.empty()) return;
    const size_t at = b_.size();
    b_.resize(at + data.size());
    std::memcpy(b_.data() + at, data.data(), data.size());
}

void TlvWriter::bytes(uint16_t tag, std::span<const uint8_t> data) {
    header(tag, data.size());
    put_bytes(data);
}

void TlvWriter::string(uint16_t tag, std::string_view s) {
    bytes(tag, std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

size_t TlvWriter::begin_field(uint16_t tag) {
    header(tag, 0);
    return b_.size();
}

void TlvWriter::end_field(size_t mark) {
    const size_t len = b_.size() - mark;
    if (len > std::numeric_limits<uint32_t>::max())
        throw Error("nested TLV field of " + std::to_string(len) + " bytes does not fit its u32 length");
    patch<uint32_t>(mark - 4, static_cast<uint32_t>(len));
}

// ---- TlvReader ----------------------------------------------------------------

void TlvReader::fail(const std::string& message) const { throw DataError(ctx_ + ": " + message); }

void TlvReader::need(size_t n, const char* what) const {
    if (left() < n)
        fail(std::string("truncated ") + what + " at offset " + std::to_string(pos_) + " (" + std::to_string(left()) +
             " bytes left, need " + std::to_string(n) + ")");
}

std::span<const uint8_t> TlvReader::take(uint64_t n, const std::string& what, const char* container) {
    if (n > left())
        fail(what + " overruns " + container + " (length " + std::to_string(n) + ", " + std::to_string(left()) +
             " bytes left)");
    auto s = b_.subspan(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
}

std::span<const uint8_t> TlvReader::rest() {
    auto s = b_.subspan(pos_);
    pos_ = b_.size();
    return s;
}

// ---- TlvFields ----------------------------------------------------------------

TlvFields::TlvFields(TlvReader& r, const char* container) : ctx_(r.context()) {
    while (!r.done()) {
        const size_t at = r.pos();
        const uint16_t tag = r.get<uint16_t>("field tag");
        const uint32_t len = r.get<uint32_t>("field length");
        auto data = r.take(len, "field " + std::to_string(tag) + " at offset " + std::to_string(at), container);
        fields_.push_back({tag, data});
    }
}

void TlvFields::fail(const std::string& message) const { throw DataError(ctx_ + ": " + message); }

std::optional<std::span<const uint8_t>> TlvFields::find(uint16_t tag) {
    Field* found = nullptr;
    for (Field& f : fields_) {
        if (f.tag != tag) continue;
        if (found) fail("field " + std::to_string(tag) + " appears twice");
        found = &f;
    }
    if (!found) return std::nullopt;
    found->taken = true;
    return found->data;
}

std::vector<std::span<const uint8_t>> TlvFields::all(uint16_t tag) {
    std::vector<std::span<const uint8_t>> out;
    for (Field& f : fields_)
        if (f.tag == tag) {
            f.taken = true;
            out.push_back(f.data);
        }
    return out;
}

std::span<const uint8_t> TlvFields::bytes(uint16_t tag, const char* name) {
    auto b = find(tag);
    if (!b) fail(std::string("missing field ") + name);
    return *b;
}

std::string TlvFields::string(uint16_t tag, const char* name, size_t max_size) {
    auto b = bytes(tag, name);
    if (b.size() > max_size)
        fail(std::string(name) + " of " + std::to_string(b.size()) + " bytes, at most " + std::to_string(max_size));
    return std::string(b.begin(), b.end());
}

bool TlvFields::as_boolean(std::span<const uint8_t> b, const char* name) const {
    const uint8_t v = as_integer<uint8_t>(b, name);
    if (v > 1) fail(std::string(name) + ": " + std::to_string(v) + " is not a boolean");
    return v == 1;
}

void TlvFields::check_size(std::span<const uint8_t> b, size_t want, const char* name) const {
    if (b.size() != want)
        fail(std::string(name) + ": " + std::to_string(b.size()) + " bytes, expected " + std::to_string(want));
}

void TlvFields::check_whole_entries(std::span<const uint8_t> b, size_t entry, const char* name) const {
    if (b.size() % entry != 0)
        fail(std::string(name) + ": " + std::to_string(b.size()) + " bytes is not a whole number of " +
             std::to_string(entry) + "-byte entries");
}

void TlvFields::finish() const {
    for (const Field& f : fields_)
        if (!f.taken) fail("unknown field " + std::to_string(f.tag) + " (written by a newer kindling?)");
}

}  // namespace kindling
