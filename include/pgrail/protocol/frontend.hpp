// Messages a client sends: the startup-phase packets and the ones pgrail inspects.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgrail::protocol {

inline constexpr std::uint32_t protocol_version_3 = 196608;  // 3.0
inline constexpr std::uint32_t ssl_request_code = 80877103;
inline constexpr std::uint32_t gssenc_request_code = 80877104;
inline constexpr std::uint32_t cancel_request_code = 80877102;

// Frontend message tags pgrail cares about (a tag means something else from the server).
namespace frontend_tag {
inline constexpr char query = 'Q';
inline constexpr char parse = 'P';
inline constexpr char bind = 'B';
inline constexpr char execute = 'E';
inline constexpr char describe = 'D';
inline constexpr char close = 'C';
inline constexpr char sync = 'S';
inline constexpr char flush = 'H';
inline constexpr char terminate = 'X';
inline constexpr char copy_data = 'd';
inline constexpr char copy_done = 'c';
inline constexpr char copy_fail = 'f';
inline constexpr char password = 'p';
inline constexpr char function_call = 'F';
}  // namespace frontend_tag

// A Terminate, whole: it has no body.
inline constexpr std::string_view terminate_message{"X\0\0\0\4", 5};

enum class StartupKind { startup, ssl_request, gssenc_request, cancel_request };

struct StartupPacket {
    StartupKind kind = StartupKind::startup;
    std::uint32_t code = 0;  // protocol version or request code
    std::vector<std::pair<std::string, std::string>> parameters;  // StartupMessage only
    std::vector<std::string> protocol_options;                    // its `_pq_.` names, not parameters
    std::int32_t cancel_pid = 0;     // CancelRequest only
    std::int32_t cancel_secret = 0;  // CancelRequest only

    // The value of a startup parameter ("user", "database", ...), empty when absent.
    [[nodiscard]] std::string parameter(std::string_view name) const;
};

// Parses a whole startup-phase packet (length field included). nullopt: malformed.
// A StartupMessage of another protocol version parses; the caller refuses it.
[[nodiscard]] std::optional<StartupPacket> parse_startup_packet(std::string_view packet);

// Query body: the SQL text.
[[nodiscard]] std::optional<std::string_view> parse_query(std::string_view body);

// PostgreSQL keys prepared statements and portals by their first NAMEDATALEN - 1 bytes (its hash
// tables' keys): two names alike in those are one statement, or one portal, to the server. The
// parsers below give names so cut, so that pgrail follows what the server will run (and holds no
// more of a name than it does); the bytes forwarded are the client's, whole.
inline constexpr std::size_t max_object_name_bytes = 63;
[[nodiscard]] constexpr std::string_view server_object_name(std::string_view name) {
    return name.substr(0, max_object_name_bytes);
}

struct ParseMessage {
    std::string_view statement_name;
    std::string_view query;
    std::string_view parameter_types;  // the raw int16 count + OIDs, forwarded unchanged
};
[[nodiscard]] std::optional<ParseMessage> parse_parse(std::string_view body);

// A Parse message's parameter types (its raw int16 count + OIDs) as a list, and back.
[[nodiscard]] std::optional<std::vector<std::uint32_t>> parse_parameter_types(std::string_view raw);
[[nodiscard]] std::string encode_parameter_types(const std::vector<std::uint32_t>& types);

// Bind body: portal, statement, parameter format codes and values (nullopt: NULL), and the
// result format codes kept raw (int16 count + codes).
struct BindMessage {
    std::string_view portal;
    std::string_view statement;
    std::vector<std::int16_t> parameter_formats;
    std::vector<std::optional<std::string_view>> parameters;
    std::string_view result_formats;
};
[[nodiscard]] std::optional<BindMessage> parse_bind(std::string_view body);

// Describe or Close body: 'S' (a prepared statement) or 'P' (a portal), and its name.
struct DescribeTarget {
    char kind = 'S';
    std::string_view name;
};
[[nodiscard]] std::optional<DescribeTarget> parse_describe_target(std::string_view body);

// Encoders for what pgrail itself sends upstream.
void encode_query(std::string& out, std::string_view sql);
void encode_parse(std::string& out, std::string_view statement_name, std::string_view query,
                  std::string_view parameter_types);
void encode_bind(std::string& out, const BindMessage& bind);
void encode_describe(std::string& out, char kind, std::string_view name);
void encode_flush(std::string& out);
void encode_close(std::string& out, char kind, std::string_view name);
void encode_sync(std::string& out);
void encode_cancel_request(std::string& out, std::int32_t pid, std::int32_t secret);
void encode_ssl_request(std::string& out);
void encode_startup_message(std::string& out, std::uint32_t version,
                            const std::vector<std::pair<std::string, std::string>>& parameters);

}  // namespace pgrail::protocol
