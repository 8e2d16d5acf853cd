// Parsing and encoding of the frontend messages pgrail inspects or writes.
#include "pgrail/protocol/frontend.hpp"

#include "pgrail/protocol/bytes.hpp"

namespace pgrail::protocol {

std::string StartupPacket::parameter(std::string_view name) const {
    for (const auto& [key, value] : parameters)
        if (key == name) return value;
    return {};
}

std::optional<StartupPacket> parse_startup_packet(std::string_view packet) {
    ByteReader reader(packet);
    const auto length = reader.u32();
    const auto code = reader.u32();
    if (!length || !code || *length != packet.size()) return std::nullopt;

    StartupPacket result;
    result.code = *code;
    switch (*code) {
        case ssl_request_code:
            result.kind = StartupKind::ssl_request;
            return reader.complete() ? std::optional(result) : std::nullopt;
        case gssenc_request_code:
            result.kind = StartupKind::gssenc_request;
            return reader.complete() ? std::optional(result) : std::nullopt;
        case cancel_request_code: {
            result.kind = StartupKind::cancel_request;
            const auto pid = reader.i32();
            const auto secret = reader.i32();
            if (!pid || !secret || !reader.complete()) return std::nullopt;
            result.cancel_pid = *pid;
            result.cancel_secret = *secret;
            return result;
        }
        default:
            break;
    }
    result.kind = StartupKind::startup;
    if ((*code >> 16) != 3) return result;  // another major version: the caller refuses it
    // Name/value pairs, then a terminating empty name.
    while (true) {
        const auto name = reader.cstring();
        if (!name) return std::nullopt;
        if (name->empty()) break;
        const auto value = reader.cstring();
        if (!value) return std::nullopt;
        if (name->starts_with("_pq_.")) {
            result.protocol_options.emplace_back(*name);
        } else {
            result.parameters.emplace_back(std::string(*name), std::string(*value));
        }
    }
    if (!reader.complete()) return std::nullopt;
    return result;
}

std::optional<std::string_view> parse_query(std::string_view body) {
    ByteReader reader(body);
    const auto sql = reader.cstring();
    if (!sql || !reader.complete()) return std::nullopt;
    return sql;
}

std::optional<ParseMessage> parse_parse(std::string_view body) {
    ByteReader reader(body);
    ParseMessage message;
    const auto name = reader.cstring();
    const auto query = reader.cstring();
    if (!name || !query) return std::nullopt;
    message.statement_name = server_object_name(*name);
    message.query = *query;
    const auto rest = body.substr(body.size() - reader.remaining());
    const auto count = reader.u16();
    if (!count || !reader.bytes(std::size_t{*count} * 4) || !reader.complete()) return std::nullopt;
    message.parameter_types = rest;
    return message;
}

std::optional<std::vector<std::uint32_t>> parse_parameter_types(std::string_view raw) {
    ByteReader reader(raw);
    const auto count = reader.u16();
    if (!count) return std::nullopt;
    std::vector<std::uint32_t> types;
    types.reserve(*count);
    for (std::uint16_t index = 0; index < *count; ++index) {
        const auto type = reader.u32();
        if (!type) return std::nullopt;
        types.push_back(*type);
    }
    if (!reader.complete()) return std::nullopt;
    return types;
}

std::string encode_parameter_types(const std::vector<std::uint32_t>& types) {
    std::string out;
    out.reserve(2 + 4 * types.size());
    const auto put = [&out](std::uint32_t value, int bytes) {
        for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
    };
    put(static_cast<std::uint32_t>(types.size()), 2);
    for (const auto type : types) put(type, 4);
    return out;
}

std::optional<BindMessage> parse_bind(std::string_view body) {
    ByteReader reader(body);
    BindMessage message;
    const auto portal = reader.cstring();
    const auto statement = reader.cstring();
    const auto format_count = reader.u16();
    if (!portal || !statement || !format_count) return std::nullopt;
    message.portal = server_object_name(*portal);
    message.statement = server_object_name(*statement);
    for (std::uint16_t index = 0; index < *format_count; ++index) {
        const auto format = reader.u16();
        if (!format) return std::nullopt;
        message.parameter_formats.push_back(static_cast<std::int16_t>(*format));
    }
    const auto parameter_count = reader.u16();
    if (!parameter_count) return std::nullopt;
    for (std::uint16_t index = 0; index < *parameter_count; ++index) {
        const auto length = reader.i32();
        if (!length) return std::nullopt;
        if (*length < 0) {
            message.parameters.emplace_back(std::nullopt);
            continue;
        }
        const auto value = reader.bytes(static_cast<std::size_t>(*length));
        if (!value) return std::nullopt;
        message.parameters.emplace_back(*value);
    }
    message.result_formats = body.substr(body.size() - reader.remaining());
    const auto result_count = reader.u16();
    if (!result_count || !reader.bytes(std::size_t{*result_count} * 2) || !reader.complete()) return std::nullopt;
    return message;
}

std::optional<DescribeTarget> parse_describe_target(std::string_view body) {
    ByteReader reader(body);
    const auto kind = reader.u8();
    const auto name = reader.cstring();
    if (!kind || !name || !reader.complete() || (*kind != 'S' && *kind != 'P')) return std::nullopt;
    return DescribeTarget{static_cast<char>(*kind), server_object_name(*name)};
}

void encode_bind(std::string& out, const BindMessage& bind) {
    MessageWriter writer(out, frontend_tag::bind);
    writer.cstring(bind.portal).cstring(bind.statement);
    writer.i16(static_cast<std::int16_t>(bind.parameter_formats.size()));
    for (const auto format : bind.parameter_formats) writer.i16(format);
    writer.i16(static_cast<std::int16_t>(bind.parameters.size()));
    for (const auto& parameter : bind.parameters) {
        if (!parameter) {
            writer.i32(-1);
            continue;
        }
        writer.i32(static_cast<std::int32_t>(parameter->size())).raw(*parameter);
    }
    writer.raw(bind.result_formats).finish();
}

void encode_describe(std::string& out, char kind, std::string_view name) {
    MessageWriter(out, frontend_tag::describe).u8(static_cast<std::uint8_t>(kind)).cstring(name).finish();
}

void encode_flush(std::string& out) { MessageWriter(out, frontend_tag::flush).finish(); }

void encode_close(std::string& out, char kind, std::string_view name) {
    MessageWriter(out, frontend_tag::close).u8(static_cast<std::uint8_t>(kind)).cstring(name).finish();
}

void encode_sync(std::string& out) { MessageWriter(out, frontend_tag::sync).finish(); }

void encode_query(std::string& out, std::string_view sql) {
    MessageWriter(out, frontend_tag::query).cstring(sql).finish();
}

void encode_parse(std::string& out, std::string_view statement_name, std::string_view query,
                  std::string_view parameter_types) {
    MessageWriter(out, frontend_tag::parse).cstring(statement_name).cstring(query).raw(parameter_types).finish();
}

void encode_cancel_request(std::string& out, std::int32_t pid, std::int32_t secret) {
    MessageWriter(out, '\0').i32(static_cast<std::int32_t>(cancel_request_code)).i32(pid).i32(secret).finish();
}

void encode_ssl_request(std::string& out) {
    MessageWriter(out, '\0').i32(static_cast<std::int32_t>(ssl_request_code)).finish();
}

void encode_startup_message(std::string& out, std::uint32_t version,
                            const std::vector<std::pair<std::string, std::string>>& parameters) {
    MessageWriter writer(out, '\0');  // startup packets have no tag
    writer.i32(static_cast<std::int32_t>(version));
    for (const auto& [name, value] : parameters) writer.cstring(name).cstring(value);
    writer.u8(0).finish();
}

}  // namespace pgrail::protocol
