// What a session does to the results its server sends: the columns it masks and the row limit,
// for the session's rule in the session's database (the policy's sensitive_columns and max_rows,
// resolved against the catalog). Immutable; the session asks for a fresh one per result.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "pgrail/policy/sensitive.hpp"

namespace pgrail::proxy {

struct MaskedColumn {
    policy::MaskMethod method = policy::MaskMethod::null;
    std::string constant;   // MaskMethod::constant
    std::string column;     // "public.users.password_hash", for the audit and logs
    // A column the rule refuses to read (action deny): a statement that reads it is refused
    // before it runs, so a result that still carries it means the analysis missed a shape.
    // Masked as NULL all the same, and logged as a warning.
    bool backstop = false;
};

struct ResultGuard {
    std::string rule;
    std::unordered_map<policy::ColumnKey, MaskedColumn, policy::ColumnKeyHash> columns;
    std::string hash_key;  // the HMAC key of MaskMethod::hash (masking.key_file / key_env)
    policy::MaxRows max_rows;
    [[nodiscard]] bool masks() const { return !columns.empty(); }
    [[nodiscard]] bool limits() const { return max_rows.limit > 0; }
    [[nodiscard]] bool active() const { return masks() || limits(); }
};

// A result the session cut or refused because of max_rows, or masked: for the audit line.
struct ResultEvent {
    enum class Kind : std::uint8_t { truncated, refused, masked_backstop };
    Kind kind = Kind::truncated;
    std::string rule;
    std::uint64_t rows_sent = 0;     // rows the client received
    std::uint64_t limit = 0;
    std::vector<std::string> columns;  // masked_backstop: the columns
};

}  // namespace pgrail::proxy
