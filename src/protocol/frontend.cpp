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
        result.parameters.emplace_back(std::string(*name), std::string(*value));
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
    message.statement_name = *name;
    message.query = *query;
    const auto rest = body.substr(body.size() - reader.remaining());
    const auto count = reader.u16();
    if (!count || !reader.bytes(std::size_t{*count} * 4) || !reader.complete()) return std::nullopt;
    message.parameter_types = rest;
    return message;
}

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

void encode_terminate(std::string& out) { MessageWriter(out, frontend_tag::terminate).finish(); }

void encode_startup_message(std::string& out, std::uint32_t version,
                            const std::vector<std::pair<std::string, std::string>>& parameters) {
    MessageWriter writer(out, '\0');  // startup packets have no tag
    writer.i32(static_cast<std::int32_t>(version));
    for (const auto& [name, value] : parameters) writer.cstring(name).cstring(value);
    writer.u8(0).finish();
}

}  // namespace pgrail::protocol
