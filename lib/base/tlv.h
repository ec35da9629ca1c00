// Tagged fields (TLV): the encoding of every piece of saved machine state (the
// vmstate file's sections, each device's own state).
//
//   field  u16 tag | u32 length | length bytes
//   body   a sequence of fields
//
// Integers are little-endian (byte_order.h).  A field's length says which width was
// written, so a reader checks it against the width it expects.  A field's bytes may
// be a body again (nesting).
//
// TlvWriter appends.  TlvReader is a bounds-checked cursor: it never reads past its
// span and every failure is a DataError "CONTEXT: what is wrong", where CONTEXT names
// what is being decoded ("/x/vmstate: device serial").  TlvFields splits a body into
// fields, hands them out by tag, and rejects what nobody asked for, so a decoder
// cannot silently skip state it does not understand.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/byte_order.h"

namespace kindling {

class TlvWriter {
public:
    // Raw integers and bytes, for headers around fields.
    template <std::unsigned_integral T>
    void put(T v) {
        append_le(b_, v);
    }
    void put_bytes(std::span<const uint8_t> data);
    // Overwrites sizeof(T) bytes at offset `at` (a length or checksum known only later).
    template <std::unsigned_integral T>
    void patch(size_t at, T v) {
        store_le(b_.data() + at, v);
    }

    // One field each.
    void bytes(uint16_t tag, std::span<const uint8_t> data);
    void string(uint16_t tag, std::string_view s);
    template <std::unsigned_integral T>
    void integer(uint16_t tag, T v) {
        header(tag, sizeof(T));
        put<T>(v);
    }
    void boolean(uint16_t tag, bool v) { integer<uint8_t>(tag, v ? 1 : 0); }
    // A trivially copyable struct (a KVM ABI struct) as its host bytes.
    template <class T>
    void raw(uint16_t tag, const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        bytes(tag, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v));
    }
    template <class T>
    void array(uint16_t tag, std::span<const T> v) {
        static_assert(std::is_trivially_copyable_v<T>);
        bytes(tag, std::span(reinterpret_cast<const uint8_t*>(v.data()), v.size_bytes()));
    }

    // A field whose bytes the caller writes in between (a nested body):
    //   size_t m = w.begin_field(kQueue); ...fields...; w.end_field(m);
    size_t begin_field(uint16_t tag);
    void end_field(size_t mark);

    size_t size() const { return b_.size(); }
    const std::vector<uint8_t>& data() const { return b_; }
    std::vector<uint8_t> take() { return std::move(b_); }

private:
    void header(uint16_t tag, size_t len);

    std::vector<uint8_t> b_;
};

class TlvReader {
public:
    TlvReader(std::span<const uint8_t> bytes, std::string context) : b_(bytes), ctx_(std::move(context)) {}

    size_t left() const { return b_.size() - pos_; }
    size_t pos() const { return pos_; }
    bool done() const { return pos_ == b_.size(); }
    const std::string& context() const { return ctx_; }

    // DataError "CONTEXT: message".
    [[noreturn]] void fail(const std::string& message) const;

    // The next integer; "truncated WHAT at offset N (K bytes left, need M)" when short.
    template <std::unsigned_integral T>
    T get(const char* what) {
        need(sizeof(T), what);
        T v = load_le<T>(b_.data() + pos_);
        pos_ += sizeof(T);
        return v;
    }
    // The next n bytes; "WHAT overruns CONTAINER (length n, K bytes left)" when short.
    std::span<const uint8_t> take(uint64_t n, const std::string& what, const char* container);
    // Everything not read yet.
    std::span<const uint8_t> rest();

private:
    void need(size_t n, const char* what) const;

    std::span<const uint8_t> b_;
    size_t pos_ = 0;
    std::string ctx_;
};

// The fields of one body.  Take each field by its tag; finish() then fails on the
// first field nobody took ("unknown field T (written by a newer kindling?)").  A tag
// read with find() or a required accessor must appear at most once ("field T
// appears twice"); all() reads a repeated tag.  Every failure is a DataError naming
// the context.
class TlvFields {
public:
    // Splits the rest of `r` into fields (a length beyond what is left: "field T at
    // offset N overruns CONTAINER (length L, K bytes left)").  Offsets count from the
    // reader's start.
    explicit TlvFields(TlvReader& r, const char* container = "its section");

    const std::string& context() const { return ctx_; }
    [[noreturn]] void fail(const std::string& message) const;

    // The field's bytes, or nullopt when it is absent.
    std::optional<std::span<const uint8_t>> find(uint16_t tag);
    // Every occurrence of a repeated field, in order.
    std::vector<std::span<const uint8_t>> all(uint16_t tag);

    // Required fields: "missing field NAME" when absent, "NAME: ..." when malformed.
    std::span<const uint8_t> bytes(uint16_t tag, const char* name);
    template <std::unsigned_integral T>
    T integer(uint16_t tag, const char* name) {
        return as_integer<T>(bytes(tag, name), name);
    }
    bool boolean(uint16_t tag, const char* name) { return as_boolean(bytes(tag, name), name); }
    template <class T>
    T raw(uint16_t tag, const char* name) {
        return as_raw<T>(bytes(tag, name), name);
    }
    template <class T>
    std::vector<T> array(uint16_t tag, const char* name) {
        return as_array<T>(bytes(tag, name), name);
    }
    // At most max_size bytes ("NAME of N bytes, at most M").
    std::string string(uint16_t tag, const char* name, size_t max_size);

    // Conversions of a field's bytes, for optional and repeated fields.
    template <std::unsigned_integral T>
    T as_integer(std::span<const uint8_t> b, const char* name) const {
        check_size(b, sizeof(T), name);
        return load_le<T>(b.data());
    }
    bool as_boolean(std::span<const uint8_t> b, const char* name) const;
    template <class T>
    T as_raw(std::span<const uint8_t> b, const char* name) const {
        static_assert(std::is_trivially_copyable_v<T>);
        check_size(b, sizeof(T), name);
        T v;
        std::memcpy(&v, b.data(), sizeof v);
        return v;
    }
    template <class T>
    std::vector<T> as_array(std::span<const uint8_t> b, const char* name) const {
        static_assert(std::is_trivially_copyable_v<T>);
        check_whole_entries(b, sizeof(T), name);
        std::vector<T> v(b.size() / sizeof(T));
        if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
        return v;
    }

    // Fails on the first field no accessor above took.
    void finish() const;

private:
    struct Field {
        uint16_t tag;
        std::span<const uint8_t> data;
        bool taken = false;
    };
    void check_size(std::span<const uint8_t> b, size_t want, const char* name) const;
    void check_whole_entries(std::span<const uint8_t> b, size_t entry, const char* name) const;

    std::vector<Field> fields_;
    std::string ctx_;
};

}  // namespace kindling
