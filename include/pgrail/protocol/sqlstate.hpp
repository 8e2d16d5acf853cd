// The SQLSTATEs pgrail answers with, named once (PostgreSQL's errcodes.txt spells them).
#pragma once

namespace pgrail::sqlstate {

inline constexpr const char* warning = "01000";
inline constexpr const char* connection_exception = "08000";
inline constexpr const char* connection_failure = "08006";
inline constexpr const char* transaction_resolution_unknown = "08007";
inline constexpr const char* protocol_violation = "08P01";
inline constexpr const char* feature_not_supported = "0A000";
inline constexpr const char* invalid_parameter_value = "22023";
inline constexpr const char* foreign_key_violation = "23503";
inline constexpr const char* active_sql_transaction = "25001";
inline constexpr const char* in_failed_sql_transaction = "25P02";
inline constexpr const char* invalid_authorization_specification = "28000";
inline constexpr const char* invalid_password = "28P01";
inline constexpr const char* serialization_failure = "40001";
inline constexpr const char* statement_completion_unknown = "40003";
inline constexpr const char* deadlock_detected = "40P01";
inline constexpr const char* insufficient_privilege = "42501";
inline constexpr const char* syntax_error = "42601";
inline constexpr const char* undefined_function = "42883";
inline constexpr const char* duplicate_schema = "42P06";
inline constexpr const char* out_of_memory = "53200";
inline constexpr const char* too_many_connections = "53300";
inline constexpr const char* configuration_limit_exceeded = "53400";
inline constexpr const char* program_limit_exceeded = "54000";
inline constexpr const char* object_not_in_prerequisite_state = "55000";
inline constexpr const char* lock_not_available = "55P03";
inline constexpr const char* query_canceled = "57014";
inline constexpr const char* admin_shutdown = "57P01";
inline constexpr const char* cannot_connect_now = "57P03";
inline constexpr const char* system_error = "58000";
inline constexpr const char* io_error = "58030";
inline constexpr const char* undefined_file = "58P01";
inline constexpr const char* internal_error = "XX000";

}  // namespace pgrail::sqlstate
