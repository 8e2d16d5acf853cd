// Messages the server sends that pgrail inspects, and the ones pgrail writes itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgrail::protocol {

namespace backend_tag {
inline constexpr char authentication = 'R';
inline constexpr char backend_key_data = 'K';
inline constexpr char ready_for_query = 'Z';
inline constexpr char error_response = 'E';
inline constexpr char notice_response = 'N';
inline constexpr char parameter_status = 'S';
inline constexpr char row_description = 'T';
inline constexpr char data_row = 'D';
inline constexpr char command_complete = 'C';
inline constexpr char negotiate_protocol_version = 'v';
inline constexpr char copy_in_response = 'G';
inline constexpr char parameter_description = 't';
inline constexpr char no_data = 'n';
inline constexpr char copy_out_response = 'H';
inline constexpr char copy_both_response = 'W';
inline constexpr char copy_data = 'd';
inline constexpr char copy_done = 'c';
inline constexpr char portal_suspended = 's';
inline constexpr char empty_query_response = 'I';
inline constexpr char close_complete = '3';
}  // namespace backend_tag

inline constexpr std::int32_t auth_sasl = 10;

// 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block.
[[nodiscard]] std::optional<char> parse_ready_for_query(std::string_view body);

struct BackendKey {
    std::int32_t pid = 0;
    std::int32_t secret = 0;
};
[[nodiscard]] std::optional<BackendKey> parse_backend_key_data(std::string_view body);

// A ParameterStatus: the setting's name and value, viewing into `body`.
struct ParameterStatus {
    std::string_view name;
    std::string_view value;
};
[[nodiscard]] std::optional<ParameterStatus> parse_parameter_status(std::string_view body);

// ErrorResponse / NoticeResponse fields as (code, value); values view into `body`.
using ErrorFields = std::vector<std::pair<char, std::string_view>>;
[[nodiscard]] std::optional<ErrorFields> parse_error_fields(std::string_view body);
[[nodiscard]] std::string_view error_field(const ErrorFields& fields, char code);

struct Authentication {
    std::int32_t code = 0;                        // 0 ok, 3 cleartext, 5 md5, 10 SASL, 11/12 SASL continue/final
    std::vector<std::string_view> sasl_mechanisms;  // for code 10
};
[[nodiscard]] std::optional<Authentication> parse_authentication(std::string_view body);

struct ErrorMessage {
    std::string severity = "ERROR";  // ERROR or FATAL
    std::string sqlstate;
    std::string message;
    std::string detail;
    std::string hint;
};

void encode_error_response(std::string& out, const ErrorMessage& error);
// An error as a pre-3.0 client reads one: 'E' and the text as a C string.
void encode_protocol2_error(std::string& out, std::string_view text);
void encode_backend_key_data(std::string& out, BackendKey key);
void encode_authentication_sasl(std::string& out, const std::vector<std::string_view>& mechanisms);
void encode_ready_for_query(std::string& out, char status);
void encode_parameter_status(std::string& out, std::string_view name, std::string_view value);
// ParameterDescription: the OIDs of a prepared statement's parameters.
[[nodiscard]] std::optional<std::vector<std::uint32_t>> parse_parameter_description(std::string_view body);
void encode_parameter_description(std::string& out, const std::vector<std::uint32_t>& types);
// The newest protocol version spoken, and the `_pq_.` options not recognised. (The protocol
// documentation calls the first field a minor version; PostgreSQL sends the whole version code.)
void encode_negotiate_protocol_version(std::string& out, std::uint32_t newest_version,
                                       const std::vector<std::string>& unrecognised_options);

}  // namespace pgrail::protocol
