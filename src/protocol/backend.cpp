// Parsing and encoding of the backend messages pgrail inspects or writes.
#include "pgrail/protocol/backend.hpp"
#include "pgrail/protocol/frontend.hpp"

#include "pgrail/protocol/bytes.hpp"

namespace pgrail::protocol {

std::optional<char> parse_ready_for_query(std::string_view body) {
    ByteReader reader(body);
    const auto status = reader.u8();
    if (!status || !reader.complete()) return std::nullopt;
    return static_cast<char>(*status);
}

std::optional<BackendKey> parse_backend_key_data(std::string_view body) {
    ByteReader reader(body);
    const auto pid = reader.i32();
    const auto secret = reader.i32();
    if (!pid || !secret || !reader.complete()) return std::nullopt;
    return BackendKey{*pid, *secret};
}

std::optional<ParameterStatus> parse_parameter_status(std::string_view body) {
    ByteReader reader(body);
    const auto name = reader.cstring();
    const auto value = reader.cstring();
    if (!name || !value || !reader.complete()) return std::nullopt;
    return ParameterStatus{*name, *value};
}

std::optional<ErrorFields> parse_error_fields(std::string_view body) {
    ByteReader reader(body);
    ErrorFields fields;
    while (true) {
        const auto code = reader.u8();
        if (!code) return std::nullopt;
        if (*code == 0) break;
        const auto value = reader.cstring();
        if (!value) return std::nullopt;
        fields.emplace_back(static_cast<char>(*code), *value);
    }
    if (!reader.complete()) return std::nullopt;
    return fields;
}

std::string_view error_field(const ErrorFields& fields, char code) {
    for (const auto& [field_code, value] : fields)
        if (field_code == code) return value;
    return {};
}

std::optional<Authentication> parse_authentication(std::string_view body) {
    ByteReader reader(body);
    const auto code = reader.i32();
    if (!code) return std::nullopt;
    Authentication result{*code, {}};
    if (*code != auth_sasl) return result;  // other codes carry data pgrail passes on unread
    while (true) {
        const auto mechanism = reader.cstring();
        if (!mechanism) return std::nullopt;
        if (mechanism->empty()) break;
        result.sasl_mechanisms.push_back(*mechanism);
    }
    if (!reader.complete()) return std::nullopt;
    return result;
}

void encode_error_response(std::string& out, const ErrorMessage& error) {
    MessageWriter writer(out, backend_tag::error_response);
    writer.u8('S').cstring(error.severity).u8('V').cstring(error.severity);
    writer.u8('C').cstring(error.sqlstate).u8('M').cstring(error.message);
    if (!error.detail.empty()) writer.u8('D').cstring(error.detail);
    if (!error.hint.empty()) writer.u8('H').cstring(error.hint);
    writer.u8(0).finish();
}

void encode_protocol2_error(std::string& out, std::string_view text) {
    out.push_back(backend_tag::error_response);
    out.append(text);
    out.push_back('\0');
}

void encode_backend_key_data(std::string& out, BackendKey key) {
    MessageWriter(out, backend_tag::backend_key_data).i32(key.pid).i32(key.secret).finish();
}

void encode_authentication_sasl(std::string& out, const std::vector<std::string_view>& mechanisms) {
    MessageWriter writer(out, backend_tag::authentication);
    writer.i32(auth_sasl);
    for (auto mechanism : mechanisms) writer.cstring(mechanism);
    writer.u8(0).finish();
}

void encode_ready_for_query(std::string& out, char status) {
    MessageWriter(out, backend_tag::ready_for_query).u8(static_cast<std::uint8_t>(status)).finish();
}

std::optional<std::vector<std::uint32_t>> parse_parameter_description(std::string_view body) {
    return parse_parameter_types(body);  // the same layout as a Parse's parameter types
}

void encode_parameter_description(std::string& out, const std::vector<std::uint32_t>& types) {
    MessageWriter writer(out, backend_tag::parameter_description);
    writer.i16(static_cast<std::int16_t>(types.size()));
    for (const auto type : types) writer.i32(static_cast<std::int32_t>(type));
    writer.finish();
}

void encode_parameter_status(std::string& out, std::string_view name, std::string_view value) {
    MessageWriter(out, backend_tag::parameter_status).cstring(name).cstring(value).finish();
}

void encode_negotiate_protocol_version(std::string& out, std::uint32_t newest_version,
                                       const std::vector<std::string>& unrecognised_options) {
    MessageWriter writer(out, backend_tag::negotiate_protocol_version);
    writer.i32(static_cast<std::int32_t>(newest_version)).i32(static_cast<std::int32_t>(unrecognised_options.size()));
    for (const auto& option : unrecognised_options) writer.cstring(option);
    writer.finish();
}

}  // namespace pgrail::protocol
