// Which guarded columns a statement reads, and how: the static half of sensitive_columns (the
// session masks results, the other half).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pgrail/policy/sensitive.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::policy {

struct SensitiveRead {
    std::string column;  // "public.users.password_hash"
    std::string how;     // "in WHERE, an expression or a clause", "as a whole row", ...
    bool always_deny = false;
    bool written = false;  // a value stored in the column (ColumnRead::Kind::written), not read
};

struct SensitiveReads {
    // Reads the rule's action does not allow (deny: every read; mask: all but plain output
    // columns), and writes (under either action: a value of the session's choosing stored beside
    // the real ones reveals them, in the order an index returns rows or as an equal mask). The
    // statement is refused; the first one names the refusal.
    std::vector<SensitiveRead> refused;
    // mask: guarded columns the statement returns as plain output columns (masked on the wire).
    std::vector<std::string> masked;
    // Why pgrail cannot tell what the statement reads (a DO block's dynamic SQL, a built-in that
    // reads a table named by a value ...): refused as well.
    std::optional<std::string> unresolved;
    [[nodiscard]] bool refuses() const { return !refused.empty() || unresolved.has_value(); }
};

// Names match conservatively: a bare relation name counts as every guarded relation of that name
// in any schema, a column name as a guarded column of any guarded relation the statement reads.
[[nodiscard]] SensitiveReads find_sensitive_reads(const sql::Statement& statement, const SensitiveColumns& rule,
                                                  const SensitiveSet& set);

}  // namespace pgrail::policy
