// Split, bound, parse and classify query text with libpg_query.
#include "pgrail/sql/analyzer.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <exception>
#include <forward_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "analyzer_internal.hpp"
#include "classify.hpp"
#include "deep_stack.hpp"
#include "json_tree.hpp"
#include "nesting.hpp"
#include "parse_tree_reader.hpp"
#include "pg_query_handle.hpp"
#include "pgrail/sql/quote.hpp"
#include "scanner_settings.hpp"
#include "structural_form.hpp"

namespace pgrail::sql {
namespace {

using json = detail::JsonNode;  // libpg_query JSON, read through our flat tree
using namespace detail;

// JSON nesting our own walks accept; the parse tree of a statement within
// max_nesting stays far below it (about two JSON levels per tree level).
constexpr std::size_t max_json_depth = 8 * max_nesting;
// DO bodies may contain DO statements: a few levels are plenty.
constexpr int max_body_level = 4;

// Parse trees come from a small per-thread pool: a fresh node array for each
// statement costs page faults that show in the benchmark for large queries.
class PooledTree {
public:
    PooledTree() {
        std::vector<std::unique_ptr<JsonTree>>& pool = free_trees();
        if (pool.empty()) {
            tree_ = std::make_unique<JsonTree>();
        } else {
            tree_ = std::move(pool.back());
            pool.pop_back();
        }
    }
    ~PooledTree() {
        std::vector<std::unique_ptr<JsonTree>>& pool = free_trees();
        constexpr std::size_t kept_nodes = std::size_t{1} << 16;  // do not hoard memory after a huge query
        if (pool.size() < 4 && tree_->capacity() <= kept_nodes) pool.push_back(std::move(tree_));
    }
    PooledTree(const PooledTree&) = delete;
    PooledTree& operator=(const PooledTree&) = delete;
    JsonTree& operator*() { return *tree_; }
    JsonTree* operator->() { return tree_.get(); }

private:
    static std::vector<std::unique_ptr<JsonTree>>& free_trees() {
        thread_local std::vector<std::unique_ptr<JsonTree>> pool;
        return pool;
    }
    std::unique_ptr<JsonTree> tree_;
};

// Thrown inside one statement's analysis; it becomes that statement's ParseError.
struct Refusal {
    std::string message;
};

std::string too_deep_message(std::size_t bound) {
    return "statement nested too deeply to analyse safely (nesting " + std::to_string(bound) + ", limit " +
           std::to_string(max_nesting) + ")";
}

std::size_t character_count(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0U) != 0x80U;
    }));
}

// PostgreSQL's scanner reads a whole run of operator characters before it decides where the
// operator ends, and when it keeps only the first one ("-+-+..." is a chain of unary signs) it
// scans the rest of the run again: time quadratic in the run's length (100 KB of "-+" is a
// minute of CPU, in pgrail and in the server alike). Runs up to NAMEDATALEN cost linear time;
// longer ones are refused once their squares add up to this budget (a run of 4096: about a
// quarter of a second). Counted in the raw text (a run inside a literal or comment counts too),
// and again in a PL/pgSQL body once its escapes are decoded.
constexpr std::size_t operator_run_budget = std::size_t{1} << 24;
constexpr std::size_t linear_operator_run = 64;

// A table, not a search of the 17 characters: asked for every byte of every text analysed.
constexpr auto operator_chars = [] {
    std::array<bool, 256> table{};
    for (const char c : std::string_view("~!@#^&|`?+-*/%<>=")) table[static_cast<unsigned char>(c)] = true;
    return table;
}();
bool is_operator_char(char c) { return operator_chars[static_cast<unsigned char>(c)]; }

std::optional<ParseError> check_operator_runs(std::string_view text) {
    std::size_t cost = 0;
    for (std::size_t start = 0; start < text.size();) {
        if (!is_operator_char(text[start])) {
            ++start;
            continue;
        }
        std::size_t end = start;
        while (end < text.size() && is_operator_char(text[end])) ++end;
        const std::size_t length = end - start;
        if (length > linear_operator_run) cost += length * length;
        if (cost > operator_run_budget) {
            return ParseError{"a run of " + std::to_string(length) +
                                  " operator characters is too long to scan safely (PostgreSQL's scanner "
                                  "takes time quadratic in such runs): separate them with spaces, or pass such "
                                  "text as a parameter",
                              character_count(text.substr(0, start)) + 1, true};
        }
        start = end;
    }
    return std::nullopt;
}

// What scans_in_linear_time() allows: the sum of the squares of the runs' lengths (a run of
// one costs 1). A 1 KB text of one "+-" run costs about 4 ms to analyse (4 ns per unit); this
// many units, about 70 us; ordinary SQL's two- and three-character operators, a few each.
constexpr std::size_t linear_scan_units = 16384;
constexpr std::ptrdiff_t max_linear_escapes = 64;

std::string lower(std::string_view text) {
    std::string result(text);
    std::transform(result.begin(), result.end(), result.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return result;
}

// A node's string field ("" when absent), boolean field, and any field (an absent field is an
// empty null), named by literals: looked up with the tree's inline comparison.
template <std::size_t N>
std::string_view str(const json& body, const char (&name)[N]) {
    const json value = body.find(name);
    return value.is_string() ? value.text() : std::string_view();
}

// (A name known only at run time.)
std::string_view str(const json& body, std::string_view name) {
    const json value = body.find(name);
    return value.is_string() ? value.text() : std::string_view();
}

template <std::size_t N>
bool boolean(const json& body, const char (&name)[N]) { return body.find(name).boolean(); }

template <std::size_t N>
json child(const json& body, const char (&name)[N]) { return body.find(name); }

// A parse-tree node {"NodeType": {fields}}: its type name and fields.
struct NodeRef {
    std::string_view first;
    json second;
};

std::optional<NodeRef> node_of(const json& value) {
    if (!value.is_object() || value.size() != 1) return std::nullopt;
    const json entry = value.front();
    if (!entry.is_object()) return std::nullopt;
    return NodeRef{entry.key(), entry};
}

// The index-th child of an array (an invalid node past its end).
json element(const json& array, std::size_t index) {
    for (const json item : array) {
        if (index-- == 0) return item;
    }
    return json();
}

// Strings of a list of String nodes (a qualified name).
std::vector<std::string_view> names_of(const json& list) {
    std::vector<std::string_view> names;
    if (!list.is_array()) return names;
    for (const json item : list) {
        const auto node = node_of(item);
        if (node && node->first == "String") names.push_back(str(node->second, "sval"));
    }
    return names;
}

std::string joined(const std::vector<std::string_view>& names) {
    std::string result;
    for (std::string_view name : names) {
        if (!result.empty()) result += '.';
        result += name;
    }
    return result;
}

std::string kind_of(std::string_view object_type) {
    const std::string_view noun = object_noun(object_type);
    return noun.empty() ? "object" : lower(noun);
}

// The lists a walk fills (objects, functions, settings) hold each entry once. While short they are
// searched at every addition; once long they are appended to and made unique when the statement
// is built (finish_lists): searching them would cost the square of their length, and a text of a
// few MB can name hundreds of thousands of relations or functions.
constexpr std::size_t searched_list_max = 32;

void add_object(Statement& out, ObjectRef ref) {
    if (ref.name.empty()) return;
    if (out.objects.size() >= searched_list_max) {
        out.objects.push_back(std::move(ref));
        return;
    }
    for (ObjectRef& existing : out.objects) {
        if (existing.schema == ref.schema && existing.name == ref.name) {
            // A table both read and written is reported once, with its strongest role.
            if (existing.role == ObjectRole::read && ref.role != ObjectRole::read) existing = std::move(ref);
            return;
        }
    }
    out.objects.push_back(std::move(ref));
}

// What add_object, add_function and Walker::add_setting leave to the end: each object once, with
// the strongest role it was named with (add_object's rule: a read is replaced by the first other
// role), each function and setting once, in the order first named.
void finish_lists(Statement& out) {
    if (out.objects.size() > searched_list_max) {
        std::unordered_map<std::string, std::size_t> kept_at;
        std::vector<ObjectRef> kept;
        kept.reserve(out.objects.size());
        for (ObjectRef& ref : out.objects) {
            std::string key = ref.schema;
            key += '\0';  // (never in an identifier)
            key += ref.name;
            const auto [at, added] = kept_at.try_emplace(std::move(key), kept.size());
            if (added) {
                kept.push_back(std::move(ref));
            } else if (kept[at->second].role == ObjectRole::read && ref.role != ObjectRole::read) {
                kept[at->second] = std::move(ref);
            }
        }
        out.objects = std::move(kept);
    }
    for (auto* list : {&out.functions, &out.value_functions}) {
        if (list->size() <= searched_list_max) continue;
        std::unordered_set<std::string> seen;
        std::erase_if(*list, [&seen](const std::string& function) { return !seen.insert(function).second; });
    }
    if (out.settings.size() > searched_list_max) {
        std::unordered_map<std::string, std::vector<std::size_t>> kept_by_name;
        std::vector<SettingChange> kept;
        for (SettingChange& change : out.settings) {
            auto& same_name = kept_by_name[change.name];
            if (std::any_of(same_name.begin(), same_name.end(), [&](std::size_t at) { return kept[at] == change; }))
                continue;
            same_name.push_back(kept.size());
            kept.push_back(std::move(change));
        }
        out.settings = std::move(kept);
    }
}

void add_to_list(std::vector<std::string>& list, std::string name) {
    if (list.size() < searched_list_max && std::find(list.begin(), list.end(), name) != list.end()) return;
    list.push_back(std::move(name));
}

void add_function(Statement& out, std::string name) { add_to_list(out.functions, std::move(name)); }

// Relations PostgreSQL can create in the session's temporary schema: named pg_temp.x, they are
// that session's own (pg_temp always means the session's temporary schema).
bool temporary_kind(std::string_view kind) {
    return kind == "table" || kind == "index" || kind == "view" || kind == "sequence" || kind == "relation";
}

void add_named(Statement& out, const std::vector<std::string_view>& names, std::string kind, ObjectRole role) {
    if (names.empty()) return;
    ObjectRef ref;
    ref.name = std::string(names.back());
    if (names.size() >= 2) ref.schema = std::string(names[names.size() - 2]);
    ref.kind = std::move(kind);
    ref.role = role;
    ref.temporary = ref.schema == "pg_temp" && temporary_kind(ref.kind);
    add_object(out, std::move(ref));
}

// A named object in any of the shapes DDL nodes use for it.
void add_object_node(Statement& out, const json& value, std::string_view object_type, ObjectRole role) {
    // Typed fields hold their node without the {"Type": ...} wrapper.
    if (value.contains("rolename")) return add_named(out, {str(value, "rolename")}, "role", role);
    if (value.contains("objname")) return add_named(out, names_of(child(value, "objname")), kind_of(object_type), role);
    const auto node = node_of(value);
    if (!node) return;
    const std::string_view type = node->first;
    const json& body = node->second;
    const std::string kind = kind_of(object_type);
    if (type == "String") {
        add_named(out, {str(body, "sval")}, kind, role);
    } else if (type == "List") {
        std::vector<std::string_view> names = names_of(child(body, "items"));
        // Triggers, rules and policies are named relative to their table.
        if ((object_type == "OBJECT_TRIGGER" || object_type == "OBJECT_RULE" || object_type == "OBJECT_POLICY" ||
             object_type == "OBJECT_COLUMN" || object_type == "OBJECT_TABCONSTRAINT") && names.size() >= 2) {
            const std::string_view own = names.back();
            names.pop_back();
            add_named(out, names, "table", ObjectRole::altered);
            if (object_type == "OBJECT_COLUMN" || object_type == "OBJECT_TABCONSTRAINT") return;
            add_named(out, {own}, kind, role);
            return;
        }
        // Operator classes and families are named after their access method.
        if ((object_type == "OBJECT_OPCLASS" || object_type == "OBJECT_OPFAMILY") && names.size() >= 2) {
            names.erase(names.begin());
        }
        add_named(out, names, kind, role);
    } else if (type == "TypeName") {
        add_named(out, names_of(child(body, "names")), kind, role);
    } else if (type == "ObjectWithArgs") {
        add_named(out, names_of(child(body, "objname")), kind, role);
    } else if (type == "RoleSpec") {
        add_named(out, {str(body, "rolename")}, "role", role);
    }
}

void add_object_list(Statement& out, const json& body, const char* field, std::string_view object_type,
                     ObjectRole role) {
    const auto it = body.find(field);
    if (!it.valid()) return;
    if (it.is_array()) {
        for (const json item : it) add_object_node(out, item, object_type, role);
    } else {
        add_object_node(out, it, object_type, role);
    }
}

void add_string(Statement& out, const json& body, const char* field, std::string kind, ObjectRole role) {
    add_named(out, {str(body, field)}, std::move(kind), role);
}

// Objects that DDL names other than through a RangeVar (those the walk finds).
void add_named_objects(std::string_view type, const json& body, Statement& out) {
    using R = ObjectRole;
    if (type == "DropStmt") {
        add_object_list(out, body, "objects", str(body, "removeType"), R::dropped);
    } else if (type == "CommentStmt" || type == "SecLabelStmt") {
        add_object_list(out, body, "object", str(body, "objtype"), R::altered);
    } else if (type == "GrantStmt") {
        add_object_list(out, body, "objects", str(body, "objtype"), R::altered);
    } else if (type == "RenameStmt" || type == "AlterOwnerStmt" || type == "AlterObjectSchemaStmt" ||
               type == "AlterObjectDependsStmt") {
        const std::string_view object_type = type == "RenameStmt" ? str(body, "renameType") : str(body, "objectType");
        add_object_list(out, body, "object", object_type, R::altered);
        // SET SCHEMA moves the object into another schema: that schema changes too.
        if (type == "AlterObjectSchemaStmt") add_string(out, body, "newschema", "schema", R::altered);
        // Schemas, databases, roles, tablespaces ... are renamed by name alone.
        if (type == "RenameStmt" && !body.contains("object") && !body.contains("relation")) {
            add_string(out, body, "subname", kind_of(object_type), R::altered);
        }
        // A schema's new name is a schema that comes into being (a protected name too). A
        // relation's new name stays in the relation's schema, which is already an object's.
        if (type == "RenameStmt" && object_type == "OBJECT_SCHEMA") add_string(out, body, "newname", "schema", R::created);
        // A temporary relation's new name: named like a built-in type, it would hide that type
        // (pg_temp is searched first for type names).
        if (type == "RenameStmt" && str(child(body, "relation"), "schemaname") == "pg_temp" && body.contains("newname") &&
            (object_type == "OBJECT_TABLE" || object_type == "OBJECT_VIEW" || object_type == "OBJECT_SEQUENCE" ||
             object_type == "OBJECT_MATVIEW" || object_type == "OBJECT_FOREIGN_TABLE" || object_type == "OBJECT_TYPE")) {
            add_named(out, {"pg_temp", str(body, "newname")}, kind_of(object_type), R::created);
        }
    } else if (type == "AlterFunctionStmt") {
        add_object_list(out, body, "func", str(body, "objtype"), R::altered);
    } else if (type == "CreateFunctionStmt") {
        add_named(out, names_of(child(body, "funcname")),
                  boolean(body, "is_procedure") ? "procedure" : "function", R::created);
    } else if (type == "DefineStmt") {
        add_named(out, names_of(child(body, "defnames")), kind_of(str(body, "kind")), R::created);
    } else if (type == "CreateSchemaStmt") {
        add_string(out, body, "schemaname", "schema", R::created);
    } else if (type == "CreateExtensionStmt") {
        add_string(out, body, "extname", "extension", R::created);
    } else if (type == "AlterExtensionStmt" || type == "AlterExtensionContentsStmt") {
        add_string(out, body, "extname", "extension", R::altered);
    } else if (type == "CreatedbStmt") {
        add_string(out, body, "dbname", "database", R::created);
    } else if (type == "DropdbStmt") {
        add_string(out, body, "dbname", "database", R::dropped);
    } else if (type == "AlterDatabaseStmt" || type == "AlterDatabaseSetStmt" || type == "AlterDatabaseRefreshCollStmt") {
        add_string(out, body, "dbname", "database", R::altered);
    } else if (type == "CreateRoleStmt") {
        add_string(out, body, "role", "role", R::created);
    } else if (type == "AlterRoleStmt" || type == "AlterRoleSetStmt") {
        add_object_list(out, body, "role", "OBJECT_ROLE", R::altered);
    } else if (type == "DropRoleStmt") {
        add_object_list(out, body, "roles", "OBJECT_ROLE", R::dropped);
    } else if (type == "IndexStmt") {
        ObjectRef index;
        index.name = std::string(str(body, "idxname"));
        if (const json relation = body.find("relation"); relation.valid()) {
            index.schema = std::string(str(relation, "schemaname"));
        }
        index.kind = "index";
        index.role = R::created;
        // An index lives in its table's schema: a temporary table's index is temporary.
        if (const json relation = body.find("relation"); relation.valid()) {
            index.temporary = str(relation, "relpersistence") == "t" || index.schema == "pg_temp";
        }
        add_object(out, std::move(index));
    } else if (type == "CreateTrigStmt") {
        add_string(out, body, "trigname", "trigger", R::created);
    } else if (type == "CreatePolicyStmt") {
        add_string(out, body, "policy_name", "policy", R::created);
    } else if (type == "CreateDomainStmt") {
        add_named(out, names_of(child(body, "domainname")), "domain", R::created);
    } else if (type == "CreateEnumStmt" || type == "CreateRangeStmt") {
        add_named(out, names_of(child(body, "typeName")), "type", R::created);
    } else if (type == "AlterEnumStmt") {
        add_named(out, names_of(child(body, "typeName")), "type", R::altered);
    } else if (type == "AlterDomainStmt") {
        add_named(out, names_of(child(body, "typeName")), "domain", R::altered);
    } else if (type == "CreateEventTrigStmt") {
        add_string(out, body, "trigname", "event trigger", R::created);
    } else if (type == "CreateTableSpaceStmt") {
        add_string(out, body, "tablespacename", "tablespace", R::created);
    } else if (type == "DropTableSpaceStmt") {
        add_string(out, body, "tablespacename", "tablespace", R::dropped);
    } else if (type == "CreateForeignServerStmt") {
        add_string(out, body, "servername", "server", R::created);
    } else if (type == "CreateFdwStmt") {
        add_string(out, body, "fdwname", "foreign data wrapper", R::created);
    } else if (type == "CreatePublicationStmt") {
        add_string(out, body, "pubname", "publication", R::created);
    } else if (type == "CreateSubscriptionStmt") {
        add_string(out, body, "subname", "subscription", R::created);
    } else if (type == "CreateStatsStmt") {
        add_named(out, names_of(child(body, "defnames")), "statistics", R::created);
    } else if (type == "CreatePLangStmt") {
        add_string(out, body, "plname", "language", R::created);
    } else if (type == "CreateAmStmt") {
        add_string(out, body, "amname", "access method", R::created);
    } else if (type == "RuleStmt") {
        add_string(out, body, "rulename", "rule", R::created);
    } else if (type == "AlterPolicyStmt") {
        add_string(out, body, "policy_name", "policy", R::altered);
    } else if (type == "AlterSubscriptionStmt") {
        add_string(out, body, "subname", "subscription", R::altered);
    } else if (type == "DropSubscriptionStmt") {
        add_string(out, body, "subname", "subscription", R::dropped);
    } else if (type == "AlterForeignServerStmt") {
        add_string(out, body, "servername", "server", R::altered);
    } else if (type == "AlterFdwStmt") {
        add_string(out, body, "fdwname", "foreign data wrapper", R::altered);
    } else if (type == "AlterTableSpaceOptionsStmt") {
        add_string(out, body, "tablespacename", "tablespace", R::altered);
    } else if (type == "AlterEventTrigStmt") {
        add_string(out, body, "trigname", "event trigger", R::altered);
    } else if (type == "AlterPublicationStmt") {
        add_string(out, body, "pubname", "publication", R::altered);
    } else if (type == "AlterCollationStmt") {
        add_named(out, names_of(child(body, "collname")), "collation", R::altered);
    } else if (type == "AlterStatsStmt") {
        add_named(out, names_of(child(body, "defnames")), "statistics", R::altered);
    } else if (type == "AlterTSDictionaryStmt") {
        add_named(out, names_of(child(body, "dictname")), "text search dictionary", R::altered);
    } else if (type == "AlterTSConfigurationStmt") {
        add_named(out, names_of(child(body, "cfgname")), "text search configuration", R::altered);
    } else if (type == "CreateConversionStmt") {
        add_named(out, names_of(child(body, "conversion_name")), "conversion", R::created);
    } else if (type == "ImportForeignSchemaStmt") {
        add_string(out, body, "local_schema", "schema", R::altered);
    }
}

void merge_flags(StatementFlags& into, const StatementFlags& from) {
    into.update_or_delete_without_where |= from.update_or_delete_without_where;
    into.data_modifying_cte |= from.data_modifying_cte;
    into.select_into |= from.select_into;
    into.create_table_as |= from.create_table_as;
    if (into.copy_direction == CopyDirection::none) into.copy_direction = from.copy_direction;
    into.copy_program |= from.copy_program;
    into.copy_file |= from.copy_file;
    into.explain_analyze |= from.explain_analyze;
    into.locking_clause |= from.locking_clause;
    into.temporary_object |= from.temporary_object;
    into.ddl_capable_dynamic |= from.ddl_capable_dynamic;
    into.alter_system |= from.alter_system;
    into.runs_query_text |= from.runs_query_text;
    into.writes_sequence |= from.writes_sequence;
    into.sequence_unnamed |= from.sequence_unnamed;
    into.executes_prepared |= from.executes_prepared;
}

// What a walk records for the RangeVars below a field.
struct Scope {
    std::string_view node;        // innermost node type
    ObjectRole role = ObjectRole::read;
    std::string_view kind = "relation";         // views literals or Walker-owned strings: copies are cheap
    ObjectRole target_role = ObjectRole::read;  // role of the node's own target, where it depends on options
    std::string_view target_kind = "relation";
    bool effects = true;          // false below a plain EXPLAIN: nothing runs
    // pgrail.<command>(constants) in FROM is one of pgrail's commands read as a relation (and not
    // walked as a function call): only inside a plain SELECT sent as a statement of its own,
    // never below another kind of statement (a DML CTE, DELETE ... USING, EXPLAIN, PREPARE ...).
    bool relation_calls = false;
    std::uint32_t level = 0;      // the query (SELECT, INSERT ...) being walked: RangeRead::level
    bool on_conflict = false;     // inside ON CONFLICT, where EXCLUDED is the row being inserted
    std::uint32_t on_conflict_level = 0;  // the INSERT's query: a subquery there may name its own `excluded`
};

struct FieldRole {
    std::string_view node;
    std::string_view field;
    ObjectRole role;
    bool use_target_role;
    std::string_view kind;        // empty: the node's target kind
};

// Fields that hold the relation a statement acts on; every other RangeVar is read.
constexpr FieldRole field_roles[] = {
    {"InsertStmt", "relation", ObjectRole::written, false, "table"},
    {"UpdateStmt", "relation", ObjectRole::written, false, "table"},
    {"DeleteStmt", "relation", ObjectRole::written, false, "table"},
    {"MergeStmt", "relation", ObjectRole::written, false, "table"},
    {"TruncateStmt", "relations", ObjectRole::truncated, false, "table"},
    {"CopyStmt", "relation", ObjectRole::read, true, "table"},
    {"CreateStmt", "relation", ObjectRole::created, false, "table"},
    {"CreateStmt", "inhRelations", ObjectRole::altered, false, "table"},  // INHERITS / PARTITION OF: the parent changes
    {"AlterTableCmd", "def", ObjectRole::altered, false, "table"},        // INHERIT parent, and what commands name
    {"CreateForeignTableStmt", "relation", ObjectRole::created, false, "foreign table"},
    {"CreateTableAsStmt", "into", ObjectRole::created, false, ""},
    {"SelectStmt", "intoClause", ObjectRole::created, false, "table"},
    {"ViewStmt", "view", ObjectRole::created, false, "view"},
    {"CreateSeqStmt", "sequence", ObjectRole::created, false, "sequence"},
    {"AlterSeqStmt", "sequence", ObjectRole::altered, false, "sequence"},
    {"AlterTableStmt", "relation", ObjectRole::altered, false, ""},
    {"RenameStmt", "relation", ObjectRole::altered, false, ""},
    {"AlterObjectSchemaStmt", "relation", ObjectRole::altered, false, ""},
    {"AlterObjectDependsStmt", "relation", ObjectRole::altered, false, ""},
    {"AlterOwnerStmt", "relation", ObjectRole::altered, false, ""},
    {"IndexStmt", "relation", ObjectRole::altered, false, "table"},
    {"CreateTrigStmt", "relation", ObjectRole::altered, false, "table"},
    {"RuleStmt", "relation", ObjectRole::altered, false, "table"},
    {"CreatePolicyStmt", "table", ObjectRole::altered, false, "table"},
    {"AlterPolicyStmt", "table", ObjectRole::altered, false, "table"},
    {"RefreshMatViewStmt", "relation", ObjectRole::written, false, "materialized view"},
    {"CompositeTypeStmt", "typevar", ObjectRole::created, false, "type"},
    {"ClusterStmt", "relation", ObjectRole::altered, false, "table"},
    {"ReindexStmt", "relation", ObjectRole::altered, false, ""},
    {"GrantStmt", "objects", ObjectRole::altered, false, ""},
    {"LockStmt", "relations", ObjectRole::read, false, "table"},
    {"CreateStatsStmt", "relations", ObjectRole::read, false, "table"},
};

// The distinct fields of field_roles (names[0, count)). Asked about every structured field of
// every node, most of which it does not hold: a table of the names' hashes answers most at once.
struct RoleFields {
    std::array<std::string_view, std::size(field_roles)> names{};
    std::size_t count = 0;
    std::array<bool, 256> hashed{};  // hashed[hash(name)] for each name held

    [[nodiscard]] static constexpr std::size_t hash(std::string_view field) {
        return field.empty() ? 0 : (field.size() * 37 + static_cast<unsigned char>(field.front()) * 7 +
                                    static_cast<unsigned char>(field.back())) % 256;
    }
    [[nodiscard]] constexpr bool holds(std::string_view field) const {
        if (!hashed[hash(field)]) return false;
        for (std::size_t index = 0; index < count; ++index) {
            if (names[index] == field) return true;
        }
        return false;
    }
    constexpr void add(std::string_view field) {
        if (holds(field)) return;
        names[count++] = field;
        hashed[hash(field)] = true;
    }
};
constexpr RoleFields role_fields = [] {
    RoleFields fields;
    for (const FieldRole& entry : field_roles) fields.add(entry.field);
    return fields;
}();

// What a search below a node makes of one field: found, not it (look inside), or not inside.
enum class NodeMatch : std::uint8_t { found, descend, skip };

// Whether `match(key, field)` finds a field below `value` (bounded like every walk: deeper than
// max_json_depth, the answer is `too_deep`).
template <typename Match>
bool any_node(const json& value, const Match& match, bool too_deep, std::size_t depth = 0) {
    if (depth > max_json_depth) return too_deep;
    if (value.is_array()) {
        for (const json item : value)
            if (any_node(item, match, too_deep, depth + 1)) return true;
        return false;
    }
    if (!value.is_object()) return false;
    for (const json field : value) {
        const NodeMatch verdict = match(field.key(), field);
        if (verdict == NodeMatch::found) return true;
        if (verdict == NodeMatch::descend && field.is_structured() && any_node(field, match, too_deep, depth + 1))
            return true;
    }
    return false;
}

// Whether `value` holds a column reference qualified with `target` (`t.id`, `s.t.id`; too deep
// to tell: as naming none).
bool names_target_column(const json& value, std::string_view target) {
    return any_node(value, [target](std::string_view key, const json& field) {
        if (key != "ColumnRef") return NodeMatch::descend;
        const auto names = names_of(child(field, "fields"));
        return names.size() >= 2 && names[names.size() - 2] == target ? NodeMatch::found : NodeMatch::skip;
    }, false);
}

// MERGE ... ON <condition on no column of the target> WHEN MATCHED THEN UPDATE / DELETE, the
// action without AND <condition>: every row of the target is matched, as by an UPDATE or DELETE
// without WHERE. The ON condition is MERGE's WHERE when it reads a column of the target, named
// with the target's name or alias (`ON s.k = 1` reads the source's only, review 99; an unqualified
// name may be either's).
bool merge_changes_every_row(const json& merge) {
    const json target = child(merge, "relation");
    const json alias = child(target, "alias");
    const std::string_view name = alias.valid() ? str(alias, "aliasname") : str(target, "relname");
    if (names_target_column(child(merge, "joinCondition"), name)) return false;
    for (const json clause : child(merge, "mergeWhenClauses")) {
        const auto node = node_of(clause);
        if (!node || node->first != "MergeWhenClause" || !boolean(node->second, "matched")) continue;
        const std::string_view command = str(node->second, "commandType");
        if ((command == "CMD_UPDATE" || command == "CMD_DELETE") && !node->second.contains("condition")) return true;
    }
    return false;
}

// Functions of one value per call that upserts' VALUES lists call (ORMs' timestamps, keys and
// JSON): any other call may return a set (unnest, generate_series, a function of the database's),
// and PostgreSQL makes a row of each of its elements.
constexpr std::array<std::string_view, 60> single_value_functions = {
    "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timezone", "date_trunc",
    "date_part", "extract", "make_interval", "make_date", "make_timestamp", "make_timestamptz", "age",
    "to_timestamp", "to_date", "to_char", "to_number", "gen_random_uuid", "uuid_generate_v4", "nextval",
    "currval", "setval", "random", "lower", "upper", "btrim", "ltrim", "rtrim", "trim", "concat",
    "concat_ws", "length", "char_length", "substring", "substr", "replace", "left", "right", "lpad",
    "rpad", "format", "md5", "encode", "decode", "to_tsvector", "to_jsonb", "to_json", "jsonb_build_object",
    "json_build_object", "jsonb_build_array", "json_build_array", "jsonb_set", "array_to_string",
    "string_to_array", "array_append", "array_length", "abs", "round", "floor", "ceil",
};

// Whether an expression of a VALUES list may return more than one row: a call of a function not
// known to return one value (by name: an overload of the database's with another signature may
// return a set, docs/policy.md), in attribute notation too, outside a subquery (a scalar subquery
// is one value or an error; too deep to tell: assume it may).
bool may_return_rows(const json& value) {
    return any_node(value, [](std::string_view key, const json& field) {
        if (key == "SubLink") return NodeMatch::skip;
        // `(x).f` is f(x) where x has no field f: `(ARRAY[...]).unnest` is a set (review 102).
        if (key == "A_Indirection") {
            for (const json item : child(field, "indirection")) {
                const auto selected = node_of(item);
                if (selected && selected->first == "String") return NodeMatch::found;
            }
            return NodeMatch::descend;
        }
        if (key != "FuncCall") return NodeMatch::descend;
        const auto names = names_of(child(field, "funcname"));
        const bool known = !names.empty() && (names.size() == 1 || names.front() == "pg_catalog") &&
                           std::find(single_value_functions.begin(), single_value_functions.end(), names.back()) !=
                               single_value_functions.end();
        return known ? NodeMatch::descend : NodeMatch::found;  // (a known call's arguments may be sets)
    }, true);
}

bool only_keys(const json& body, std::initializer_list<std::string_view> allowed);

// A value the statement gives itself: a constant, or a parameter its client binds (`binds`: not
// PREPARE's, whose EXECUTE may compute it from the table, review 103), cast or not, or an array of
// them.
bool given_value(const json& value, bool binds, std::size_t depth = 0) {
    const auto node = node_of(value);
    if (!node || depth > max_json_depth) return false;
    if (node->first == "A_Const") return true;
    if (node->first == "ParamRef") return binds;
    if (node->first == "TypeCast") return given_value(child(node->second, "arg"), binds, depth + 1);
    if (node->first != "A_ArrayExpr") return false;
    for (const json element : child(node->second, "elements"))
        if (!given_value(element, binds, depth + 1)) return false;
    return true;
}

// `SELECT * FROM unnest($1::text[], $2::int[])`: rows the statement lists itself, as a VALUES list
// lists them (Django's bulk_create(update_conflicts=True) since 5.2; review 102).
bool unnests_given_arrays(const json& select, bool binds) {
    if (!only_keys(select, {"targetList", "fromClause", "limitOption", "op"})) return false;
    for (const json item : child(select, "targetList")) {
        const auto target = node_of(item);
        if (!target || target->first != "ResTarget") return false;
        const auto value = node_of(child(target->second, "val"));
        if (!value || value->first != "ColumnRef") return false;
    }
    const json from = child(select, "fromClause");
    if (from.size() != 1) return false;
    const auto range = node_of(from.front());
    if (!range || range->first != "RangeFunction" || child(range->second, "functions").size() != 1) return false;
    const auto list = node_of(child(range->second, "functions").front());
    if (!list || list->first != "List") return false;
    const auto call = node_of(child(list->second, "items").front());
    if (!call || call->first != "FuncCall" || !only_keys(call->second, {"funcname", "args", "funcformat", "location"}))
        return false;
    const auto names = names_of(child(call->second, "funcname"));
    if (names.empty() || names.back() != "unnest" || (names.size() == 2 && names.front() != "pg_catalog") ||
        names.size() > 2)
        return false;
    for (const json argument : child(call->second, "args"))
        if (!given_value(argument, binds)) return false;
    return true;
}

// INSERT ... SELECT ... ON CONFLICT DO UPDATE without WHERE updates every existing row the
// query's rows collide with, which may be all of them (INSERT INTO t SELECT * FROM t ...); a
// VALUES list bounds the rows it can touch to its own rows, as a WHERE on a key would, unless a
// value of it is a set (`VALUES (unnest(ARRAY(SELECT id FROM t)), ...)`, review 99), and so does
// unnest() of arrays the statement gives itself.
// `binds`: the statement's $n are its client's (Walker::set_binds_parameters).
bool upsert_changes_every_row(const json& insert, bool binds) {
    const json conflict = insert.find("onConflictClause");
    if (!conflict.valid() || str(conflict, "action") != "ONCONFLICT_UPDATE" || conflict.contains("whereClause")) {
        return false;
    }
    const auto source = node_of(child(insert, "selectStmt"));
    if (!source) return false;  // DEFAULT VALUES: one row
    if (source->first != "SelectStmt") return true;
    if (unnests_given_arrays(source->second, binds)) return false;
    if (!source->second.contains("valuesLists")) return true;
    return may_return_rows(child(source->second, "valuesLists"));
}

// Whether EXPLAIN runs its statement. PostgreSQL 15 takes each ANALYZE option in turn, the last
// one winning, without refusing repeats: `EXPLAIN (ANALYZE false, ANALYZE) DELETE FROM t` runs
// the DELETE. So any ANALYZE option that may be true counts (the first alone did, before).
bool explain_has_analyze(const json& body) {
    const auto options = body.find("options");
    if (!options.is_array()) return false;
    const auto analyzes = [](const json& arg) {
        if (!arg.valid()) return true;
        const auto value = node_of(arg);
        if (!value) return true;
        if (value->first == "String") {
            const std::string setting = lower(str(value->second, "sval"));
            return !(setting == "false" || setting == "off" || setting == "0" || setting == "no");
        }
        if (value->first == "Integer") return value->second.find("ival").integer() != 0;
        return true;
    };
    for (const json option : options) {
        const auto node = node_of(option);
        if (!node || node->first != "DefElem" || str(node->second, "defname") != "analyze") continue;
        if (analyzes(node->second.find("arg"))) return true;
    }
    return false;
}

std::string constant_text(const json& a_const, bool& ok) {
    if (const json it = a_const.find("sval"); it.valid()) return std::string(str(it, "sval"));
    if (const json it = a_const.find("ival"); it.valid()) return std::to_string(it.find("ival").integer());
    if (const json it = a_const.find("fval"); it.valid()) return std::string(str(it, "fval"));
    if (const json it = a_const.find("boolval"); it.valid()) return boolean(it, "boolval") ? "true" : "false";
    ok = false;
    return {};
}

bool only_keys(const json& body, std::initializer_list<std::string_view> allowed) {
    for (const json member : body) {
        const std::string_view key = member.key();
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) return false;
    }
    return true;
}

// Whether a cast hands on its constant as written: a string to text or to varchar without a
// length, an integer to an integer type or to numeric without a scale, a string to an integer
// type (read as a number by whoever reads it: '007' is 7). Any other cast may change it:
// varchar(4) and char(4) cut a string, char pads and trims it, name cuts it at 63 bytes, a
// fraction cast to bigint is rounded. (Unqualified type names are trusted to be pg_catalog's:
// types_read_through_casts, whose temporary namesakes the policy refuses.)
bool cast_keeps_constant(const json& type_name, const json& constant) {
    const auto names = names_of(child(type_name, "names"));
    const auto literal = node_of(constant);
    if (!literal || literal->first != "A_Const" || !only_keys(type_name, {"names", "typemod", "location"}) ||
        names.empty() || names.size() > 2 || (names.size() == 2 && names[0] != "pg_catalog"))
        return false;
    const std::string_view type = names.back();
    const bool integer_type = type == "int2" || type == "int4" || type == "int8";
    // A string cast to an integer type: its reader (advisory lock keys) reads it as int8in does.
    if (literal->second.contains("sval")) return type == "text" || type == "varchar" || integer_type;
    if (literal->second.contains("ival")) return integer_type || type == "numeric";
    // An integer too long for int4 is a Float node: kept when it is digits alone.
    if (const json fval = literal->second.find("fval"); fval.valid()) {
        const std::string_view digits = str(fval, "fval");
        return (type == "int8" || type == "numeric") && !digits.empty() &&
               digits.find_first_not_of("0123456789", digits.front() == '-' ? 1 : 0) == std::string_view::npos;
    }
    return false;
}

// A constant argument as text: a string, number or boolean literal, possibly cast where the cast
// keeps it ('SELECT 1'::text, 42::bigint); nothing for any other expression.
std::optional<std::string> constant_string(const json& argument) {
    const auto node = node_of(argument);
    if (!node) return std::nullopt;
    if (node->first == "TypeCast") {
        const json arg = child(node->second, "arg");
        if (!cast_keeps_constant(child(node->second, "typeName"), arg)) return std::nullopt;
        return constant_string(arg);
    }
    if (node->first != "A_Const" || node->second.contains("isnull")) return std::nullopt;
    bool ok = true;
    std::string text = constant_text(node->second, ok);
    if (!ok) return std::nullopt;
    return text;
}

// Whether an expression's value is an int2 or int4 whatever it computes: a cast to one, or
// hashtext() and its kin (`pg_advisory_xact_lock(hashtext('jobs'))`), which return int4. As a
// lock key it is below 2^31: never one of pgrail's (unqualified names are pg_catalog's, as in
// cast_keeps_constant).
bool is_int4_by_construction(const json& expression) {
    const auto node = node_of(expression);
    if (!node) return false;
    if (node->first == "TypeCast") {
        const json type_name = child(node->second, "typeName");
        const auto names = names_of(child(type_name, "names"));
        return only_keys(type_name, {"names", "typemod", "location"}) && !names.empty() && names.size() <= 2 &&
               (names.size() == 1 || names[0] == "pg_catalog") && (names.back() == "int2" || names.back() == "int4");
    }
    if (node->first != "FuncCall") return false;
    const auto names = names_of(child(node->second, "funcname"));
    if (names.empty() || names.size() > 2 || (names.size() == 2 && names[0] != "pg_catalog")) return false;
    const std::string_view function = names.back();
    return function == "hashtext" || function == "hashint2" || function == "hashint4" || function == "hashint8";
}

// The number of the parameter an argument is ($n), possibly cast to an integer type (which
// keeps a key's value or fails); nothing for anything else.
std::optional<long long> bound_parameter(const json& argument) {
    const auto node = node_of(argument);
    if (!node) return std::nullopt;
    if (node->first == "TypeCast") {
        const json type_name = child(node->second, "typeName");
        const auto names = names_of(child(type_name, "names"));
        if (!only_keys(type_name, {"names", "typemod", "location"}) || names.empty() || names.size() > 2 ||
            (names.size() == 2 && names[0] != "pg_catalog") ||
            (names.back() != "int2" && names.back() != "int4" && names.back() != "int8"))
            return std::nullopt;
        return bound_parameter(child(node->second, "arg"));
    }
    if (node->first != "ParamRef") return std::nullopt;
    const long long number = node->second.find("number").integer();
    // Past the 65535 values a Bind can carry, only SQL EXECUTE gives it one (review 96).
    if (number < 1 || number > 65535) return std::nullopt;
    return number;
}

// The sequence a nextval()/setval() argument names, as regclass's input reads it: a string
// constant (possibly cast to regclass) holding a name, split and down-cased as the server splits
// it; nothing for anything else, and for digits alone, which regclass reads as an OID.
std::optional<std::vector<std::string>> regclass_constant(const json& argument) {
    const auto node = node_of(argument);
    if (!node) return std::nullopt;
    if (node->first == "TypeCast") {
        const auto type = names_of(child(child(node->second, "typeName"), "names"));
        if (type.empty() || type.back() != "regclass" || type.size() > 2 || (type.size() == 2 && type[0] != "pg_catalog"))
            return std::nullopt;
        return regclass_constant(child(node->second, "arg"));
    }
    if (node->first != "A_Const") return std::nullopt;
    const json value = node->second.find("sval");
    if (!value.valid()) return std::nullopt;
    const std::string_view text = str(value, "sval");
    if (text.find_first_not_of("0123456789") == std::string_view::npos) return std::nullopt;
    auto names = split_identifiers(text, '.');
    if (!names || names->empty() || names->size() > 3) return std::nullopt;
    if (std::any_of(names->begin(), names->end(), [](const std::string& name) { return name.empty(); }))
        return std::nullopt;
    return names;
}

// The table `pg_get_serial_sequence('<table>', ...)` names (Django's sequence reset:
// setval(pg_get_serial_sequence('"app_model"', 'id'), ...)), split as the function splits it; the
// sequence it returns is the one a column of that table owns, made beside it by SERIAL or
// IDENTITY (moving it elsewhere is DDL). Nothing for any other expression.
std::optional<std::vector<std::string>> serial_sequence_table(const json& argument) {
    const auto node = node_of(argument);
    if (!node || node->first != "FuncCall") return std::nullopt;
    const auto names = names_of(child(node->second, "funcname"));
    const json args = child(node->second, "args");
    if (names.empty() || names.back() != "pg_get_serial_sequence" || names.size() > 2 ||
        (names.size() == 2 && names[0] != "pg_catalog") || args.size() != 2 ||
        !only_keys(node->second, {"funcname", "args", "funcformat", "location"}))
        return std::nullopt;
    return regclass_constant(element(args, 0));
}

// The column a ColumnRef names, when it is `column` or `<qualifier>.column` (nothing else).
std::optional<std::string_view> column_of(const json& value, std::string_view qualifier) {
    const auto node = node_of(value);
    if (!node || node->first != "ColumnRef") return std::nullopt;
    const auto names = names_of(child(node->second, "fields"));
    const json fields = child(node->second, "fields");
    if (names.size() != fields.size() || names.empty() || names.size() > 2) return std::nullopt;  // `*` is no name
    if (names.size() == 2 && names[0] != qualifier) return std::nullopt;
    return names.back();
}

// Whether `name` is spelled as PostgreSQL's settings are (letters, digits, `_`, `.`, `$`), and
// shorter than NAMEDATALEN: a column of a built-in type that equals such a constant and passes
// to set_config's text holds that very name (or, a "char" column, its first byte, which names no
// setting). An unqualified pg_settings may be a CTE of the statement (`WITH pg_settings AS
// (SELECT 'search_path'::bpchar AS name) ...`) or the session's own temporary view (pg_temp is
// searched before pg_catalog for relations), and its `name` another type: bpchar's `=` ignores
// trailing spaces, so `WHERE name = 'search_path '` pinned a name no setting has while the call
// received search_path; `name` cuts a longer constant at 63 bytes.
bool plain_setting_name(std::string_view name) {
    return !name.empty() && name.size() < 64 && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
               c == '$';
    });
}

// The setting name a `SELECT set_config(name, ...) FROM pg_settings WHERE name = '<constant>'`
// passes (pg_dump's form): the WHERE conjunct pins the column to one constant, so the call can
// only ever receive that name. Anything else (another FROM item, OR, a subquery in between, a
// constant that is no plain setting name) pins nothing. Unqualified pg_settings and `=` count as
// pg_catalog's, as unqualified functions do (see plain_setting_name for why that is safe).
std::optional<std::string> pg_settings_pinned_name(const json& select) {
    const json from = child(select, "fromClause");
    if (from.size() != 1) return std::nullopt;
    const auto range = node_of(from.front());
    if (!range || range->first != "RangeVar" || str(range->second, "relname") != "pg_settings") return std::nullopt;
    const std::string_view schema = str(range->second, "schemaname");
    if (!schema.empty() && schema != "pg_catalog") return std::nullopt;
    const json alias = child(range->second, "alias");
    const std::string_view qualifier = alias.valid() ? str(alias, "aliasname") : std::string_view("pg_settings");

    std::vector<json> conjuncts;
    const auto where = node_of(child(select, "whereClause"));
    if (!where) return std::nullopt;
    if (where->first == "BoolExpr" && str(where->second, "boolop") == "AND_EXPR") {
        for (const json arg : child(where->second, "args")) conjuncts.push_back(arg);
    } else {
        conjuncts.push_back(child(select, "whereClause"));
    }
    for (const json& conjunct : conjuncts) {
        const auto expr = node_of(conjunct);
        if (!expr || expr->first != "A_Expr" || str(expr->second, "kind") != "AEXPR_OP") continue;
        const auto op = names_of(child(expr->second, "name"));
        if (op.empty() || op.back() != "=" || (op.size() == 2 && op[0] != "pg_catalog") || op.size() > 2) continue;
        const json lhs = child(expr->second, "lexpr");
        const json rhs = child(expr->second, "rexpr");
        for (const auto& [column, constant] : {std::pair{lhs, rhs}, std::pair{rhs, lhs}}) {
            if (column_of(column, qualifier) != std::optional<std::string_view>("name")) continue;
            const auto constant_node = node_of(constant);
            if (!constant_node || constant_node->first != "A_Const" || !constant_node->second.contains("sval"))
                continue;
            if (auto text = constant_string(constant); text && plain_setting_name(*text)) return text;
        }
    }
    return std::nullopt;
}

bool is_advisory_lock(std::string_view function) {
    static constexpr std::string_view locks[] = {
        "pg_advisory_lock",        "pg_advisory_lock_shared",        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared", "pg_try_advisory_lock",    "pg_try_advisory_lock_shared",
        "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
    };
    return std::find(std::begin(locks), std::end(locks), function) != std::end(locks);
}

// Built-ins that execute SQL text given as an argument (PostgreSQL 15's catalog): the index of
// that argument, or -1.
int query_text_argument(std::string_view function, std::size_t argument_count) {
    if (argument_count == 0) return -1;
    if (function == "query_to_xml" || function == "query_to_xmlschema" || function == "query_to_xml_and_xmlschema" ||
        function == "ts_stat") {
        return 0;
    }
    if (function == "ts_rewrite" && argument_count == 2) return 1;  // ts_rewrite(tsquery, select text)
    return -1;
}

// Functions of a contrib extension that execute SQL text given as arguments, wherever the
// extension was installed (a function of such a name in any schema is read as running its text):
// tablefunc's crosstab(source_sql [, category_sql]) and crosstab2/3/4(source_sql). How many of
// the first arguments are SQL text.
std::size_t extension_query_text_arguments(std::string_view function, std::size_t argument_count) {
    if (function == "crosstab") return std::min<std::size_t>(argument_count, 2);
    if (function == "crosstab2" || function == "crosstab3" || function == "crosstab4")
        return std::min<std::size_t>(argument_count, 1);
    return 0;
}

// A string constant, possibly cast to text, as a function receives it (a cast to another type may
// change the text: varchar(4) cuts it), or nothing.
std::optional<std::string> text_constant(const json& argument) {
    const auto node = node_of(argument);
    if (!node) return std::nullopt;
    if (node->first == "TypeCast") {
        const json type = child(node->second, "typeName");
        const auto names = names_of(child(type, "names"));
        if (!only_keys(type, {"names", "typemod", "location"}) || names.empty() || names.back() != "text" ||
            (names.size() == 2 && names[0] != "pg_catalog") || names.size() > 2)
            return std::nullopt;
        return text_constant(child(node->second, "arg"));
    }
    if (node->first != "A_Const" || !node->second.contains("sval")) return std::nullopt;
    return constant_string(argument);
}

// A relation or column name as SQL text: unquoted identifiers, dot-separated (nothing that can
// open a string, a quoted name or a comment, end a statement or add a clause).
bool plain_name(std::string_view text) {
    std::size_t parts = 0;
    for (std::size_t at = 0;;) {
        if (at >= text.size() || !(std::isalpha(static_cast<unsigned char>(text[at])) || text[at] == '_')) return false;
        while (at < text.size() && (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '_' ||
                                    text[at] == '$'))
            ++at;
        if (++parts > 3) return false;
        if (at == text.size()) return true;
        if (text[at++] != '.') return false;
    }
}

bool integer_constant(const json& argument) {
    const auto node = node_of(argument);
    return node && node->first == "A_Const" && node->second.contains("ival");
}

// Functions of a contrib extension that splice their arguments into the SQL they run, wherever
// the extension was installed; the text they run, or nothing when pgrail cannot know it. Neither
// quotes what it splices: an argument may close the template's clause and run anything.
// - tablefunc's connectby(relname, keyid_fld, parent_keyid_fld, [orderby_fld,] start_with,
//   max_depth [, branch_delim]) runs "SELECT keyid_fld, parent_keyid_fld FROM relname WHERE
//   parent_keyid_fld = <start_with, quoted> AND keyid_fld IS NOT NULL AND keyid_fld <>
//   parent_keyid_fld [ORDER BY orderby_fld]", again for each row found with that row's key as the
//   literal: the names must be plain names (so that no literal, the table's data among them, can
//   end a comment or string they open), and the text is read with an empty literal. With six
//   arguments the fourth is orderby_fld unless the fifth is an integer constant (max_depth).
// - xml2's xpath_table(key, document, relname, xpaths, criteria) runs "SELECT key, document FROM
//   relname WHERE criteria" (all four constant text, read as the server splices them).
struct SplicedQuery {
    std::optional<std::string> text;  // nullopt: not constant or not plain: refused
    bool applies = false;             // the function is one of these
};
SplicedQuery spliced_query(std::string_view function, const json& args) {
    const std::size_t count = args.size();
    if (function == "connectby" && count >= 5 && count <= 7) {
        const bool ordered = count == 7 || (count == 6 && !integer_constant(element(args, 4)));
        std::vector<std::string> names;
        for (std::size_t index = 0; index < (ordered ? 4U : 3U); ++index) {
            auto name = text_constant(element(args, index));
            if (!name || !plain_name(*name)) return {std::nullopt, true};
            names.push_back(std::move(*name));
        }
        const std::string& key = names[1];
        const std::string& parent = names[2];
        return {"SELECT " + key + ", " + parent + " FROM " + names[0] + " WHERE " + parent + " = '' AND " + key +
                    " IS NOT NULL AND " + key + " <> " + parent + (ordered ? " ORDER BY " + names[3] : ""),
                true};
    }
    if (function == "xpath_table" && count == 5) {
        std::vector<std::string> parts;
        for (const std::size_t index : {0U, 1U, 2U, 4U}) {
            auto part = text_constant(element(args, index));
            if (!part) return {std::nullopt, true};
            parts.push_back(std::move(*part));
        }
        return {"SELECT " + parts[0] + ", " + parts[1] + " FROM " + parts[2] + " WHERE " + parts[3], true};
    }
    return {};
}

// Functions that run the query text of their one argument (the two lists above, called with one):
// attribute notation reaches them (`('SELECT ...'::text).ts_stat` is ts_stat('SELECT ...')), where
// pgrail does not follow the text.
bool runs_query_of_one_argument(std::string_view function) {
    return query_text_argument(function, 1) == 0 || extension_query_text_arguments(function, 1) > 0;
}

// The value of a PL/pgSQL expression that is a single string constant ('CREATE TABLE t ()'),
// read by the grammar, or nothing.
std::optional<std::string> constant_expression(std::string_view expression) {
    const std::string text = "SELECT " + std::string(expression);
    PooledTree parsed;
    const ParsedText parse(text.c_str(), *parsed);
    if (!parse.ok()) return std::nullopt;
    const json statements = child(parsed->root(), "stmts");
    if (statements.size() != 1) return std::nullopt;
    const auto select = node_of(child(statements.front(), "stmt"));
    if (!select || select->first != "SelectStmt") return std::nullopt;
    for (const json member : select->second) {
        const std::string_view key = member.key();
        if (key != "targetList" && key != "limitOption" && key != "op") return std::nullopt;
    }
    const json targets = child(select->second, "targetList");
    if (targets.size() != 1) return std::nullopt;
    const auto target = node_of(targets.front());
    if (!target || target->first != "ResTarget" || target->second.contains("name")) return std::nullopt;
    const auto value = node_of(child(target->second, "val"));
    if (!value) return std::nullopt;
    const auto literal = node_of(value->first == "TypeCast" ? child(value->second, "arg") : child(target->second, "val"));
    if (!literal || literal->first != "A_Const" || !literal->second.contains("sval")) return std::nullopt;
    // EXECUTE hands the string on through a cast to text; varchar(n) or char(n) would cut it.
    return constant_string(child(target->second, "val"));
}

// A setting's value as the parser gives it (identifiers down-cased, strings as written); a
// list's elements joined by ", ", each double-quoted where it needs it, as PostgreSQL flattens
// a list setting; "*" for anything that is not a constant.
std::string setting_value(const json& args) {
    std::vector<std::string> values;
    for (const json argument : args) {
        const auto value = constant_string(argument);
        if (!value) return "*";
        values.push_back(*value);
    }
    if (values.size() == 1) return values.front();
    std::string joined_values;
    for (const std::string& value : values) {
        if (!joined_values.empty()) joined_values += ", ";
        const bool plain = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
        });
        if (plain) {
            joined_values += value;
            continue;
        }
        joined_values += '"';
        for (const char c : value) joined_values += c == '"' ? std::string("\"\"") : std::string(1, c);
        joined_values += '"';
    }
    return joined_values;
}

// READ WRITE / READ ONLY, ISOLATION LEVEL, DEFERRABLE: DefElems named after the setting each
// changes (`prefix` "default_" for SET SESSION CHARACTERISTICS).
std::vector<SettingChange> transaction_settings(const json& options, std::string_view prefix) {
    std::vector<SettingChange> changes;
    for (const json option : options) {
        const auto element = node_of(option);
        if (!element || element->first != "DefElem") continue;
        SettingChange change{std::string(prefix) + lower(str(element->second, "defname")), false, "*"};
        if (const auto value = node_of(child(element->second, "arg")); value && value->first == "A_Const") {
            if (value->second.contains("ival")) {
                change.value = value->second.find("ival").find("ival").integer() != 0 ? "on" : "off";
            } else if (const auto text = constant_string(child(element->second, "arg"))) {
                change.value = lower(*text);
            }
        }
        changes.push_back(std::move(change));
    }
    return changes;
}

// The settings a SET / RESET changes.
std::vector<SettingChange> settings_of_set(const json& set) {
    const std::string_view kind = str(set, "kind");
    if (kind == "VAR_RESET_ALL") return {SettingChange{"all", false, ""}};
    const std::string name = lower(str(set, "name"));
    if (kind == "VAR_SET_MULTI" && (name == "transaction" || name == "session characteristics")) {
        auto changes = transaction_settings(child(set, "args"), name == "transaction" ? "" : "default_");
        if (!changes.empty()) return changes;
    }
    SettingChange change{name, false, ""};
    if (kind == "VAR_SET_VALUE" || kind == "VAR_SET_MULTI") change.value = setting_value(child(set, "args"));
    if (kind == "VAR_SET_CURRENT") change.value = "*";
    return {change};
}

// The function and constant arguments of a FuncCall `pgrail.<function>(constant, ...)`, or nothing
// (another function, another form: DISTINCT, ORDER BY, FILTER, OVER, VARIADIC, an expression as
// argument). Arguments are literals as written (no casts), as the commands take them.
std::optional<PgrailCall> pgrail_function_call(const json& call) {
    if (!only_keys(call, {"funcname", "args", "funcformat", "location"})) return std::nullopt;
    if (str(call, "funcformat") != "COERCE_EXPLICIT_CALL") return std::nullopt;
    const std::vector<std::string_view> names = names_of(child(call, "funcname"));
    if (names.size() != 2 || names[0] != "pgrail") return std::nullopt;
    PgrailCall result;
    result.function = std::string(names[1]);
    result.command = pgrail_command_named(result.function);
    for (const json argument : child(call, "args")) {
        const auto constant = node_of(argument);
        if (!constant || constant->first != "A_Const" || constant->second.contains("isnull")) return std::nullopt;
        bool ok = true;
        result.arguments.push_back(constant_text(constant->second, ok));
        if (!ok) return std::nullopt;
    }
    return result;
}

// `SELECT pgrail.<function>(constants)`: the call is the whole statement (the form pgrail
// answered before relations; kept).
std::optional<PgrailCall> pgrail_statement_call(const json& select) {
    if (!only_keys(select, {"targetList", "limitOption", "op"}) || str(select, "op") != "SETOP_NONE") {
        return std::nullopt;
    }
    const json& targets = child(select, "targetList");
    if (targets.size() != 1) return std::nullopt;
    const auto target = node_of(targets.front());
    if (!target || target->first != "ResTarget" || !only_keys(target->second, {"val", "location"})) {
        return std::nullopt;
    }
    const auto value = node_of(child(target->second, "val"));
    if (!value || value->first != "FuncCall") return std::nullopt;
    auto call = pgrail_function_call(value->second);
    if (call) call->whole_statement = true;
    return call;
}

// A range function in FROM that is one pgrail command: `pgrail.f(constants) [AS alias [(columns)]]`,
// also LATERAL (which changes nothing for a constant relation); not WITH ORDINALITY, ROWS FROM
// or a column definition list. `offset` holds the FuncCall's location in the parsed text until the
// statement's spans are resolved (resolve_call_spans).
std::optional<PgrailCall> pgrail_range_call(const json& range) {
    if (!only_keys(range, {"functions", "alias", "lateral"})) return std::nullopt;
    const json& functions = child(range, "functions");
    if (functions.size() != 1) return std::nullopt;
    const auto pair = node_of(functions.front());
    if (!pair || pair->first != "List") return std::nullopt;
    const json& items = child(pair->second, "items");
    if (items.empty() || items.size() > 2) return std::nullopt;
    if (items.size() == 2 && !element(items, 1).empty()) return std::nullopt;  // a column definition list
    const auto function = node_of(items.front());
    if (!function || function->first != "FuncCall") return std::nullopt;
    auto call = pgrail_function_call(function->second);
    if (!call) return std::nullopt;
    const long long location = function->second.find("location").integer();
    if (location < 0) return std::nullopt;
    call->offset = static_cast<std::size_t>(location);
    call->aliased = range.contains("alias");
    return call;
}

std::vector<Statement> analyze_text(std::string_view query, int body_level, std::optional<ParseError>* error);

// The SELECTs a SelectStmt body holds: itself and, for a set operation, each arm (the parse tree
// holds arms as SelectStmt bodies without a node name, so the walk does not meet them as nodes).
template <class Visit>
void for_each_select_arm(const json& select, Visit&& visit) {
    if (!select.contains("larg")) {  // most SELECTs: no set operation
        visit(select);
        return;
    }
    std::vector<json> pending{select};
    while (!pending.empty()) {
        const json next = pending.back();
        pending.pop_back();
        visit(next);
        for (const json arm : {child(next, "larg"), child(next, "rarg")})
            if (arm.valid()) pending.push_back(arm);
    }
}

// Whether a SELECT writes its rows into a new table: its own INTO, or an arm's
// (`SELECT ... INTO t UNION SELECT ...`: PostgreSQL takes the leftmost arm's INTO for the whole
// set operation, and runs it as CREATE TABLE AS).
bool selects_into(const json& select) {
    bool into = false;
    for_each_select_arm(select, [&into](const json& arm) { into = into || arm.contains("intoClause"); });
    return into;
}

// Walks one statement's parse tree once, collecting objects, functions, settings and flags.
class Walker {
public:
    // `statement_text`: the statement's own text (PL/pgSQL parsing of CREATE FUNCTION uses it).
    Walker(Statement& out, int body_level, std::string_view statement_text)
        : out_(out), body_level_(body_level), statement_text_(statement_text) {}

    void visit_node(std::string_view type, const json& body, const Scope& outer, std::size_t depth) {
        Scope scope = outer;
        scope.node = type;
        if (type.ends_with("Stmt")) {
            scope.level = ++levels_;
            scope.role = ObjectRole::read;
            scope.kind = "relation";
            if (!is(type, "SelectStmt")) scope.relation_calls = false;
        }
        if (scope.relation_calls && is(type, "RangeFunction")) {
            // One of pgrail's commands read as a relation: pgrail runs it and the server reads
            // a constant relation in its place; the call is not a function of the statement.
            if (auto call = pgrail_range_call(body)) {
                out_.pgrail_calls.push_back(std::move(*call));
                return;
            }
        }
        on_node(type, body, scope);
        walk(body, scope, depth + 1);
    }

    const std::vector<std::string>& cte_names() const { return cte_names_; }

private:
    void walk(const json& value, const Scope& scope, std::size_t depth) {
        if (depth > max_json_depth) throw Refusal{"statement nested too deeply to analyse safely"};
        if (value.is_array()) {
            for (const json item : value) walk(item, scope, depth + 1);
            return;
        }
        if (!value.is_object()) return;
        if (value.contains("relname")) {
            add_relation(value, scope);
            return;
        }
        for (const json field : value) {
            const std::string_view key = field.key();
            if (!key.empty() && key[0] >= 'A' && key[0] <= 'Z' && field.is_object()) {
                visit_node(key, field, scope, depth + 1);
            } else if (is(key, "funccall") && is(scope.node, "CallStmt")) {
                // CALL's procedure: a FuncCall the parse tree holds without its node name.
                visit_node("FuncCall", field, scope, depth + 1);
            } else if (field.is_structured()) {
                Scope inner = field_scope(scope, key);
                if (is(key, "onConflictClause")) {
                    inner.on_conflict = true;
                    inner.on_conflict_level = inner.level;
                    on_conflict_target(field, inner);
                }
                walk(field, inner, depth + 1);
            }
        }
    }

    static Scope field_scope(const Scope& scope, std::string_view field) {
        // Called for every structured field of every node: most (targetList, args, val ...)
        // name none of field_roles' fields, which one look at the names of those settles.
        if (!role_fields.holds(field)) return scope;
        for (const FieldRole& entry : field_roles) {
            if (entry.node != scope.node || entry.field != field) continue;
            Scope inner = scope;
            inner.role = scope.effects ? (entry.use_target_role ? scope.target_role : entry.role) : ObjectRole::read;
            inner.kind = entry.kind.empty() ? scope.target_kind : entry.kind;
            return inner;
        }
        return scope;
    }

    // The functions a RangeFunction reads rows from (`FROM f() AS g`), as ranges under `alias`.
    void add_function_ranges(const json& range_function, const std::string& alias, bool renamed, const Scope& scope) {
        for (const json item : child(range_function, "functions")) {
            const auto list = node_of(item);
            if (!list || list->first != "List") continue;
            const auto call = node_of(child(list->second, "items").front());
            if (!call || call->first != "FuncCall") continue;
            const std::vector<std::string_view> names = names_of(child(call->second, "funcname"));
            if (names.empty()) continue;
            from_calls_.insert(call->second.find("location").integer());
            RangeRead range;
            range.function = true;
            range.name = std::string(names.back());
            if (names.size() >= 2) range.schema = std::string(names[names.size() - 2]);
            range.level = scope.level;
            range.alias = alias;
            range.renamed = renamed;
            out_.ranges.push_back(std::move(range));
        }
    }

    // The relations and functions a join side holds (not those of its subqueries, which are
    // read on their own), as ranges under the join's alias.
    void add_join_alias_ranges(const json& side, const std::string& alias, bool renamed, const Scope& scope,
                               std::size_t depth) {
        const auto node = node_of(side);
        if (!node || depth > max_json_depth) return;
        const auto& [type, body] = *node;
        RangeRead range;
        if (type == "RangeVar") {
            range.schema = std::string(str(body, "schemaname"));
            range.name = std::string(str(body, "relname"));
        } else if (type == "RangeFunction") {
            add_function_ranges(body, alias, renamed, scope);
            return;
        } else if (type == "JoinExpr") {
            for (const json inner : {child(body, "larg"), child(body, "rarg")})
                add_join_alias_ranges(inner, alias, renamed, scope, depth + 1);
            return;
        } else {
            return;
        }
        range.level = scope.level;
        range.alias = alias;
        range.renamed = renamed;
        out_.ranges.push_back(std::move(range));
    }

    void add_relation(const json& range_var, const Scope& scope) {
        ObjectRef ref;
        ref.schema = std::string(str(range_var, "schemaname"));
        ref.name = std::string(str(range_var, "relname"));
        ref.kind = std::string(scope.kind);
        ref.role = scope.role;
        ref.temporary = str(range_var, "relpersistence") == "t" || ref.schema == "pg_temp";
        if (scope.role == ObjectRole::created && ref.temporary) out_.flags.temporary_object = true;
        RangeRead range;
        range.schema = ref.schema;
        range.name = ref.name;
        range.level = scope.level;
        if (const json alias = child(range_var, "alias"); alias.valid()) {
            range.alias = std::string(str(alias, "aliasname"));
            range.renamed = !child(alias, "colnames").empty();
        }
        out_.ranges.push_back(std::move(range));
        add_object(out_, std::move(ref));
    }

public:
    // Whether the statement's $n are the parameters its client binds (a statement of its own text,
    // or one EXPLAIN or DECLARE CURSOR wraps), not PREPARE's or a function body's.
    void set_binds_parameters(bool binds) { binds_parameters_ = binds; }
    [[nodiscard]] int parameter_uses(long long number) const {
        const auto found = parameter_uses_.find(number);
        return found == parameter_uses_.end() ? 0 : found->second;
    }

    // The statement's outermost plain SELECT (see ColumnRead::output): its targets that are just a
    // column (or star) reach the client as they are, and its ORDER BY, GROUP BY and DISTINCT ON
    // positions refer to them.
    void set_output(const json& select) {
        std::uint32_t position = 0;
        for (const json target : child(select, "targetList")) {
            ++position;
            const auto result = node_of(target);
            if (!result || result->first != "ResTarget") continue;
            const auto value = node_of(child(result->second, "val"));
            if (!value || value->first != "ColumnRef") continue;
            output_columns_.push_back({value->second.find("location").integer(), str(result->second, "name"), position});
        }
        // (Looked up by location for every column reference: sorted, once.)
        std::sort(output_columns_.begin(), output_columns_.end(),
                  [](const OutputColumn& a, const OutputColumn& b) { return a.location < b.location; });
        // (A GROUP BY position may stand inside ROLLUP, CUBE and GROUPING SETS, also in a
        // parenthesised row of them: `GROUP BY ROLLUP((1, 2))` groups by the first two outputs.)
        const auto positions = [this](const json& list, bool sort) {
            const auto add = [this](const json& items, bool sort_items, bool in_set, auto& self) -> void {
                for (const json item : items) {
                    auto entry = node_of(item);
                    if (entry && sort_items && entry->first == "SortBy") entry = node_of(child(entry->second, "node"));
                    if (entry && entry->first == "GroupingSet") {
                        self(child(entry->second, "content"), false, true, self);
                        continue;
                    }
                    if (entry && in_set && entry->first == "RowExpr" &&
                        str(entry->second, "row_format") == "COERCE_IMPLICIT_CAST") {
                        self(child(entry->second, "args"), false, true, self);
                        continue;
                    }
                    if (!entry || entry->first != "A_Const" || !entry->second.contains("ival")) continue;
                    ColumnRead read;
                    read.kind = ColumnRead::Kind::position;
                    read.name = std::to_string(child(entry->second, "ival").find("ival").integer());
                    out_.column_reads.push_back(std::move(read));
                }
            };
            add(list, sort, false, add);
        };
        positions(child(select, "sortClause"), true);
        positions(child(select, "groupClause"), false);
        positions(child(select, "distinctClause"), false);
        // Plain DISTINCT (a list of one empty item) compares every output column by its real
        // value, as GROUP BY of each position would: its rows come one per real value (a count of
        // them under a constant mask) and, sorted to find duplicates, in their order.
        const json distinct = child(select, "distinctClause");
        if (!distinct.empty() && !node_of(distinct.front())) {
            ColumnRead read;
            read.kind = ColumnRead::Kind::position;
            read.name = "*";  // every output position (no literal of the text)
            out_.column_reads.push_back(std::move(read));
        }
    }

private:
    // A column reference: `name`, `qualifier.name`, `*`, `qualifier.*` (schema and database
    // qualifiers before the relation's do not matter here).
    void on_column_ref(const json& ref, const Scope& scope) {
        const json fields = child(ref, "fields");
        std::optional<NodeRef> last;
        std::optional<NodeRef> before;
        for (const json field : fields) {
            before = last;
            last = node_of(field);
        }
        if (!last) return;
        ColumnRead read;
        read.level = scope.level;
        if (last->first == "A_Star") {
            read.kind = ColumnRead::Kind::star;
        } else {
            read.name = std::string(str(last->second, "sval"));
        }
        if (before && before->first == "String") read.qualifier = std::string(str(before->second, "sval"));
        // EXCLUDED in ON CONFLICT is the row the statement itself proposes, not a stored one.
        // (In a subquery there, `excluded` is whatever that subquery names so: `FROM users excluded`.)
        if (scope.on_conflict && scope.level == scope.on_conflict_level && read.qualifier == "excluded") return;
        const long long location = ref.find("location").integer();
        const auto first =
            std::lower_bound(output_columns_.begin(), output_columns_.end(), location,
                             [](const OutputColumn& output, long long at) { return output.location < at; });
        for (auto output_at = first; output_at != output_columns_.end() && output_at->location == location;
             ++output_at) {
            const OutputColumn& output = *output_at;
            read.output = true;
            read.output_position = output.position;
            if (!output.name.empty() && output.name != read.name) read.output_name = std::string(output.name);
        }
        out_.column_reads.push_back(std::move(read));
    }

    static ColumnRead read_of(ColumnRead::Kind kind, std::string_view name, const Scope& scope) {
        ColumnRead read;
        read.kind = kind;
        read.name = std::string(name);
        read.level = scope.level;
        return read;
    }

    void add_named_reads(const json& names, const Scope& scope) {
        for (const json item : names) {
            const auto name = node_of(item);
            if (!name || name->first != "String") continue;
            out_.column_reads.push_back(read_of(ColumnRead::Kind::named, str(name->second, "sval"), scope));
        }
    }

    void changes_every_row(std::string_view command) {
        if (!out_.flags.update_or_delete_without_where) out_.flags.every_row_command = command;
        out_.flags.update_or_delete_without_where = true;
    }

    // The columns a target list stores values in (INSERT's column list, UPDATE's and DO UPDATE's
    // SET, MERGE's actions); every column when an INSERT names none.
    // `relation`: the statement's target (RangeVar), whose name or alias qualifies "*".
    void add_written_columns(const json& targets, const Scope& scope, bool every_when_none, const json& relation) {
        bool any = false;
        for (const json item : targets) {
            const auto target = node_of(item);
            if (!target || target->first != "ResTarget") continue;
            out_.column_reads.push_back(read_of(ColumnRead::Kind::written, str(target->second, "name"), scope));
            any = true;
        }
        if (any || !every_when_none) return;
        ColumnRead every = read_of(ColumnRead::Kind::written, "*", scope);
        const json alias = child(relation, "alias");
        every.qualifier = std::string(alias.valid() ? str(alias, "aliasname") : str(relation, "relname"));
        out_.column_reads.push_back(std::move(every));
    }

    void on_written_columns(std::string_view type, const json& body, const Scope& scope) {
        const json relation = child(body, "relation");
        if (is(type, "InsertStmt")) {
            // (DEFAULT VALUES stores the defaults: no value of the statement's.)
            add_written_columns(child(body, "cols"), scope, body.contains("selectStmt"), relation);
            add_written_columns(child(child(body, "onConflictClause"), "targetList"), scope, false, relation);
        } else if (is(type, "UpdateStmt")) {
            add_written_columns(child(body, "targetList"), scope, false, relation);
        } else if (is(type, "MergeStmt")) {
            for (const json item : child(body, "mergeWhenClauses")) {
                const auto clause = node_of(item);
                if (!clause || clause->first != "MergeWhenClause") continue;
                const std::string_view command = str(clause->second, "commandType");
                if (command == "CMD_UPDATE" || command == "CMD_INSERT")
                    add_written_columns(child(clause->second, "targetList"), scope,
                                        command == "CMD_INSERT" && !child(clause->second, "values").empty(), relation);
            }
        } else if (is(type, "CopyStmt") && boolean(body, "is_from")) {
            const json columns = child(body, "attlist");
            for (const json item : columns) {
                const auto name = node_of(item);
                if (name && name->first == "String")
                    out_.column_reads.push_back(read_of(ColumnRead::Kind::written, str(name->second, "sval"), scope));
            }
            if (columns.empty()) add_written_columns(columns, scope, true, relation);
        }
    }

    // ON CONFLICT (columns): which rows conflict depends on the stored values of those columns.
    void on_conflict_target(const json& clause, const Scope& scope) {
        // ON CONFLICT ON CONSTRAINT name: the constraint's columns, which pgrail cannot name, are
        // compared (read as NATURAL JOIN's comparison of every column, named for the message).
        if (child(clause, "infer").contains("conname"))
            out_.column_reads.push_back(read_of(ColumnRead::Kind::natural, "ON CONSTRAINT", scope));
        for (const json item : child(child(clause, "infer"), "indexElems")) {
            const auto element = node_of(item);
            if (element && element->first == "IndexElem" && element->second.contains("name"))
                out_.column_reads.push_back(read_of(ColumnRead::Kind::named, str(element->second, "name"), scope));
        }
    }

    // Reads that name columns outside expressions: JOIN ... USING, NATURAL JOIN, ON CONFLICT's
    // columns, COPY's column list, a field selected from a value, functions read as relations.
    void on_column_source(std::string_view type, const json& body, const Scope& scope) {
        // Called for every node: most types start with none of these letters.
        const char first = type.empty() ? '\0' : type[0];
        if (first != 'C' && first != 'A' && first != 'J' && first != 'R') return;
        if (is(type, "ColumnRef")) {
            on_column_ref(body, scope);
        } else if (is(type, "A_Indirection")) {
            for (const json item : child(body, "indirection")) {
                const auto field = node_of(item);
                if (field && field->first == "String")
                    out_.column_reads.push_back(read_of(ColumnRead::Kind::field, str(field->second, "sval"), scope));
            }
        } else if (is(type, "JoinExpr")) {
            if (boolean(body, "isNatural")) out_.column_reads.push_back(read_of(ColumnRead::Kind::natural, "", scope));
            add_named_reads(child(body, "usingClause"), scope);
            // `(a JOIN b) AS j`: j names the rows of every relation the join holds (`to_jsonb(j)`,
            // `j.*`), each read again under that alias.
            if (const json alias = child(body, "alias"); alias.valid()) {
                const std::string name(str(alias, "aliasname"));
                const bool renamed = !child(alias, "colnames").empty();
                for (const json side : {child(body, "larg"), child(body, "rarg")})
                    add_join_alias_ranges(side, name, renamed, scope, 0);
            }
        } else if (is(type, "RangeFunction")) {
            const json alias = child(body, "alias");
            add_function_ranges(body, alias.valid() ? std::string(str(alias, "aliasname")) : std::string(),
                                alias.valid() && !child(alias, "colnames").empty(), scope);
        } else if (is(type, "CopyStmt") && !boolean(body, "is_from") && !body.contains("query")) {
            const json relation = child(body, "relation");
            const json columns = child(body, "attlist");
            if (columns.empty() && relation.valid()) {
                RangeRead range;
                range.schema = std::string(str(relation, "schemaname"));
                range.name = std::string(str(relation, "relname"));
                range.level = scope.level;
                range.whole = true;
                out_.ranges.push_back(std::move(range));
            }
            add_named_reads(columns, scope);
        }
    }

    void on_node(std::string_view type, const json& body, Scope& scope) {
        on_column_source(type, body, scope);
        if (type.ends_with("Stmt")) on_written_columns(type, body, scope);
        if (is(type, "ParamRef")) ++parameter_uses_[body.find("number").integer()];
        if (is(type, "FuncCall")) {
            on_function(body);
        } else if (is(type, "UpdateStmt") || is(type, "DeleteStmt")) {
            if (scope.effects && !body.contains("whereClause"))
                changes_every_row(is(type, "UpdateStmt") ? "UPDATE" : "DELETE");
        } else if (is(type, "MergeStmt")) {
            if (scope.effects && merge_changes_every_row(body)) changes_every_row("MERGE");
        } else if (is(type, "InsertStmt")) {
            if (scope.effects && upsert_changes_every_row(body, binds_parameters_)) changes_every_row("INSERT");
        } else if (is(type, "CommonTableExpr")) {
            cte_names_.emplace_back(str(body, "ctename"));
            const auto query = node_of(child(body, "ctequery"));
            if (scope.effects && query && query->first != "SelectStmt") out_.flags.data_modifying_cte = true;
        } else if (is(type, "SelectStmt")) {
            if (scope.effects && selects_into(body)) out_.flags.select_into = true;
            for_each_select_arm(body, [this](const json& arm) { pin_setting_names(arm); });
        } else if (is(type, "DefElem") && str(body, "defname") == "sequence_name") {
            // An identity column's own sequence, named by the statement: created where it says
            // (a protected schema too), so it is an object of the statement.
            const auto list = node_of(child(body, "arg"));
            if (list && list->first == "List") add_named(out_, names_of(child(list->second, "items")), "sequence",
                                                         ObjectRole::created);
        } else if (is(type, "LockingClause")) {
            out_.flags.locking_clause = true;
        } else if (is(type, "ExplainStmt")) {
            const bool analyze = explain_has_analyze(body);
            if (analyze && scope.effects) out_.flags.explain_analyze = true;
            scope.effects = scope.effects && analyze;
        } else if (is(type, "CopyStmt")) {
            const bool from = boolean(body, "is_from");
            scope.target_role = from ? ObjectRole::written : ObjectRole::read;
            out_.flags.copy_direction = from ? CopyDirection::from : CopyDirection::to;
            if (boolean(body, "is_program")) out_.flags.copy_program = true;
            else if (body.contains("filename")) out_.flags.copy_file = true;
        } else if (is(type, "CreateTableAsStmt")) {
            const std::string_view object_type = str(body, "objtype");
            scope.target_kind = object_type == "OBJECT_MATVIEW" ? "materialized view" : "table";
            if (object_type != "OBJECT_MATVIEW") out_.flags.create_table_as = true;
        } else if (is(type, "AlterTableStmt") || is(type, "GrantStmt")) {
            scope.target_kind = keep(kind_of(str(body, "objtype")));
        } else if (is(type, "RenameStmt")) {
            // Columns, constraints, triggers, rules and policies are renamed on their relation.
            const std::string_view rename = str(body, "renameType");
            const std::string_view relation = str(body, "relationType");
            const bool on_relation = rename == "OBJECT_COLUMN" || rename == "OBJECT_TABCONSTRAINT" ||
                                     rename == "OBJECT_TRIGGER" || rename == "OBJECT_RULE" || rename == "OBJECT_POLICY";
            scope.target_kind = keep(!on_relation ? kind_of(rename)
                                     : (relation.empty() || relation == "OBJECT_ACCESS_METHOD") ? "table"
                                                                                                : kind_of(relation));
        } else if (is(type, "AlterObjectSchemaStmt") || is(type, "AlterOwnerStmt") ||
                   is(type, "AlterObjectDependsStmt")) {
            scope.target_kind = keep(kind_of(str(body, "objectType")));
        } else if (is(type, "ReindexStmt")) {
            scope.target_kind = str(body, "kind") == "REINDEX_OBJECT_INDEX" ? "index" : "table";
        } else if (is(type, "AlterSystemStmt")) {
            out_.flags.alter_system = true;
        } else if (is(type, "DoStmt")) {
            on_do(body);
        } else if (is(type, "CreateFunctionStmt")) {
            on_create_function(body);
        }
    }

    // set_config calls of this SELECT's own target list whose name argument is pg_settings'
    // `name` column pinned by the WHERE clause (see pg_settings_pinned_name), by location.
    void pin_setting_names(const json& select) {
        const auto pinned = pg_settings_pinned_name(select);
        if (!pinned) return;
        const json alias = child(node_of(child(select, "fromClause").front())->second, "alias");
        const std::string_view qualifier = alias.valid() ? str(alias, "aliasname") : std::string_view("pg_settings");
        for (const json target : child(select, "targetList")) {
            const auto result = node_of(target);
            if (!result || result->first != "ResTarget") continue;
            const auto call = node_of(child(result->second, "val"));
            if (!call || call->first != "FuncCall") continue;
            const auto names = names_of(child(call->second, "funcname"));
            const bool set_config = !names.empty() && names.back() == "set_config" &&
                                    (names.size() == 1 || (names.size() == 2 && names[0] == "pg_catalog"));
            const json args = child(call->second, "args");
            if (!set_config || args.empty() ||
                column_of(args.front(), qualifier) != std::optional<std::string_view>("name"))
                continue;
            pinned_setting_names_.emplace_back(call->second.find("location").integer(), lower(*pinned));
        }
    }

    void on_function(const json& call) {
        std::vector<std::string_view> names = names_of(child(call, "funcname"));
        if (names.empty()) return;
        // database.schema.function: PostgreSQL accepts only the current database there, so it
        // is the function schema.function, and is judged as that.
        if (names.size() > 2) names.erase(names.begin(), names.end() - 2);
        add_function(out_, joined(names));
        // Called for its value, not as a FROM item's rows (add_function_ranges ran first).
        if (!from_calls_.contains(call.find("location").integer())) add_to_list(out_.value_functions, joined(names));
        const std::string_view function = names.back();
        const json& args = child(call, "args");
        std::size_t query_texts = extension_query_text_arguments(function, args.size());
        if (function == "crosstab" && args.size() == 2 && integer_constant(element(args, 1)))
            query_texts = 1;  // crosstab(source_sql, N), the older form: a number of columns, no query
        for (std::size_t index = 0; index < query_texts; ++index) absorb_query_text(function, element(args, index));
        if (const auto spliced = spliced_query(function, args); spliced.applies) {
            if (!spliced.text)
                throw Refusal{std::string(function) +
                              "() puts its arguments into the query it runs, unquoted, and they are not constant "
                              "plain names: pgrail cannot tell what it would run"};
            out_.flags.runs_query_text = true;
            absorb_statements(*spliced.text, std::string(function) + "()");
        }
        // Unqualified names resolve to pg_catalog's built-ins first: count them as those.
        if (names.size() == 2 && names[0] != "pg_catalog") return;
        if (function == "set_config") {
            // A name that is not a constant could be any setting: "*".
            SettingChange change{"*", true, "*"};
            if (!args.empty()) {
                if (const auto setting = constant_string(args.front())) change.name = lower(*setting);
                const long long location = call.find("location").integer();
                for (const auto& [pinned_at, pinned_name] : pinned_setting_names_)
                    if (pinned_at == location) change.name = pinned_name;
            }
            if (args.size() >= 2) {
                if (const auto value = constant_string(element(args, 1))) change.value = *value;
            }
            add_setting(out_, std::move(change));
        } else if (is_advisory_lock(function) && args.size() == 1) {
            out_.advisory_lock_keys.push_back(lock_key(args.front()));
        } else if ((function == "nextval" || function == "setval") && !args.empty()) {
            out_.flags.writes_sequence = true;
            if (const auto sequence = regclass_constant(args.front())) {
                add_named(out_, std::vector<std::string_view>(sequence->begin(), sequence->end()), "sequence",
                          ObjectRole::written);
            } else if (const auto table = serial_sequence_table(args.front())) {
                // Named by its table (in that table's schema): the guards judge it there.
                add_named(out_, std::vector<std::string_view>(table->begin(), table->end()), "sequence",
                          ObjectRole::written);
            } else {
                out_.flags.sequence_unnamed = true;
            }
        } else if (const int index = query_text_argument(function, args.size()); index >= 0) {
            absorb_query_text(function, element(args, static_cast<std::size_t>(index)));
        }
    }

    // A function's argument that is SQL text it runs: its statements are the statement's too.
    void absorb_query_text(std::string_view function, const json& argument) {
        const auto text = constant_string(argument);
        if (!text) {
            throw Refusal{std::string(function) +
                          "() runs the query its argument holds, and that argument is not a "
                          "constant: pgrail cannot tell what it would run"};
        }
        out_.flags.runs_query_text = true;
        absorb_statements(*text, std::string(function) + "()");
    }

    // SQL text that a statement runs (a built-in's query argument, a constant EXECUTE in a DO
    // block): analysed under the same policy as statements of their own, their effects the
    // statement's. Text that cannot be analysed makes the whole statement a refusal.
    void absorb_statements(const std::string& text, const std::string& where) {
        if (body_level_ >= max_body_level) throw Refusal{"query strings nested too deeply to analyse"};
        std::optional<ParseError> error;
        std::vector<Statement> statements = analyze_text(text, body_level_ + 1, &error);
        if (error) throw Refusal{where + " runs text that pgrail cannot analyse: " + error->message};
        merge_statements(std::move(statements));
    }

    void merge_statements(std::vector<Statement> statements) {
        for (Statement& statement : statements) {
            merge_flags(out_.flags, statement.flags);
            // Their queries keep numbers of their own; nothing of theirs reaches the client as it is.
            std::uint32_t deepest = 0;
            for (RangeRead range : statement.ranges) {
                deepest = std::max(deepest, range.level);
                range.level += levels_;
                out_.ranges.push_back(std::move(range));
            }
            for (ColumnRead read : statement.column_reads) {
                deepest = std::max(deepest, read.level);
                read.level += levels_;
                read.output = false;
                read.output_name.clear();
                if (read.kind != ColumnRead::Kind::position) out_.column_reads.push_back(std::move(read));
            }
            levels_ += deepest;
            for (const std::string& function : statement.functions) add_function(out_, function);
            for (const std::string& function : statement.value_functions) add_to_list(out_.value_functions, function);
            for (const SettingChange& setting : statement.settings) add_setting(out_, setting);
            for (const ObjectRef& object : statement.objects) add_object(out_, object);
            // (A nested text's $n are bound by nobody pgrail sees: computed keys.)
            for (const std::string& key : statement.advisory_lock_keys)
                out_.advisory_lock_keys.push_back(key.starts_with('$') ? std::string("*") : key);
            if (statement.statement_class == StatementClass::ddl) out_.statement_class = StatementClass::ddl;
            if (!statement.tag.empty()) out_.inner.push_back(std::move(statement));
        }
    }

public:
    static void add_setting(Statement& out, SettingChange change) {
        if (out.settings.size() < searched_list_max &&
            std::find(out.settings.begin(), out.settings.end(), change) != out.settings.end())
            return;
        out.settings.push_back(std::move(change));
    }

private:
    static std::pair<std::string_view, std::string_view> body_and_language(const json& options) {
        std::string_view body;
        std::string_view language = "plpgsql";
        for (const json option : options) {
            const auto element = node_of(option);
            if (!element || element->first != "DefElem") continue;
            const std::string_view name = str(element->second, "defname");
            const json& arg = child(element->second, "arg");
            if (name == "language") {
                if (const auto value = node_of(arg); value) language = str(value->second, "sval");
            } else if (name == "as") {
                if (const auto value = node_of(arg); value) {
                    if (value->first == "String") body = str(value->second, "sval");
                    if (value->first == "List" && !child(value->second, "items").empty()) {
                        const auto first = node_of(child(value->second, "items").front());
                        if (first) body = str(first->second, "sval");
                    }
                }
            }
        }
        return {body, language};
    }

    void on_do(const json& body) {
        const auto [code, language] = body_and_language(child(body, "args"));
        if (lower(language) != "plpgsql") {
            out_.flags.ddl_capable_dynamic = true;  // a body pgrail cannot read could do anything
            return;
        }
        std::string tag = "pgrail";
        while (code.find("$" + tag + "$") != std::string_view::npos) tag += "_";
        inspect_plpgsql(code, true,
                        "CREATE FUNCTION pgrail_inline() RETURNS void LANGUAGE plpgsql AS $" + tag + "$" +
                            std::string(code) + "$" + tag + "$");
    }

    void on_create_function(const json& body) {
        const auto [code, language] = body_and_language(child(body, "options"));
        // The function's own statement, so that its signature (trigger, OUT parameters) is known.
        if (lower(language) == "plpgsql" && !code.empty()) inspect_plpgsql(code, false, std::string(statement_text_));
    }

    // Parses a PL/pgSQL body (`function`: a CREATE FUNCTION statement holding it). With
    // `runs_now` (DO) its static statements count as the statement's own; otherwise
    // (CREATE FUNCTION) only dynamic EXECUTE is recorded.
    void inspect_plpgsql(std::string_view code, bool runs_now, const std::string& function) {
        if (body_level_ >= max_body_level) throw Refusal{"DO blocks nested too deeply"};
        // The body as the PL/pgSQL scanner sees it: E'\x2b\x2d...' has no operator run before decoding.
        if (auto too_long = check_operator_runs(code)) throw Refusal{std::move(too_long->message)};
        const std::string code_text(code);
        const ScanOutcome scanned = scan(code_text.c_str());
        if (scanned.error) {
            if (runs_now) throw Refusal{"a DO block whose text pgrail cannot scan: " + *scanned.error};
            out_.flags.ddl_capable_dynamic = true;
            return;
        }
        const std::size_t bound = nesting_bound(code_text, scanned.tokens, true);
        if (bound > max_nesting) throw Refusal{too_deep_message(bound)};
        bool parsed = false;
        auto work = [&] {
            const PlpgsqlHandle result(pg_query_parse_plpgsql(function.c_str()));
            if (result->error != nullptr || result->plpgsql_funcs == nullptr) return;
            PooledTree functions;
            if (!functions->parse(result->plpgsql_funcs)) return;
            parsed = true;
            walk_plpgsql(functions->root(), runs_now, false, 0);
        };
        if (!run_with_stack(stack_needed(bound), Work(work))) throw Refusal{too_deep_message(bound)};
        // A DO body pgrail cannot read could do anything (and PostgreSQL would not run it);
        // a function body that does not parse is DDL all the same.
        if (!parsed && runs_now) throw Refusal{"a DO block whose PL/pgSQL pgrail cannot parse"};
        if (!parsed) out_.flags.ddl_capable_dynamic = true;
    }

    void walk_plpgsql(const json& value, bool runs_now, bool assignment, std::size_t depth) {
        if (depth > max_json_depth) throw Refusal{"DO block nested too deeply to analyse safely"};
        if (value.is_array()) {
            for (const json item : value) walk_plpgsql(item, runs_now, assignment, depth + 1);
            return;
        }
        if (!value.is_object()) return;
        for (const json field : value) {
            const std::string_view key = field.key();
            const json& child = field;
            if (key == "PLpgSQL_stmt_dynexecute" || key == "PLpgSQL_stmt_dynfors" ||
                (key == "PLpgSQL_stmt_open" && child.contains("dynquery"))) {
                // EXECUTE of a constant string runs that string: read it. Anything else could
                // run any statement.
                const json query = child.find(key == "PLpgSQL_stmt_open" ? "dynquery" : "query");
                std::optional<std::string> text;
                if (runs_now && query.valid()) text = constant_expression(str(query.find("PLpgSQL_expr"), "query"));
                if (text) {
                    out_.flags.runs_query_text = true;
                    absorb_statements(*text, "EXECUTE");
                } else {
                    out_.flags.ddl_capable_dynamic = true;
                }
            }
            if (key == "PLpgSQL_expr") {
                on_plpgsql_expression(str(child, "query"), runs_now, assignment);
                continue;
            }
            walk_plpgsql(child, runs_now, key == "PLpgSQL_stmt_assign" || (assignment && key == "expr"), depth + 1);
        }
    }

    // Statements and expressions inside PL/pgSQL are SQL text: analyse them in turn.
    // An analysis is complete or a refusal: an expression pgrail cannot read, or one beyond a
    // limit, refuses the whole statement (it could hide anything).
    void on_plpgsql_expression(std::string_view query, bool runs_now, bool assignment) {
        if (!runs_now) return;
        std::string text(query);
        if (assignment) {
            const std::size_t assign = text.find(":=");
            if (assign != std::string::npos) {
                // `a[f()] := v`: the target's subscripts run too.
                merge_expression(text.substr(0, assign), "assignment target");
                text = "SELECT " + text.substr(assign + 2);
            }
        }
        std::optional<ParseError> error;
        std::vector<Statement> statements = analyze_text(text, body_level_ + 1, &error);
        if (error && error->limit) throw Refusal{error->message};
        if (!error) {
            merge_statements(std::move(statements));
            return;
        }
        // Not a statement: an expression such as `x > 1` (or `a[f()] = v`, an assignment's
        // other spelling, read whole as a comparison).
        merge_expression(query, "expression");
    }

    // A PL/pgSQL expression, read as `SELECT expression`; one pgrail cannot read is a refusal.
    void merge_expression(std::string_view expression, std::string_view what) {
        std::optional<ParseError> error;
        std::vector<Statement> statements = analyze_text("SELECT " + std::string(expression), body_level_ + 1, &error);
        if (error) {
            throw Refusal{error->limit ? error->message
                                       : "a PL/pgSQL " + std::string(what) + " pgrail cannot read: " + error->message};
        }
        for (Statement& statement : statements) statement.tag.clear();
        merge_statements(std::move(statements));
    }

    // Stores a kind computed from the tree for the walk's Scopes to view.
    std::string_view keep(std::string kind) { return kinds_.emplace_front(std::move(kind)); }

    // An advisory lock's key as Statement::advisory_lock_keys holds it: a constant, "int4" for an
    // int4 by construction, "$n" for a parameter the client binds (the proxy reads its value in
    // the Bind), "*" for anything else.
    std::string lock_key(const json& argument) const {
        if (auto constant = constant_string(argument)) return std::move(*constant);
        if (is_int4_by_construction(argument)) return "int4";
        if (binds_parameters_) {
            if (const auto number = bound_parameter(argument)) return "$" + std::to_string(*number);
        }
        return "*";
    }

    Statement& out_;
    int body_level_;
    bool binds_parameters_ = false;  // set_binds_parameters
    std::unordered_map<long long, int> parameter_uses_;  // $n: how often the statement names it
    std::string_view statement_text_;
    std::vector<std::string> cte_names_;
    std::vector<std::pair<long long, std::string>> pinned_setting_names_;
    std::unordered_set<long long> from_calls_;  // locations of the FuncCalls that are FROM items
    std::uint32_t levels_ = 0;  // queries numbered so far (RangeRead::level)
    // The output SELECT's targets that are just a column: the ColumnRef's location, its AS name.
    struct OutputColumn {
        long long location;
        std::string_view name;
        std::uint32_t position;
    };
    std::vector<OutputColumn> output_columns_;
    std::forward_list<std::string> kinds_;  // no allocation until used
};

// The SELECT whose target list the client receives as it is (ColumnRead::output): the
// statement's own, or PREPARE's or DECLARE CURSOR's query; not a set operation nor SELECT INTO.
json output_select(std::string_view type, const json& body) {
    json select;
    if (type == "SelectStmt") {
        select = body;
    } else if (type == "PrepareStmt" || type == "DeclareCursorStmt") {
        const auto query = node_of(child(body, "query"));
        if (query && query->first == "SelectStmt") select = query->second;
    }
    if (!select.valid() || selects_into(select)) return {};
    const std::string_view op = str(select, "op");
    if (!op.empty() && op != "SETOP_NONE") return {};
    return select;
}

// What a statement would do, for one that is only planned (plain EXPLAIN): it reads.
void only_planned(Statement& statement) {
    statement.statement_class = StatementClass::read;
    StatementFlags planned;
    planned.locking_clause = statement.flags.locking_clause;
    statement.flags = planned;
    for (ObjectRef& object : statement.objects) object.role = ObjectRole::read;
    for (Statement& inner : statement.inner) only_planned(inner);
}

bool may_change_schema(const Statement& statement) {
    return statement.statement_class == StatementClass::ddl || statement.flags.ddl_capable_dynamic ||
           statement.flags.select_into || statement.flags.create_table_as;
}

// A column definition's constraints: whether it is NOT NULL (or PRIMARY KEY) with nothing that
// fills the existing rows (DEFAULT, identity, generation expression).
bool not_null_without_default(const json& column) {
    bool not_null = boolean(column, "is_not_null");
    bool filled = column.contains("raw_default") || column.contains("cooked_default") ||
                  !str(column, "identity").empty() || !str(column, "generated").empty();
    for (const json item : child(column, "constraints")) {
        const auto constraint = node_of(item);
        if (!constraint || constraint->first != "Constraint") continue;
        const std::string_view type = str(constraint->second, "contype");
        if (type == "CONSTR_NOTNULL" || type == "CONSTR_PRIMARY") not_null = true;
        if (type == "CONSTR_DEFAULT" || type == "CONSTR_IDENTITY" || type == "CONSTR_GENERATED") filled = true;
    }
    return not_null && !filled;
}

// What a schema change does, for a refusal's advice: read from the tree, identifiers only.
// A column type of pg_catalog's built-in scalars (unqualified names resolve there first).
bool builtin_scalar_type(const json& type_name) {
    if (!only_keys(type_name, {"names", "typmods", "typemod", "location"})) return false;  // no arrays, no SETOF
    const auto names = names_of(child(type_name, "names"));
    if (names.empty() || names.size() > 2 || (names.size() == 2 && names[0] != "pg_catalog")) return false;
    static constexpr std::string_view scalars[] = {
        "int2",    "int4",   "int8",    "smallint",  "integer",     "int",     "bigint",  "serial",  "serial2",
        "serial4", "serial8", "smallserial", "bigserial", "text",   "varchar", "bpchar",  "bool",    "boolean",
        "timestamp", "timestamptz", "date", "time", "numeric", "float4", "float8", "json", "jsonb", "uuid"};
    if (std::find(std::begin(scalars), std::end(scalars), names.back()) == std::end(scalars)) return false;
    for (const json modifier : child(type_name, "typmods")) {
        const auto constant = node_of(modifier);
        if (!constant || constant->first != "A_Const" || !constant->second.contains("ival")) return false;
    }
    return true;
}

// A column default that runs nothing of the database's: a constant (possibly cast to a built-in
// scalar), now() or CURRENT_TIMESTAMP and its kin.
bool constant_default(const json& expression) {
    const auto node = node_of(expression);
    if (!node) return false;
    if (node->first == "A_Const") return true;
    if (node->first == "TypeCast")
        return builtin_scalar_type(child(node->second, "typeName")) && constant_default(child(node->second, "arg"));
    if (node->first == "SQLValueFunction") return true;
    if (node->first != "FuncCall" || !only_keys(node->second, {"funcname", "funcformat", "location"})) return false;
    const auto names = names_of(child(node->second, "funcname"));
    return !names.empty() && names.back() == "now" && (names.size() == 1 || (names.size() == 2 && names[0] == "pg_catalog"));
}

// A key constraint (PRIMARY KEY, UNIQUE) on the table's own columns, with no index options.
bool plain_constraint(const json& constraint) {
    const std::string_view type = str(constraint, "contype");
    if (type == "CONSTR_NOTNULL" || type == "CONSTR_NULL") return only_keys(constraint, {"contype", "location"});
    if (type == "CONSTR_DEFAULT")
        return only_keys(constraint, {"contype", "raw_expr", "location"}) && constant_default(child(constraint, "raw_expr"));
    if (type == "CONSTR_PRIMARY" || type == "CONSTR_UNIQUE")
        return only_keys(constraint, {"contype", "conname", "keys", "location"});
    return false;
}

// See SchemaChange::plain_table.
bool plain_create_table(const json& body) {
    if (!only_keys(body, {"relation", "tableElts", "oncommit", "if_not_exists"})) return false;
    if (const auto on_commit = str(body, "oncommit"); !on_commit.empty() && on_commit != "ONCOMMIT_NOOP") return false;
    const json relation = child(body, "relation");
    if (!only_keys(relation, {"relname", "schemaname", "inh", "relpersistence", "location"}) ||
        str(relation, "relpersistence") != "p")
        return false;
    for (const json element : child(body, "tableElts")) {
        const auto node = node_of(element);
        if (!node) return false;
        if (node->first == "Constraint") {
            const std::string_view type = str(node->second, "contype");
            if ((type != "CONSTR_PRIMARY" && type != "CONSTR_UNIQUE") || !plain_constraint(node->second)) return false;
            continue;
        }
        if (node->first != "ColumnDef" ||
            !only_keys(node->second, {"colname", "typeName", "is_local", "constraints", "location"}) ||
            !builtin_scalar_type(child(node->second, "typeName")))
            return false;
        for (const json item : child(node->second, "constraints")) {
            const auto constraint = node_of(item);
            if (!constraint || constraint->first != "Constraint" || !plain_constraint(constraint->second)) return false;
        }
    }
    return true;
}

// The types a CREATE FUNCTION's signature is made of, as written (a qualified name quoted part by
// part, `%TYPE`, `[]`): its IN, INOUT and VARIADIC arguments, not OUT or TABLE columns.
std::vector<std::string> argument_types(const json& create_function) {
    std::vector<std::string> types;
    for (const json item : child(create_function, "parameters")) {
        const auto parameter = node_of(item);
        if (!parameter || parameter->first != "FunctionParameter") continue;
        const std::string_view mode = str(parameter->second, "mode");
        if (mode == "FUNC_PARAM_OUT" || mode == "FUNC_PARAM_TABLE") continue;
        const json type = child(parameter->second, "argType");
        std::string text;
        for (const std::string_view name : names_of(child(type, "names"))) {
            if (!text.empty()) text += '.';
            text += quote_identifier(name);
        }
        if (boolean(type, "pct_type")) text += "%TYPE";
        for (std::size_t bound = 0; bound < child(type, "arrayBounds").size(); ++bound) text += "[]";
        types.push_back(std::move(text));
    }
    return types;
}

// A CREATE whose DROP undoes it exactly (ChangeKind::create_object): it replaces no object that
// was there before, and makes no other object besides.
bool creates_one_object(std::string_view type, const json& body) {
    if (type == "ViewStmt" || type == "CreateFunctionStmt" || type == "CreateTrigStmt") return !boolean(body, "replace");
    if (type == "CreateTableAsStmt") return str(body, "objtype") == "OBJECT_MATVIEW" && !boolean(body, "if_not_exists");
    if (type == "CreateSeqStmt") return !boolean(body, "if_not_exists");
    if (type == "CreateSchemaStmt") return !boolean(body, "if_not_exists") && !body.contains("schemaElts");
    return type == "CreateEnumStmt" || type == "CreateRangeStmt" || type == "CreateDomainStmt" ||
           type == "CompositeTypeStmt";
}

SchemaChange schema_change_of(std::string_view type, const json& body) {
    SchemaChange change;
    const auto on_relation = [&](const json& relation) {
        change.schema = std::string(str(relation, "schemaname"));
        change.table = std::string(str(relation, "relname"));
    };
    if (type == "CreateStmt") {
        change.kind = ChangeKind::create_table;
        on_relation(child(body, "relation"));
        change.plain_table = plain_create_table(body);
    } else if (type == "AlterTableStmt" && str(body, "objtype") == "OBJECT_TABLE") {
        on_relation(child(body, "relation"));
        bool all_add = true;
        bool any_drop = false;
        std::vector<std::string> added;
        std::vector<std::string> dropped;
        std::size_t clauses = 0;
        for (const json item : child(body, "cmds")) {
            ++clauses;
            const auto command = node_of(item);
            if (!command || command->first != "AlterTableCmd") return {};
            const std::string_view subtype = str(command->second, "subtype");
            if (subtype == "AT_AddColumn") {
                const auto column = node_of(child(command->second, "def"));
                if (!column || column->first != "ColumnDef") return {};
                added.emplace_back(str(column->second, "colname"));
                if (not_null_without_default(column->second)) change.not_null_without_default = true;
            } else if (subtype == "AT_DropColumn") {
                any_drop = true;
                all_add = false;
                dropped.emplace_back(str(command->second, "name"));
            } else {
                all_add = false;
            }
        }
        if (any_drop) {
            change.kind = ChangeKind::drop_column;
            change.other_clauses = dropped.size() != clauses;
            change.columns = std::move(dropped);
            change.not_null_without_default = false;
        } else if (all_add && !added.empty()) {
            change.kind = ChangeKind::add_column;
            change.columns = std::move(added);
        } else {
            return {};
        }
    } else if (type == "IndexStmt") {
        change.kind = ChangeKind::create_index;
        on_relation(child(body, "relation"));
        change.name = std::string(str(body, "idxname"));
        change.concurrently = boolean(body, "concurrent");
    } else if (type == "DropStmt" && str(body, "removeType") == "OBJECT_TABLE") {
        change.kind = ChangeKind::drop_table;
    } else if (type == "GrantStmt") {
        change.kind = boolean(body, "is_grant") ? ChangeKind::grant : ChangeKind::revoke;
    } else if (type == "GrantRoleStmt") {
        change.kind = boolean(body, "is_grant") ? ChangeKind::grant : ChangeKind::revoke;
    } else if (type == "CreateExtensionStmt") {
        change.kind = ChangeKind::create_extension;
        change.name = std::string(str(body, "extname"));
    } else if (creates_one_object(type, body)) {
        change.kind = ChangeKind::create_object;
        if (type == "CreateFunctionStmt") change.argument_types = argument_types(body);
    }
    return change;
}

// Builds the Statement for one parse-tree node (and, recursively, the statements it wraps).
bool is_name_token(std::int32_t kind) {
    constexpr std::int32_t first_keyword = 277;  // pg_query.proto: ABORT_P, after C_COMMENT
    return kind == tok_ident || kind == tok_uident || kind >= first_keyword;
}

// The byte spans of a statement's pgrail calls in `text` (the statement's own text; the parse
// tree's locations count from `base` bytes before it), decided with the scanner's tokens: from
// the call's first token (its location) over `name . name` to the parenthesis that closes its
// arguments, so comments, spacing, quoted names and strings holding parentheses are read as
// PostgreSQL reads them. Also the highest $n of the statement. A call pgrail cannot locate makes
// the statement a refusal.
void resolve_call_spans(Statement& out, std::string_view text, std::size_t base) {
    const std::string copy(text);
    const ScanOutcome scanned = scan(copy.c_str());
    const auto cannot = [](const std::string& why) {
        return Refusal{"pgrail cannot locate its command in this statement (" + why + ")"};
    };
    if (scanned.error) throw cannot(*scanned.error);
    const std::vector<Token>& tokens = scanned.tokens;
    for (const Token& token : tokens) {
        if (token.kind != tok_param || token.end <= token.start + 1) continue;
        std::size_t number = 0;
        const char* first = copy.data() + token.start + 1;
        const char* last = copy.data() + token.end;
        if (std::from_chars(first, last, number).ec == std::errc()) {
            out.highest_parameter = std::max(out.highest_parameter, number);
        }
    }
    for (PgrailCall& call : out.pgrail_calls) {
        if (call.whole_statement) continue;
        if (call.offset < base) throw cannot("location before the statement");
        const std::size_t start = call.offset - base;
        auto at = std::find_if(tokens.begin(), tokens.end(), [&](const Token& token) { return token.start == start; });
        if (at == tokens.end()) throw cannot("no token at its location");
        // name . name, comments anywhere between, then the opening parenthesis.
        std::size_t parts = 0;
        for (; at != tokens.end() && at->kind != tok_paren_open; ++at) {
            if (at->kind == tok_sql_comment || at->kind == tok_c_comment) continue;
            const bool expected = parts % 2 == 0 ? is_name_token(at->kind) : at->kind == tok_dot;
            if (!expected || ++parts > 3) throw cannot("unexpected token in its name");
        }
        if (parts != 3 || at == tokens.end()) throw cannot("no argument list");
        std::size_t depth = 0;
        for (; at != tokens.end(); ++at) {
            if (at->kind == tok_paren_open) ++depth;
            if (at->kind == tok_paren_close && --depth == 0) break;
        }
        if (at == tokens.end()) throw cannot("unclosed argument list");
        call.offset = start;
        call.length = at->end - start;
    }
    // In text order (the walk meets a WITH clause after FROM): pgrail runs them in this order.
    std::sort(out.pgrail_calls.begin(), out.pgrail_calls.end(),
              [](const PgrailCall& a, const PgrailCall& b) { return a.offset < b.offset; });
}

// `outermost`: the statement itself, not one that PREPARE, EXPLAIN ... wrap. `base`: how many
// bytes of the parsed text precede `text` (the parse tree's locations count from the parsed text).
Statement build_statement(std::string_view type, const json& body, const json& node, int body_level,
                          std::string_view text, std::size_t base, bool outermost, bool binds_parameters) {
    Statement out;
    const Classification classification = classify(type, body);
    out.statement_class = classification.statement_class;
    out.tag = classification.tag;
    add_named_objects(type, body, out);
    out.flags.executes_prepared = type == "ExecuteStmt";

    // pgrail's commands are relations of a plain SELECT sent as a statement of its own (not in a
    // DO body or a built-in's query string, nor wrapped, nor SELECT INTO).
    const bool commands = outermost && body_level == 0 && type == "SelectStmt" && !selects_into(body);
    Scope top;
    top.relation_calls = commands;
    Walker walker(out, body_level, text);
    // $n of a plain statement are its client's parameters (PREPARE's and a function body's are not).
    binds_parameters = binds_parameters && body_level == 0 &&
                       (type == "SelectStmt" || type == "InsertStmt" || type == "UpdateStmt" || type == "DeleteStmt" ||
                        type == "MergeStmt" || type == "CallStmt" || type == "ExplainStmt" ||
                        type == "DeclareCursorStmt");
    walker.set_binds_parameters(binds_parameters);
    if (outermost && body_level == 0) {
        if (const json select = output_select(type, body); select.valid()) walker.set_output(select);
    }
    walker.visit_node(type, body, top, 0);
    finish_lists(out);
    // A parameter the statement names elsewhere too may take its type from there (`$1::numeric,
    // pg_advisory_lock($1::int8)`), and the server then reads the key from a value that is no
    // int8's (review 95): such a key counts as computed.
    for (std::string& key : out.advisory_lock_keys)
        if (key.starts_with('$') && walker.parameter_uses(std::stoll(key.substr(1))) != 1) key = "*";
    for (const ColumnRead& read : out.column_reads) {
        if (!may_call_by_attribute(read)) continue;
        if (runs_query_of_one_argument(read.name))
            throw Refusal{read.name +
                          " in attribute notation runs the query its argument holds, which pgrail does not "
                          "follow there: call " +
                          read.name + "(...) instead"};
        // `(key).pg_advisory_lock` takes the lock of a key pgrail does not read there: a computed key.
        if (is_advisory_lock(read.name)) out.advisory_lock_keys.push_back("*");
    }
    const std::vector<std::string>& cte_list = walker.cte_names();
    const std::unordered_set<std::string_view> ctes(cte_list.begin(), cte_list.end());
    std::erase_if(out.objects, [&ctes](const ObjectRef& object) {
        return object.role == ObjectRole::read && object.schema.empty() && ctes.contains(object.name);
    });

    if (type == "VariableSetStmt") {
        for (SettingChange& change : settings_of_set(body)) Walker::add_setting(out, std::move(change));
    } else if (type == "AlterSystemStmt") {
        for (SettingChange& change : settings_of_set(child(body, "setstmt"))) Walker::add_setting(out, std::move(change));
    } else if (type == "TransactionStmt") {
        // BEGIN / START TRANSACTION READ WRITE, ISOLATION LEVEL ...: this transaction's settings.
        for (SettingChange& change : transaction_settings(child(body, "options"), "")) {
            Walker::add_setting(out, std::move(change));
        }
    } else if (type == "SelectStmt") {
        if (commands && out.pgrail_calls.empty()) {
            if (auto call = pgrail_statement_call(body)) {
                // The whole statement is the call: it names no function of its own.
                std::erase(out.functions, "pgrail." + call->function);
                out.pgrail_calls.push_back(std::move(*call));
            }
        }
        if (!out.pgrail_calls.empty()) {
            resolve_call_spans(out, text, base);
            // Prepared, it runs at a Bind that pgrail rewrites with the commands' answers, where no
            // lock key is read: a parameter's key counts as computed.
            for (std::string& key : out.advisory_lock_keys)
                if (key.starts_with('$')) key = "*";
        }
        if (out.flags.select_into) out.statement_class = StatementClass::ddl;
    }

    const char* wrapped_field = type == "ExplainStmt" || type == "PrepareStmt" || type == "CreateTableAsStmt" ||
                                        type == "DeclareCursorStmt"
                                    ? "query"
                                    : nullptr;
    if (wrapped_field != nullptr) {
        if (const json query = body.find(wrapped_field); query.valid()) {
            if (const auto inner = node_of(query); inner) {
                out.inner.push_back(
                    build_statement(inner->first, inner->second, query, body_level, text, base, false, binds_parameters));
            }
        }
    }
    if (type == "ExplainStmt" && !out.inner.empty()) {
        if (out.flags.explain_analyze) {
            // EXPLAIN ANALYZE runs its statement: it is what that statement is.
            if (out.inner.front().statement_class != StatementClass::read) {
                out.statement_class = out.inner.front().statement_class;
            }
        } else {
            // A plain EXPLAIN only plans: its statement changes nothing (its functions still count:
            // the planner may call them).
            only_planned(out.inner.front());
        }
    }
    finish_lists(out);  // (again: the settings added after the walk)
    if (may_change_schema(out)) {
        out.structural_form = structural_form(node, max_json_depth);
        out.change = schema_change_of(type, body);
    } else if (type == "TruncateStmt") {
        // (Its CASCADE empties tables the text does not name: the policy reads it here.)
        out.structural_form = structural_form(node, max_json_depth);
    }
    return out;
}

// Wrapped statements have no text of their own: they report their wrapper's range.
// A statement's pgrail calls move from the statement's text to the query's.
void set_range(Statement& statement, std::size_t offset, std::size_t length) {
    statement.offset = offset;
    statement.length = length;
    for (PgrailCall& call : statement.pgrail_calls) {
        if (call.whole_statement) {
            call.offset = offset;
            call.length = length;
        } else {
            call.offset += offset;
        }
    }
    for (Statement& inner : statement.inner) set_range(inner, offset, length);
}

// Text that was not, or could not be, analysed: one unknown statement over all of it.
Analysis unanalysed(std::size_t length, ParseError error) {
    Statement statement;
    statement.length = length;
    statement.error = std::move(error);
    Analysis analysis;
    analysis.error = statement.error;
    analysis.statements.push_back(std::move(statement));
    return analysis;
}

Statement refused(std::string_view text, std::size_t offset, std::size_t length, std::string message) {
    Statement statement;
    statement.offset = offset;
    statement.length = length;
    statement.error = ParseError{std::move(message), character_count(text.substr(0, offset)) + 1, true};
    return statement;
}

// One piece of the split text: parse it and build its statements.
void analyze_piece(const std::string& text, std::size_t offset, std::size_t length, int body_level,
                   std::vector<Statement>& out) {
    const std::string piece = text.substr(offset, length);
    PooledTree parsed;
    const ParsedText parse(piece.c_str(), *parsed);
    if (parse.error()) {
        Statement statement;
        statement.offset = offset;
        statement.length = length;
        const std::size_t cursor = static_cast<std::size_t>(std::max(parse.error_cursor(), 0));
        statement.error = ParseError{*parse.error(),
                                     cursor == 0 ? 0 : character_count(std::string_view(text).substr(0, offset)) + cursor};
        out.push_back(std::move(statement));
        return;
    }
    if (!parse.ok()) throw std::runtime_error("unreadable parse tree");
    for (const json raw : child(parsed->root(), "stmts")) {
        const json& node = child(raw, "stmt");
        const auto entry = node_of(node);
        if (!entry) continue;
        Statement statement = build_statement(entry->first, entry->second, node, body_level, piece, 0, true, true);
        set_range(statement, offset, length);
        out.push_back(std::move(statement));
    }
}


// Fast path: the whole text parsed at once, each statement's byte range taken from the parse tree
// (RawStmt stmt_location/stmt_len: from after the previous semicolon to the next) and trimmed to
// its first and last token: of whitespace, or, in a text that may hold comments, of everything the
// scanner does not count as the statement's (comments and whitespace), as the split path's pieces
// are. Nothing (the split path decides) when the text does not parse: the split path finds the bad
// statement and reports it as before.
//
// Stack safety without the scanner's nesting bound: every level of the parse
// tree takes at least one token of its own, so at least one byte (`SELECT
// -+-+-+1`: `-+` lexes as two operators, one level per byte), so the text's
// length bounds the tree's depth. Measured (stack_safety_test.cpp, every deep
// shape parsed whole, the parse tree reader's writing included): at most ~1.8 KB of
// stack per byte of text (alternating signs; ~2.35 KB per level at most, for NOT
// chains at 4 bytes a level), against the 3 KB per byte that stack_needed(length)
// grants. A 60-byte statement needs
// 0.7 MB, 2 KB of text 6.5 MB: short texts take this path on any ordinary
// thread; longer ones (up to max_nesting bytes) on a big stack (analyze_text).
bool has_comment_opener(const std::string& text) {
    return text.find("--") != std::string::npos || text.find("/*") != std::string::npos;
}

// The statement inside [begin, end): from its first token to the end of its last, comments left
// out; nothing when no token is there.
std::optional<std::pair<std::size_t, std::size_t>> statement_tokens(std::span<const Token> tokens,
                                                                    std::size_t begin, std::size_t end) {
    auto at = std::lower_bound(tokens.begin(), tokens.end(), begin,
                               [](const Token& token, std::size_t offset) { return token.start < offset; });
    std::optional<std::pair<std::size_t, std::size_t>> range;
    for (; at != tokens.end() && at->end <= end; ++at) {
        if (at->kind == tok_sql_comment || at->kind == tok_c_comment) continue;
        if (!range) range.emplace(at->start, at->end);
        range->second = at->end;
    }
    return range;
}

// `scanned`: the text's tokens, scanned here when it may hold comments (and then kept for the
// split path, should the text not parse whole).
std::optional<std::vector<Statement>> analyze_whole(const std::string& text, int body_level,
                                                    std::optional<ScanOutcome>& scanned) {
    if (!detail::whole_text_path_allowed(text.size())) return std::nullopt;
    if (has_comment_opener(text)) {
        if (!scanned) scanned = scan(text.c_str());
        if (scanned->error) return std::nullopt;
    }
    PooledTree parsed;
    const ParsedText parse(text.c_str(), *parsed);
    if (!parse.ok()) return std::nullopt;
    std::vector<Statement> result;
    for (const json raw : child(parsed->root(), "stmts")) {
        const long long location = raw.find("stmt_location").integer();
        const long long length = raw.find("stmt_len").integer();
        if (location < 0 || length < 0 || static_cast<std::size_t>(location) + static_cast<std::size_t>(length) > text.size()) {
            return std::nullopt;
        }
        std::size_t begin = static_cast<std::size_t>(location);
        std::size_t end = length == 0 ? text.size() : begin + static_cast<std::size_t>(length);  // 0: to the end
        if (scanned) {
            const auto tokens = statement_tokens(scanned->tokens, begin, end);
            if (!tokens) return std::nullopt;  // a statement of no token: not what the grammar gives
            std::tie(begin, end) = *tokens;
        } else {
            while (begin < end && is_scanner_space(text[begin])) ++begin;
            while (end > begin && is_scanner_space(text[end - 1])) --end;
        }
        const json& node = child(raw, "stmt");
        const auto entry = node_of(node);
        if (!entry) continue;
        try {
            Statement statement = build_statement(entry->first, entry->second, node, body_level,
                                                  std::string_view(text).substr(begin, end - begin), begin, true, true);
            set_range(statement, begin, end - begin);
            result.push_back(std::move(statement));
        } catch (const Refusal& refusal) {
            result.push_back(refused(text, begin, end - begin, refusal.message));
        } catch (const std::length_error& too_deep) {
            result.push_back(refused(text, begin, end - begin, too_deep.what()));
        }
    }
    return result;
}

enum class Path {
    any,             // the fast path when it applies, else split
    split,           // always split with the scanner and bound each statement's nesting
    split_unchecked, // split, but parse on the calling thread without the nesting check
};

std::vector<Statement> analyze_text(std::string_view query, int body_level, std::optional<ParseError>* error,
                                    Path path) {
    std::vector<Statement> result;
    const auto fail = [&](ParseError parse_error) {
        auto whole = unanalysed(query.size(), std::move(parse_error));
        *error = std::move(whole.error);
        return std::move(whole.statements);
    };
    if (query.find('\0') != std::string_view::npos) return fail({"query text contains a NUL byte", 0});
    if (query.size() > 0x7fffffffU) return fail({"query text too long", 0, true});
    if (auto too_long = check_operator_runs(query)) return fail(std::move(*too_long));
    const std::string text(query);
    std::optional<std::vector<Statement>> whole;
    std::optional<ScanOutcome> scanned;
    if (path == Path::any) {
        if (detail::whole_text_path_allowed(text.size())) {
            whole = analyze_whole(text, body_level, scanned);
        } else if (text.size() <= max_nesting) {
            // Too long for this thread's stack to parse whole (an 8 MB thread: about 2.5 KB): it
            // is parsed whole on a big stack (this thread's own, see run_with_stack), where the
            // split path would cost a scan of the text and a parse per statement. Only up to
            // max_nesting bytes: the text's length bounds its nesting, so no text is parsed here
            // that the split path would refuse as too deep. Without a big stack, the split path
            // below decides.
            auto parse_whole = [&] { whole = analyze_whole(text, body_level, scanned); };
            if (!run_with_stack(stack_needed(text.size()), Work(parse_whole))) whole.reset();
        }
    }
    if (whole) {
        result = std::move(*whole);
    } else {
        if (!scanned) scanned = scan(text.c_str());
        if (scanned->error) return fail({*scanned->error, scanned->cursor});
        for (const Piece& piece : split(scanned->tokens)) {
            const std::size_t offset = piece.offset;
            const std::size_t length = piece.length;
            const std::span<const Token> tokens =
                std::span(scanned->tokens).subspan(piece.first, piece.last - piece.first);
            const std::size_t bound = nesting_bound(text, tokens, false);
            const std::size_t first_new = result.size();
            auto work = [&] {
                try {
                    analyze_piece(text, offset, length, body_level, result);
                } catch (const Refusal& refusal) {
                    result.resize(first_new);
                    result.push_back(refused(text, offset, length, refusal.message));
                } catch (const std::length_error& too_deep) {
                    result.resize(first_new);
                    result.push_back(refused(text, offset, length, too_deep.what()));
                }
            };
            if (path == Path::split_unchecked) {
                work();
            } else if (bound > max_nesting || !run_with_stack(stack_needed(bound), Work(work))) {
                result.push_back(refused(text, offset, length, too_deep_message(bound)));
            }
        }
    }
    for (const Statement& statement : result) {
        if (statement.error) {
            *error = statement.error;
            break;
        }
    }
    return result;
}

std::vector<Statement> analyze_text(std::string_view query, int body_level, std::optional<ParseError>* error) {
    return analyze_text(query, body_level, error, Path::any);
}

Analysis analyze_query(std::string_view query, Path path, Lexing lexing) {
    if (lexing.converted || lexing.client_only_encoding || lexing.encoding_pending) {
        const auto high = std::find_if(query.begin(), query.end(), [](char c) { return (static_cast<unsigned char>(c) & 0x80U) != 0; });
        if (high != query.end()) {
            const auto at = static_cast<std::size_t>(high - query.begin()) + 1;
            if (lexing.encoding_pending && !lexing.converted && !lexing.client_only_encoding)
                return unanalysed(query.size(),
                                  {"pgrail cannot read non-ASCII text sent before a change of client_encoding is "
                                   "final: send it after that statement's result, and after the end of the "
                                   "transaction block that made the change (its end or an error may undo it)",
                                   at, true});
            return unanalysed(query.size(),
                              {"pgrail cannot read non-ASCII text in this session's client_encoding (the server "
                               "converts it to its own encoding before reading it): set client_encoding to the "
                               "server's encoding (UTF8), or send such text as parameters",
                               at, true});
        }
    }
    // PostgreSQL's backslash_quote = safe_encoding refuses \' in strings under client-only encodings.
    const ScopedScannerSettings scanner({lexing.standard_conforming_strings, lexing.client_only_encoding ? 0 : 2});
    Analysis analysis;
    try {
        analysis.statements = analyze_text(query, 0, &analysis.error, path);
    } catch (const std::exception& failure) {
        // Fail closed: anything unexpected (out of memory ...) makes the whole text unknown, and
        // refused like a limit even where unparsed text is allowed.
        analysis = unanalysed(query.size(), {std::string("analysis failed: ") + failure.what(), 0, true});
    }
    return analysis;
}

}  // namespace

Analysis analyze(std::string_view query, Lexing lexing) { return analyze_query(query, Path::any, lexing); }

std::string encoding_key(std::string_view name) {
    std::string key;
    for (const char c : name)
        if (std::isalnum(static_cast<unsigned char>(c)) != 0) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return key == "unicode" ? "utf8" : key;
}

bool is_client_only_encoding(std::string_view name) {
    // PostgreSQL's names and aliases (pg_char_to_encoding ignores case and punctuation).
    const std::string key = encoding_key(name);
    static constexpr std::string_view client_only[] = {
        "sjis", "shiftjis", "mskanji", "windows932", "win932", "shiftjis2004", "big5", "windows950", "win950",
        "gbk", "windows936", "win936", "uhc", "windows949", "win949", "gb18030", "johab",
    };
    return std::find(std::begin(client_only), std::end(client_only), key) != std::end(client_only);
}

Analysis too_long_to_analyse(std::size_t size, std::size_t max_size) {
    return unanalysed(size, {"statement text of " + std::to_string(size) +
                                 " bytes is longer than pgrail analyses (max_analyzed_size: " +
                                 std::to_string(max_size) + " bytes)",
                             0, true});
}

namespace detail {

Analysis analyze_unchecked(std::string_view query) { return analyze_query(query, Path::split_unchecked, {}); }

Analysis analyze_split(std::string_view query) { return analyze_query(query, Path::split, {}); }

bool whole_text_path_allowed(std::size_t text_bytes) { return stack_remaining() >= stack_needed(text_bytes); }

std::size_t max_nesting_bound(std::string_view query, bool plpgsql) {
    const std::string text(query);
    const ScanOutcome scanned = scan(text.c_str());
    return scanned.error ? 0 : nesting_bound(text, scanned.tokens, plpgsql);
}

}  // namespace detail

bool scans_in_linear_time(std::string_view text) {
    // What the analyzer decodes and scans again (a DO body or a query string in E'' or U&''
    // with escapes) may hold runs the raw text does not show: many escapes, or an escape
    // character of the text's own choosing (UESCAPE), count as not linear. One pass: this is
    // asked of every new text an I/O thread may analyse.
    constexpr std::string_view uescape = "uescape";
    const auto is_uescape = [&](std::size_t at) {
        if (text.size() - at < uescape.size()) return false;
        for (std::size_t i = 0; i < uescape.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(text[at + i])) != uescape[i]) return false;
        return true;
    };
    std::ptrdiff_t escapes = 0;
    std::size_t units = 0;
    for (std::size_t start = 0; start < text.size();) {
        const char c = text[start];
        if (!is_operator_char(c)) {
            if (c == '\\' && ++escapes > max_linear_escapes) return false;
            if ((c == 'u' || c == 'U') && is_uescape(start)) return false;
            ++start;
            continue;
        }
        std::size_t end = start + 1;
        while (end < text.size() && is_operator_char(text[end])) ++end;
        units += (end - start) * (end - start);
        if (units > linear_scan_units) return false;
        start = end;
    }
    return true;
}

}  // namespace pgrail::sql
