// Masking results on the wire and max_rows' messages (see result_masking.hpp).
// SHA256_* are deprecated in OpenSSL 3 but are the one API whose state is a plain struct: an
// HMAC per value then costs two struct copies, where EVP's context copies allocate.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "result_masking.hpp"

#include <openssl/sha.h>

#include <array>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "pgrail/protocol/bytes.hpp"
#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/sqlstate.hpp"

namespace pgrail::proxy {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void append_u32(std::string& out, std::uint32_t value) {
    out.push_back(static_cast<char>(value >> 24));
    out.push_back(static_cast<char>(value >> 16));
    out.push_back(static_cast<char>(value >> 8));
    out.push_back(static_cast<char>(value));
}

bool text_like(std::uint32_t type) {
    using namespace type_oid;
    return type == text || type == varchar || type == bpchar || type == name;
}
bool json_like(std::uint32_t type) { return type == type_oid::json || type == type_oid::jsonb; }
bool integer(std::uint32_t type) {
    return type == type_oid::int2 || type == type_oid::int4 || type == type_oid::int8;
}
std::size_t integer_width(std::uint32_t type) {
    return type == type_oid::int2 ? 2 : type == type_oid::int4 ? 4 : 8;
}

// `text` as a JSON string.
std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(c);
        } else if (u < 0x20) {
            out += fmt::format("\\u{:04x}", u);
        } else {
            out.push_back(c);
        }
    }
    out.push_back('"');
    return out;
}

// A json or jsonb value as the client receives it: jsonb's binary format leads with its
// version byte (1).
std::string json_value(std::uint32_t type, std::int16_t format, std::string_view json_text) {
    std::string out;
    if (type == type_oid::jsonb && format == 1) out.push_back('\1');
    out += json_text;
    return out;
}

// The bytes a value hashes as, the same in text and binary format: a view into the value or
// into `scratch`. False: the value cannot be read (it is then masked as NULL).
bool canonical_bytes(const MaskedField& field, std::string_view value, std::string& scratch, std::string_view& bytes) {
    const auto type = field.type;
    const bool binary = field.format == 1;
    if (text_like(type) || type == type_oid::json) {
        bytes = value;
        return true;
    }
    if (type == type_oid::jsonb) {
        if (!binary) {
            bytes = value;
            return true;
        }
        if (value.empty() || value.front() != '\1') return false;
        bytes = value.substr(1);
        return true;
    }
    if (integer(type)) {
        if (!binary) {  // PostgreSQL's decimal text: canonical already
            bytes = value;
            return true;
        }
        const auto width = integer_width(type);
        if (value.size() != width) return false;
        std::uint64_t bits = 0;
        for (const char c : value) bits = (bits << 8) | static_cast<unsigned char>(c);
        std::int64_t number = 0;
        if (width == 2) {
            number = static_cast<std::int16_t>(bits);
        } else if (width == 4) {
            number = static_cast<std::int32_t>(bits);
        } else {
            number = static_cast<std::int64_t>(bits);
        }
        scratch.resize(24);
        const auto [end, ec] = std::to_chars(scratch.data(), scratch.data() + scratch.size(), number);
        scratch.resize(static_cast<std::size_t>(end - scratch.data()));
        bytes = scratch;
        return true;
    }
    if (type == type_oid::uuid) {
        if (binary) {
            bytes = value;
            return value.size() == 16;
        }
        scratch.clear();
        int high = -1;
        for (const char c : value) {
            if (c == '-' || c == '{' || c == '}') continue;
            const int digit = hex_value(c);
            if (digit < 0 || scratch.size() == 16) return false;
            if (high < 0) {
                high = digit;
            } else {
                scratch.push_back(static_cast<char>((high << 4) | digit));
                high = -1;
            }
        }
        bytes = scratch;
        return scratch.size() == 16 && high < 0;
    }
    if (type == type_oid::bytea) {
        if (binary) {
            bytes = value;
            return true;
        }
        scratch.clear();
        if (value.starts_with("\\x")) {
            const auto digits = value.substr(2);
            if (digits.size() % 2 != 0) return false;
            scratch.reserve(digits.size() / 2);
            for (std::size_t i = 0; i < digits.size(); i += 2) {
                const int high = hex_value(digits[i]);
                const int low = hex_value(digits[i + 1]);
                if (high < 0 || low < 0) return false;
                scratch.push_back(static_cast<char>((high << 4) | low));
            }
            bytes = scratch;
            return true;
        }
        // bytea_output = escape: `\\` is a backslash, `\nnn` an octal byte, the rest as is.
        for (std::size_t i = 0; i < value.size(); ++i) {
            if (value[i] != '\\') {
                scratch.push_back(value[i]);
                continue;
            }
            if (i + 1 < value.size() && value[i + 1] == '\\') {
                scratch.push_back('\\');
                ++i;
                continue;
            }
            if (i + 3 >= value.size()) return false;
            int octal = 0;
            for (std::size_t k = 1; k <= 3; ++k) {
                const char c = value[i + k];
                if (c < '0' || c > '7') return false;
                octal = octal * 8 + (c - '0');
            }
            if (octal > 255) return false;
            scratch.push_back(static_cast<char>(octal));
            i += 3;
        }
        bytes = scratch;
        return true;
    }
    return false;
}

// Appends a value: its length word and bytes.
void append_value(std::string& out, std::string_view value) {
    append_u32(out, static_cast<std::uint32_t>(value.size()));
    out += value;
}
void append_null(std::string& out) { append_u32(out, 0xffffffffu); }

// The hash's output, shaped to the field's type and format, appended as a value.
void append_hashed(const MaskedField& field, const unsigned char (&mac)[32], std::string& out) {
    const auto type = field.type;
    const bool binary = field.format == 1;
    char text[80];
    std::size_t size = 0;
    const auto hex_into = [&](const unsigned char* bytes, std::size_t count) {
        for (std::size_t i = 0; i < count; ++i) {
            text[size++] = hex_digits[bytes[i] >> 4];
            text[size++] = hex_digits[bytes[i] & 0xf];
        }
    };
    if (text_like(type) || json_like(type)) {
        const bool json = json_like(type);
        if (json && type == type_oid::jsonb && binary) text[size++] = '\1';
        if (json) text[size++] = '"';
        text[size++] = 'h';
        text[size++] = ':';
        hex_into(mac, 16);
        if (json) text[size++] = '"';
        append_value(out, std::string_view(text, size));
        return;
    }
    if (integer(type)) {
        const auto width = integer_width(type);
        if (binary) {
            append_value(out, std::string_view(reinterpret_cast<const char*>(mac), width));
            return;
        }
        std::uint64_t bits = 0;
        for (std::size_t i = 0; i < width; ++i) bits = (bits << 8) | mac[i];
        std::int64_t number = static_cast<std::int64_t>(bits);
        if (width == 2) number = static_cast<std::int16_t>(bits);
        if (width == 4) number = static_cast<std::int32_t>(bits);
        const auto [end, ec] = std::to_chars(text, text + sizeof text, number);
        append_value(out, std::string_view(text, static_cast<std::size_t>(end - text)));
        return;
    }
    if (type == type_oid::uuid) {
        if (binary) {
            append_value(out, std::string_view(reinterpret_cast<const char*>(mac), 16));
            return;
        }
        hex_into(mac, 4);
        text[size++] = '-';
        hex_into(mac + 4, 2);
        text[size++] = '-';
        hex_into(mac + 6, 2);
        text[size++] = '-';
        hex_into(mac + 8, 2);
        text[size++] = '-';
        hex_into(mac + 10, 6);
        append_value(out, std::string_view(text, size));
        return;
    }
    if (type == type_oid::bytea) {
        if (binary) {
            append_value(out, std::string_view(reinterpret_cast<const char*>(mac), 32));
            return;
        }
        text[size++] = '\\';
        text[size++] = 'x';
        hex_into(mac, 32);
        append_value(out, std::string_view(text, size));
        return;
    }
    append_null(out);
}

// Appends the masked form of one non-NULL value (length word and bytes, or NULL's -1).
void append_masked(const MaskedField& field, std::string_view value, const Hmac* hmac, std::string& scratch,
                   std::string& out) {
    switch (field.method) {
        case policy::MaskMethod::null:
            break;
        case policy::MaskMethod::constant:
            if (text_like(field.type)) {
                append_value(out, field.constant);
                return;
            }
            if (json_like(field.type)) {
                append_value(out, json_value(field.type, field.format, json_string(field.constant)));
                return;
            }
            break;
        case policy::MaskMethod::hash: {
            std::string_view bytes;
            unsigned char mac[32];
            if (hmac && canonical_bytes(field, value, scratch, bytes) && hmac->mac(bytes, mac)) {
                append_hashed(field, mac, out);
                return;
            }
            break;
        }
    }
    append_null(out);
}

}  // namespace

struct Hmac::State {
    SHA256_CTX inner{};
    SHA256_CTX outer{};
};

Hmac::Hmac(std::string_view key) : state_(std::make_unique<State>()) {
    constexpr std::size_t block = 64;
    std::array<unsigned char, block> padded{};
    if (key.size() > block) {
        SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), padded.data());
    } else {
        std::memcpy(padded.data(), key.data(), key.size());
    }
    std::array<unsigned char, block> ipad{};
    std::array<unsigned char, block> opad{};
    for (std::size_t i = 0; i < block; ++i) {
        ipad[i] = static_cast<unsigned char>(padded[i] ^ 0x36);
        opad[i] = static_cast<unsigned char>(padded[i] ^ 0x5c);
    }
    SHA256_Init(&state_->inner);
    SHA256_Update(&state_->inner, ipad.data(), ipad.size());
    SHA256_Init(&state_->outer);
    SHA256_Update(&state_->outer, opad.data(), opad.size());
}

Hmac::~Hmac() = default;

bool Hmac::mac(std::string_view data, unsigned char (&out)[32]) const {
    SHA256_CTX context = state_->inner;
    unsigned char inner_digest[SHA256_DIGEST_LENGTH];
    if (SHA256_Update(&context, data.data(), data.size()) != 1 || SHA256_Final(inner_digest, &context) != 1)
        return false;
    context = state_->outer;
    return SHA256_Update(&context, inner_digest, sizeof inner_digest) == 1 && SHA256_Final(out, &context) == 1;
}

std::optional<std::string> mask_value(const MaskedField& field, std::string_view value, const Hmac* hmac) {
    std::string scratch;
    std::string out;
    append_masked(field, value, hmac, scratch, out);
    if (protocol::read_u32(out.data()) == 0xffffffffu) return std::nullopt;
    return out.substr(4);
}

std::optional<ResultPlan> plan_result(std::string_view body, const ResultGuard& guard,
                                      std::shared_ptr<const Hmac> hmac) {
    protocol::ByteReader reader(body);
    const auto count = reader.u16();
    if (!count) return std::nullopt;
    ResultPlan plan;
    plan.field_count = *count;
    bool hashes = false;
    for (std::uint16_t index = 0; index < *count; ++index) {
        const auto name = reader.cstring();
        const auto table = reader.u32();
        const auto column = reader.u16();
        const auto type = reader.u32();
        const auto type_length = reader.u16();
        const auto type_modifier = reader.u32();
        const auto format = reader.u16();
        if (!name || !table || !column || !type || !type_length || !type_modifier || !format) return std::nullopt;
        if (*format > 1) return std::nullopt;
        if (*table == 0) continue;  // not a table's column
        const auto found = guard.columns.find(policy::ColumnKey{*table, static_cast<std::int16_t>(*column)});
        if (found == guard.columns.end()) continue;
        const MaskedColumn& masked = found->second;
        MaskedField field;
        field.index = index;
        // A backstop column (one the rule refuses) is never shown in any form.
        field.method = masked.backstop ? policy::MaskMethod::null : masked.method;
        field.type = *type;
        field.format = static_cast<std::int16_t>(*format);
        field.constant = masked.constant;
        if (field.method == policy::MaskMethod::hash) hashes = true;
        if (masked.backstop) plan.backstop_columns.push_back(masked.column);
        plan.fields.push_back(std::move(field));
    }
    if (!reader.complete()) return std::nullopt;
    if (hashes) plan.hmac = hmac ? std::move(hmac) : std::make_shared<const Hmac>(guard.hash_key);
    return plan;
}

RowRewrite mask_data_row(std::string_view frame, const ResultPlan& plan, std::string& out) {
    if (frame.size() < protocol::header_size + 2) return RowRewrite::malformed;
    const char* const begin = frame.data();
    const char* const end = begin + frame.size();
    if (protocol::read_u16(begin + protocol::header_size) != plan.field_count) return RowRewrite::malformed;
    // First pass: the bounds of every value, and whether a masked one is non-NULL.
    const char* cursor = begin + protocol::header_size + 2;
    std::size_t next_masked = 0;
    bool rewrite = false;
    for (std::uint16_t index = 0; index < plan.field_count; ++index) {
        if (end - cursor < 4) return RowRewrite::malformed;
        const auto length = static_cast<std::int32_t>(protocol::read_u32(cursor));
        cursor += 4;
        if (length < -1) return RowRewrite::malformed;
        if (length > 0) {
            if (end - cursor < length) return RowRewrite::malformed;
            cursor += length;
        }
        if (next_masked < plan.fields.size() && plan.fields[next_masked].index == index) {
            if (length >= 0) rewrite = true;
            ++next_masked;
        }
    }
    if (cursor != end) return RowRewrite::malformed;
    if (!rewrite) return RowRewrite::untouched;

    const auto start = out.size();
    out.reserve(start + frame.size() + 80 * plan.fields.size());
    out.append(begin, protocol::header_size + 2);
    cursor = begin + protocol::header_size + 2;
    next_masked = 0;
    const Hmac* hmac = plan.hmac.get();
    thread_local std::string scratch;
    for (std::uint16_t index = 0; index < plan.field_count; ++index) {
        const auto length = static_cast<std::int32_t>(protocol::read_u32(cursor));
        const char* value = cursor + 4;
        const char* after = value + std::max(length, 0);
        if (next_masked < plan.fields.size() && plan.fields[next_masked].index == index) {
            const auto& field = plan.fields[next_masked++];
            if (length >= 0) {
                append_masked(field, std::string_view(value, static_cast<std::size_t>(length)), hmac, scratch, out);
                cursor = after;
                continue;
            }
        }
        out.append(cursor, static_cast<std::size_t>(after - cursor));
        cursor = after;
    }
    // PostgreSQL's bound on a message (1 GiB), which a long constant repeated could pass.
    const auto size = out.size() - start;
    if (size - 1 > (std::size_t{1} << 30)) {
        out.resize(start);
        return RowRewrite::malformed;
    }
    const auto length = static_cast<std::uint32_t>(size - 1);
    out[start + 1] = static_cast<char>(length >> 24);
    out[start + 2] = static_cast<char>(length >> 16);
    out[start + 3] = static_cast<char>(length >> 8);
    out[start + 4] = static_cast<char>(length);
    return RowRewrite::rewritten;
}

std::optional<std::string_view> execute_portal(std::string_view body) {
    protocol::ByteReader reader(body);
    const auto portal = reader.cstring();
    const auto max_rows = reader.i32();
    if (!portal || !max_rows || !reader.complete()) return std::nullopt;
    return portal;
}

std::string_view error_sqlstate(std::string_view body) {
    const auto fields = protocol::parse_error_fields(body);
    if (!fields) return {};
    return protocol::error_field(*fields, 'C');
}

void encode_notice(std::string& out, const protocol::ErrorMessage& notice) {
    const auto start = out.size();
    protocol::encode_error_response(out, notice);
    out[start] = protocol::backend_tag::notice_response;  // the same layout
}

protocol::ErrorMessage truncated_notice(std::string_view rule, std::uint64_t limit, std::uint64_t rows_not_sent) {
    return {"NOTICE", sqlstate::warning,
            fmt::format("pgrail: result cut at {} rows by max_rows of rule {}", limit, rule),
            fmt::format("{} more row{} of this result {} not sent.", rows_not_sent, rows_not_sent == 1 ? "" : "s",
                        rows_not_sent == 1 ? "was" : "were"),
            "Add a LIMIT to the query or narrow its WHERE clause to fetch the rows you need."};
}

protocol::ErrorMessage refused_error(std::string_view rule, std::uint64_t limit) {
    return {"ERROR",
            sqlstate::program_limit_exceeded,
            fmt::format("pgrail: the result has more than {} rows, the limit of max_rows in rule {}; fetch fewer rows "
                        "(LIMIT {}, FETCH {} or a narrower WHERE; after ROLLBACK inside a transaction block)",
                        limit, rule, limit, limit),
            {},
            "Add a LIMIT to the query or narrow its WHERE clause: pgrail canceled the statement once its result "
            "passed the limit."};
}

}  // namespace pgrail::proxy
