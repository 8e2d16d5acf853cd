// Names of the statement enums, as they appear in JSON and in the corpus.
#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// (The analyzer names settings in lower case, set_config's constant names too; SET NAMES is
// client_encoding in PostgreSQL's grammar.)
bool may_change_client_encoding(const Statement& statement) {
    if (statement.tag == "DISCARD ALL") return true;
    for (const auto& setting : statement.settings)
        if (setting.name == "all" || setting.name == "*" || setting.name == "client_encoding") return true;
    for (const auto& inner : statement.inner)
        if (may_change_client_encoding(inner)) return true;
    return false;
}

const char* to_string(StatementClass statement_class) {
    switch (statement_class) {
    case StatementClass::read: return "read";
    case StatementClass::write: return "write";
    case StatementClass::ddl: return "ddl";
    case StatementClass::transaction: return "transaction";
    case StatementClass::session: return "session";
    case StatementClass::utility: return "utility";
    case StatementClass::procedural: return "procedural";
    case StatementClass::copy: return "copy";
    case StatementClass::unknown: return "unknown";
    }
    return "unknown";
}

const char* to_string(ObjectRole role) {
    switch (role) {
    case ObjectRole::read: return "read";
    case ObjectRole::written: return "written";
    case ObjectRole::created: return "created";
    case ObjectRole::altered: return "altered";
    case ObjectRole::dropped: return "dropped";
    case ObjectRole::truncated: return "truncated";
    }
    return "read";
}

const char* to_string(CopyDirection direction) {
    switch (direction) {
    case CopyDirection::none: return "none";
    case CopyDirection::from: return "from";
    case CopyDirection::to: return "to";
    }
    return "none";
}

}  // namespace pgrail::sql
