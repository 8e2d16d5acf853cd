// One line per parse-tree node kind: its class and its command tag as
// PostgreSQL 15 reports it (src/backend/tcop/utility.c, CreateCommandTag).
#include "classify.hpp"

#include <unordered_map>

namespace pgrail::sql::detail {
namespace {

using json = JsonNode;
using C = StatementClass;

std::string_view field(const json& body, const char* name) {
    const json value = body.find(name);
    return value.is_string() ? value.text() : std::string_view();
}

bool flag(const json& body, const char* name) { return body.find(name).boolean(); }

// AlterObjectTypeCommandTag: the tag of ALTER on an object type.
std::string alter_tag(std::string_view object_type) {
    if (object_type == "OBJECT_COLUMN" || object_type == "OBJECT_TABCONSTRAINT") return "ALTER TABLE";
    if (object_type == "OBJECT_ATTRIBUTE") return "ALTER TYPE";
    if (object_type == "OBJECT_DOMCONSTRAINT") return "ALTER DOMAIN";
    const std::string_view noun = object_noun(object_type);
    return noun.empty() ? std::string() : "ALTER " + std::string(noun);
}

std::string prefixed(const char* verb, std::string_view object_type) {
    const std::string_view noun = object_noun(object_type);
    return noun.empty() ? std::string() : std::string(verb) + " " + std::string(noun);
}

std::string transaction_tag(std::string_view kind) {
    static const std::unordered_map<std::string_view, const char*> tags = {
        {"TRANS_STMT_BEGIN", "BEGIN"},
        {"TRANS_STMT_START", "START TRANSACTION"},
        {"TRANS_STMT_COMMIT", "COMMIT"},
        {"TRANS_STMT_ROLLBACK", "ROLLBACK"},
        {"TRANS_STMT_SAVEPOINT", "SAVEPOINT"},
        {"TRANS_STMT_RELEASE", "RELEASE"},
        {"TRANS_STMT_ROLLBACK_TO", "ROLLBACK"},
        {"TRANS_STMT_PREPARE", "PREPARE TRANSACTION"},
        {"TRANS_STMT_COMMIT_PREPARED", "COMMIT PREPARED"},
        {"TRANS_STMT_ROLLBACK_PREPARED", "ROLLBACK PREPARED"},
    };
    const auto it = tags.find(kind);
    return it == tags.end() ? std::string() : it->second;
}

std::string define_tag(std::string_view kind) {
    return prefixed("CREATE", kind);
}

std::string discard_tag(std::string_view target) {
    if (target == "DISCARD_ALL") return "DISCARD ALL";
    if (target == "DISCARD_PLANS") return "DISCARD PLANS";
    if (target == "DISCARD_TEMP") return "DISCARD TEMP";
    if (target == "DISCARD_SEQUENCES") return "DISCARD SEQUENCES";
    return {};
}

using Rule = Classification (*)(const json&);

const std::unordered_map<std::string_view, Rule>& rules() {
    // clang-format off
    static const std::unordered_map<std::string_view, Rule> table = {
        // reads and writes
        {"SelectStmt",        [](const json&) { return Classification{C::read, "SELECT"}; }},
        {"InsertStmt",        [](const json&) { return Classification{C::write, "INSERT"}; }},
        {"UpdateStmt",        [](const json&) { return Classification{C::write, "UPDATE"}; }},
        {"DeleteStmt",        [](const json&) { return Classification{C::write, "DELETE"}; }},
        {"MergeStmt",         [](const json&) { return Classification{C::write, "MERGE"}; }},
        {"TruncateStmt",      [](const json&) { return Classification{C::write, "TRUNCATE TABLE"}; }},
        {"ExplainStmt",       [](const json&) { return Classification{C::read, "EXPLAIN"}; }},
        {"VariableShowStmt",  [](const json&) { return Classification{C::read, "SHOW"}; }},
        {"DeclareCursorStmt", [](const json&) { return Classification{C::read, "DECLARE CURSOR"}; }},
        {"FetchStmt",         [](const json& b) { return Classification{C::read, flag(b, "ismove") ? "MOVE" : "FETCH"}; }},
        {"ClosePortalStmt",   [](const json& b) { return Classification{C::session, b.contains("portalname") ? "CLOSE CURSOR" : "CLOSE CURSOR ALL"}; }},
        {"CopyStmt",          [](const json&) { return Classification{C::copy, "COPY"}; }},
        // transactions
        // Two-phase commit leaves a transaction, its locks and its xmin behind the session (past a
        // restart too), or ends another's: a utility, not the session's own transaction control.
        {"TransactionStmt",   [](const json& b) {
            const std::string tag = transaction_tag(field(b, "kind"));
            const bool two_phase = tag == "PREPARE TRANSACTION" || tag == "COMMIT PREPARED" || tag == "ROLLBACK PREPARED";
            return Classification{two_phase ? C::utility : C::transaction, tag}; }},
        {"ConstraintsSetStmt",[](const json&) { return Classification{C::transaction, "SET CONSTRAINTS"}; }},
        // session
        {"VariableSetStmt",   [](const json& b) {
            const std::string_view kind = field(b, "kind");
            return Classification{C::session, (kind == "VAR_RESET" || kind == "VAR_RESET_ALL") ? "RESET" : "SET"}; }},
        {"DiscardStmt",       [](const json& b) { return Classification{C::session, discard_tag(field(b, "target"))}; }},
        {"ListenStmt",        [](const json&) { return Classification{C::session, "LISTEN"}; }},
        {"UnlistenStmt",      [](const json&) { return Classification{C::session, "UNLISTEN"}; }},
        {"NotifyStmt",        [](const json&) { return Classification{C::session, "NOTIFY"}; }},
        {"PrepareStmt",       [](const json&) { return Classification{C::session, "PREPARE"}; }},
        {"ExecuteStmt",       [](const json&) { return Classification{C::session, "EXECUTE"}; }},
        {"DeallocateStmt",    [](const json& b) { return Classification{C::session, b.contains("name") ? "DEALLOCATE" : "DEALLOCATE ALL"}; }},
        // procedural
        {"DoStmt",            [](const json&) { return Classification{C::procedural, "DO"}; }},
        {"CallStmt",          [](const json&) { return Classification{C::procedural, "CALL"}; }},
        // utility
        {"VacuumStmt",        [](const json& b) { return Classification{C::utility, flag(b, "is_vacuumcmd") ? "VACUUM" : "ANALYZE"}; }},
        {"ClusterStmt",       [](const json&) { return Classification{C::utility, "CLUSTER"}; }},
        {"ReindexStmt",       [](const json&) { return Classification{C::utility, "REINDEX"}; }},
        {"CheckPointStmt",    [](const json&) { return Classification{C::utility, "CHECKPOINT"}; }},
        // ACCESS SHARE (mode 1) is the lock every SELECT takes: reading, as pg_dump does it.
        {"LockStmt",          [](const json& b) { return Classification{b.find("mode").integer() == 1 ? C::read : C::utility, "LOCK TABLE"}; }},
        {"LoadStmt",          [](const json&) { return Classification{C::utility, "LOAD"}; }},
        {"AlterSystemStmt",   [](const json&) { return Classification{C::utility, "ALTER SYSTEM"}; }},
        {"RefreshMatViewStmt",[](const json&) { return Classification{C::utility, "REFRESH MATERIALIZED VIEW"}; }},
        // ddl: create
        {"CreateStmt",        [](const json&) { return Classification{C::ddl, "CREATE TABLE"}; }},
        {"CreateForeignTableStmt", [](const json&) { return Classification{C::ddl, "CREATE FOREIGN TABLE"}; }},
        {"CreateTableAsStmt", [](const json& b) { return Classification{C::ddl, field(b, "objtype") == "OBJECT_MATVIEW" ? "CREATE MATERIALIZED VIEW" : "CREATE TABLE AS"}; }},
        {"ViewStmt",          [](const json&) { return Classification{C::ddl, "CREATE VIEW"}; }},
        {"IndexStmt",         [](const json&) { return Classification{C::ddl, "CREATE INDEX"}; }},
        {"CreateSeqStmt",     [](const json&) { return Classification{C::ddl, "CREATE SEQUENCE"}; }},
        {"CreateSchemaStmt",  [](const json&) { return Classification{C::ddl, "CREATE SCHEMA"}; }},
        {"CreateDomainStmt",  [](const json&) { return Classification{C::ddl, "CREATE DOMAIN"}; }},
        {"CreateFunctionStmt",[](const json& b) { return Classification{C::ddl, flag(b, "is_procedure") ? "CREATE PROCEDURE" : "CREATE FUNCTION"}; }},
        {"DefineStmt",        [](const json& b) { return Classification{C::ddl, define_tag(field(b, "kind"))}; }},
        {"CompositeTypeStmt", [](const json&) { return Classification{C::ddl, "CREATE TYPE"}; }},
        {"CreateEnumStmt",    [](const json&) { return Classification{C::ddl, "CREATE TYPE"}; }},
        {"CreateRangeStmt",   [](const json&) { return Classification{C::ddl, "CREATE TYPE"}; }},
        {"CreateExtensionStmt", [](const json&) { return Classification{C::ddl, "CREATE EXTENSION"}; }},
        {"CreateTrigStmt",    [](const json&) { return Classification{C::ddl, "CREATE TRIGGER"}; }},
        {"CreateEventTrigStmt", [](const json&) { return Classification{C::ddl, "CREATE EVENT TRIGGER"}; }},
        {"RuleStmt",          [](const json&) { return Classification{C::ddl, "CREATE RULE"}; }},
        {"CreatePLangStmt",   [](const json&) { return Classification{C::ddl, "CREATE LANGUAGE"}; }},
        {"CreateRoleStmt",    [](const json&) { return Classification{C::ddl, "CREATE ROLE"}; }},
        {"CreatedbStmt",      [](const json&) { return Classification{C::ddl, "CREATE DATABASE"}; }},
        {"CreateTableSpaceStmt", [](const json&) { return Classification{C::ddl, "CREATE TABLESPACE"}; }},
        {"CreateFdwStmt",     [](const json&) { return Classification{C::ddl, "CREATE FOREIGN DATA WRAPPER"}; }},
        {"CreateForeignServerStmt", [](const json&) { return Classification{C::ddl, "CREATE SERVER"}; }},
        {"CreateUserMappingStmt", [](const json&) { return Classification{C::ddl, "CREATE USER MAPPING"}; }},
        {"ImportForeignSchemaStmt", [](const json&) { return Classification{C::ddl, "IMPORT FOREIGN SCHEMA"}; }},
        {"CreateConversionStmt", [](const json&) { return Classification{C::ddl, "CREATE CONVERSION"}; }},
        {"CreateCastStmt",    [](const json&) { return Classification{C::ddl, "CREATE CAST"}; }},
        {"CreateOpClassStmt", [](const json&) { return Classification{C::ddl, "CREATE OPERATOR CLASS"}; }},
        {"CreateOpFamilyStmt",[](const json&) { return Classification{C::ddl, "CREATE OPERATOR FAMILY"}; }},
        {"CreatePolicyStmt",  [](const json&) { return Classification{C::ddl, "CREATE POLICY"}; }},
        {"CreateAmStmt",      [](const json&) { return Classification{C::ddl, "CREATE ACCESS METHOD"}; }},
        {"CreatePublicationStmt", [](const json&) { return Classification{C::ddl, "CREATE PUBLICATION"}; }},
        {"CreateSubscriptionStmt", [](const json&) { return Classification{C::ddl, "CREATE SUBSCRIPTION"}; }},
        {"CreateStatsStmt",   [](const json&) { return Classification{C::ddl, "CREATE STATISTICS"}; }},
        {"CreateTransformStmt", [](const json&) { return Classification{C::ddl, "CREATE TRANSFORM"}; }},
        // ddl: alter
        {"AlterTableStmt",    [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objtype"))}; }},
        {"AlterTableMoveAllStmt", [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objtype"))}; }},
        {"RenameStmt",        [](const json& b) {
            const std::string_view type = field(b, "renameType");
            return Classification{C::ddl, alter_tag(type == "OBJECT_COLUMN" ? field(b, "relationType") : type)}; }},
        {"AlterObjectSchemaStmt", [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objectType"))}; }},
        {"AlterOwnerStmt",    [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objectType"))}; }},
        {"AlterObjectDependsStmt", [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objectType"))}; }},
        {"AlterDomainStmt",   [](const json&) { return Classification{C::ddl, "ALTER DOMAIN"}; }},
        {"AlterFunctionStmt", [](const json& b) { return Classification{C::ddl, alter_tag(field(b, "objtype"))}; }},
        {"AlterSeqStmt",      [](const json&) { return Classification{C::ddl, "ALTER SEQUENCE"}; }},
        {"AlterEnumStmt",     [](const json&) { return Classification{C::ddl, "ALTER TYPE"}; }},
        {"AlterTypeStmt",     [](const json&) { return Classification{C::ddl, "ALTER TYPE"}; }},
        {"AlterExtensionStmt", [](const json&) { return Classification{C::ddl, "ALTER EXTENSION"}; }},
        {"AlterExtensionContentsStmt", [](const json&) { return Classification{C::ddl, "ALTER EXTENSION"}; }},
        {"AlterEventTrigStmt", [](const json&) { return Classification{C::ddl, "ALTER EVENT TRIGGER"}; }},
        {"AlterRoleStmt",     [](const json&) { return Classification{C::ddl, "ALTER ROLE"}; }},
        {"AlterRoleSetStmt",  [](const json&) { return Classification{C::ddl, "ALTER ROLE"}; }},
        {"AlterDatabaseStmt", [](const json&) { return Classification{C::ddl, "ALTER DATABASE"}; }},
        {"AlterDatabaseSetStmt", [](const json&) { return Classification{C::ddl, "ALTER DATABASE"}; }},
        {"AlterDatabaseRefreshCollStmt", [](const json&) { return Classification{C::ddl, "ALTER DATABASE"}; }},
        {"AlterTableSpaceOptionsStmt", [](const json&) { return Classification{C::ddl, "ALTER TABLESPACE"}; }},
        {"AlterFdwStmt",      [](const json&) { return Classification{C::ddl, "ALTER FOREIGN DATA WRAPPER"}; }},
        {"AlterForeignServerStmt", [](const json&) { return Classification{C::ddl, "ALTER SERVER"}; }},
        {"AlterUserMappingStmt", [](const json&) { return Classification{C::ddl, "ALTER USER MAPPING"}; }},
        {"AlterOpFamilyStmt", [](const json&) { return Classification{C::ddl, "ALTER OPERATOR FAMILY"}; }},
        {"AlterOperatorStmt", [](const json&) { return Classification{C::ddl, "ALTER OPERATOR"}; }},
        {"AlterTSDictionaryStmt", [](const json&) { return Classification{C::ddl, "ALTER TEXT SEARCH DICTIONARY"}; }},
        {"AlterTSConfigurationStmt", [](const json&) { return Classification{C::ddl, "ALTER TEXT SEARCH CONFIGURATION"}; }},
        {"AlterPolicyStmt",   [](const json&) { return Classification{C::ddl, "ALTER POLICY"}; }},
        {"AlterPublicationStmt", [](const json&) { return Classification{C::ddl, "ALTER PUBLICATION"}; }},
        {"AlterSubscriptionStmt", [](const json&) { return Classification{C::ddl, "ALTER SUBSCRIPTION"}; }},
        {"AlterCollationStmt", [](const json&) { return Classification{C::ddl, "ALTER COLLATION"}; }},
        {"AlterStatsStmt",    [](const json&) { return Classification{C::ddl, "ALTER STATISTICS"}; }},
        {"AlterDefaultPrivilegesStmt", [](const json&) { return Classification{C::ddl, "ALTER DEFAULT PRIVILEGES"}; }},
        // ddl: drop
        {"DropStmt",          [](const json& b) { return Classification{C::ddl, prefixed("DROP", field(b, "removeType"))}; }},
        {"DropRoleStmt",      [](const json&) { return Classification{C::ddl, "DROP ROLE"}; }},
        {"DropdbStmt",        [](const json&) { return Classification{C::ddl, "DROP DATABASE"}; }},
        {"DropTableSpaceStmt",[](const json&) { return Classification{C::ddl, "DROP TABLESPACE"}; }},
        {"DropUserMappingStmt", [](const json&) { return Classification{C::ddl, "DROP USER MAPPING"}; }},
        {"DropSubscriptionStmt", [](const json&) { return Classification{C::ddl, "DROP SUBSCRIPTION"}; }},
        {"DropOwnedStmt",     [](const json&) { return Classification{C::ddl, "DROP OWNED"}; }},
        {"ReassignOwnedStmt", [](const json&) { return Classification{C::ddl, "REASSIGN OWNED"}; }},
        // ddl: privileges and annotations
        {"GrantStmt",         [](const json& b) { return Classification{C::ddl, flag(b, "is_grant") ? "GRANT" : "REVOKE"}; }},
        {"GrantRoleStmt",     [](const json& b) { return Classification{C::ddl, flag(b, "is_grant") ? "GRANT ROLE" : "REVOKE ROLE"}; }},
        {"CommentStmt",       [](const json&) { return Classification{C::ddl, "COMMENT"}; }},
        {"SecLabelStmt",      [](const json&) { return Classification{C::ddl, "SECURITY LABEL"}; }},
    };
    // clang-format on
    return table;
}

}  // namespace

std::string_view object_noun(std::string_view object_type) {
    static const std::unordered_map<std::string_view, std::string_view> nouns = {
        {"OBJECT_ACCESS_METHOD", "ACCESS METHOD"}, {"OBJECT_AGGREGATE", "AGGREGATE"},
        {"OBJECT_CAST", "CAST"}, {"OBJECT_COLLATION", "COLLATION"}, {"OBJECT_CONVERSION", "CONVERSION"},
        {"OBJECT_DATABASE", "DATABASE"}, {"OBJECT_DOMAIN", "DOMAIN"},
        {"OBJECT_EVENT_TRIGGER", "EVENT TRIGGER"}, {"OBJECT_EXTENSION", "EXTENSION"},
        {"OBJECT_FDW", "FOREIGN DATA WRAPPER"}, {"OBJECT_FOREIGN_SERVER", "SERVER"},
        {"OBJECT_FOREIGN_TABLE", "FOREIGN TABLE"}, {"OBJECT_FUNCTION", "FUNCTION"},
        {"OBJECT_INDEX", "INDEX"}, {"OBJECT_LANGUAGE", "LANGUAGE"}, {"OBJECT_LARGEOBJECT", "LARGE OBJECT"},
        {"OBJECT_MATVIEW", "MATERIALIZED VIEW"}, {"OBJECT_OPCLASS", "OPERATOR CLASS"},
        {"OBJECT_OPERATOR", "OPERATOR"}, {"OBJECT_OPFAMILY", "OPERATOR FAMILY"},
        {"OBJECT_POLICY", "POLICY"}, {"OBJECT_PROCEDURE", "PROCEDURE"},
        {"OBJECT_PUBLICATION", "PUBLICATION"}, {"OBJECT_ROLE", "ROLE"}, {"OBJECT_ROUTINE", "ROUTINE"},
        {"OBJECT_RULE", "RULE"}, {"OBJECT_SCHEMA", "SCHEMA"}, {"OBJECT_SEQUENCE", "SEQUENCE"},
        {"OBJECT_SUBSCRIPTION", "SUBSCRIPTION"}, {"OBJECT_STATISTIC_EXT", "STATISTICS"},
        {"OBJECT_TABLE", "TABLE"}, {"OBJECT_TABLESPACE", "TABLESPACE"}, {"OBJECT_TRANSFORM", "TRANSFORM"},
        {"OBJECT_TRIGGER", "TRIGGER"}, {"OBJECT_TSCONFIGURATION", "TEXT SEARCH CONFIGURATION"},
        {"OBJECT_TSDICTIONARY", "TEXT SEARCH DICTIONARY"}, {"OBJECT_TSPARSER", "TEXT SEARCH PARSER"},
        {"OBJECT_TSTEMPLATE", "TEXT SEARCH TEMPLATE"}, {"OBJECT_TYPE", "TYPE"}, {"OBJECT_VIEW", "VIEW"},
    };
    const auto it = nouns.find(object_type);
    return it == nouns.end() ? std::string_view() : it->second;
}

Classification classify(std::string_view type, const JsonNode& body) {
    const auto it = rules().find(type);
    if (it == rules().end()) return {};
    Classification result = it->second(body);
    if (result.tag.empty()) result.statement_class = StatementClass::unknown;  // an enum value we do not know
    return result;
}

}  // namespace pgrail::sql::detail
