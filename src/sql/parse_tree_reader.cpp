// Reads libpg_query's C parse tree into a JsonTree, field by field as its JSON output writes it
// (libpg_query 15-4.0.0's rules: a field is left out when it is NULL, false or zero, except enums,
// which are always written; a node is {"Type": {fields}}, a node-typed field of a named struct
// type only {fields}; a NULL list element {}; value nodes and A_Const have rules of their own).
// The fields of each node type come from PostgreSQL's headers (gen_parse_tree_reader.py); value
// nodes, A_Const and lists are written here.
#include "parse_tree_reader.hpp"

#include <charconv>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

// libpg_query's version (pg_query.h), before PostgreSQL's pg_config.h gives the headers' own.
constexpr long long pg_query_version = PG_VERSION_NUM;

// PostgreSQL's headers last: they define macros (printf, foreach ...) that std headers must not see.
extern "C" {
#include "postgres.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include <pg_query/pg_query_internal.h>
}

namespace pgrail::sql::detail {
namespace {

using Type = JsonNode::Type;

class TreeWriter {
public:
    explicit TreeWriter(JsonTree& tree) : tree_(tree) {}

    [[nodiscard]] bool failed() const { return failed_; }
    void fail() { failed_ = true; }

    void open_object(std::string_view key) { tree_.open(key, Type::object); }
    void open_array(std::string_view key) { tree_.open(key, Type::array); }
    void close() { tree_.close(); }

    // A field holding any node: {"Type": {...}}.
    void node(std::string_view key, const Node* value) {
        if (value == nullptr) return;
        open_object(key);
        write_node(value);
        close();
    }
    void list(std::string_view key, const List* value) {
        if (value == nullptr) return;
        open_array(key);
        elements(value);
        close();
    }
    void string(std::string_view key, const char* value) {
        if (value != nullptr) tree_.add(key, Type::string, value);
    }
    void string_or_null(std::string_view key, const char* value) {  // a value node's one field
        if (value != nullptr) tree_.add(key, Type::string, value);
        else tree_.add(key, Type::null, {}, true);
    }
    void character(std::string_view key, char value) {
        if (value != 0) tree_.add(key, Type::string, std::string_view(&value, 1));
    }
    void boolean(std::string_view key, bool value) {
        if (value) tree_.add(key, Type::boolean, "true", true);
    }
    void integer(std::string_view key, long long value) {
        if (value != 0) number(key, value);
    }
    void number(std::string_view key, long long value) {  // written even when 0
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
        tree_.add(key, Type::number, std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }
    void enumeration(std::string_view key, const char* name) {
        if (name == nullptr) {
            fail();  // a value the header did not declare
            return;
        }
        tree_.add(key, Type::string, name, true);
    }

    void write_node(const Node* value);

private:
    void elements(const List* value) {
        if (!IsA(value, List)) {
            fail();  // integer and OID lists: not in raw parse trees
            return;
        }
        for (int index = 0; index < list_length(value); ++index) {
            const auto* element = static_cast<const Node*>(list_nth(value, index));
            open_object({});
            if (element != nullptr) write_node(element);
            close();
        }
    }
    void value_fields(const Node* value, bool in_constant);
    void write_a_const(const A_Const* constant);

    JsonTree& tree_;
    bool failed_ = false;
};

#include "parse_tree_reader_nodes.inc"

// A value node's name as a node, and its key inside an A_Const; nothing for any other node.
std::optional<std::pair<std::string_view, std::string_view>> value_names(const Node* value) {
    switch (nodeTag(value)) {
    case T_Integer: return std::pair{"Integer", "ival"};
    case T_Float: return std::pair{"Float", "fval"};
    case T_Boolean: return std::pair{"Boolean", "boolval"};
    case T_String: return std::pair{"String", "sval"};
    case T_BitString: return std::pair{"BitString", "bsval"};
    default: return std::nullopt;
    }
}

// The one field of a value node, as libpg_query writes it: an Integer's value unless it is 0
// (then {}: read as 0); a Boolean's even when false, except inside an A_Const. (Negative values
// were once written as {} too, and read as 0: SET search_path = -1 as "0", pg_advisory_lock(-5)
// as key 0, where the server reads -1 and -5.)
void TreeWriter::value_fields(const Node* value, bool in_constant) {
    switch (nodeTag(value)) {
    case T_Integer:
        if (const int number = reinterpret_cast<const Integer*>(value)->ival; number != 0) integer("ival", number);
        return;
    case T_Float: string_or_null("fval", reinterpret_cast<const Float*>(value)->fval); return;
    case T_Boolean:
        if (const bool truth = reinterpret_cast<const Boolean*>(value)->boolval; truth || !in_constant)
            tree_.add("boolval", Type::boolean, truth ? "true" : "false", true);
        return;
    case T_String: string_or_null("sval", reinterpret_cast<const String*>(value)->sval); return;
    case T_BitString: string_or_null("bsval", reinterpret_cast<const BitString*>(value)->bsval); return;
    default: fail();
    }
}

void TreeWriter::write_a_const(const A_Const* constant) {
    if (!constant->isnull) {
        if (const auto names = value_names(&constant->val.node)) {
            open_object(names->second);
            value_fields(&constant->val.node, true);
            close();
        } else {
            fail();
        }
    }
    boolean("isnull", constant->isnull);
    number("location", constant->location);  // A_Const's, unlike any other location, even when 0
}

void TreeWriter::write_node(const Node* value) {
    if (const auto names = value_names(value)) {
        open_object(names->first);
        value_fields(value, false);
        close();
        return;
    }
    switch (nodeTag(value)) {
    case T_List:
        open_object("List");
        list("items", reinterpret_cast<const List*>(value));
        close();
        return;
    case T_A_Const:
        open_object("A_Const");
        write_a_const(reinterpret_cast<const A_Const*>(value));
        close();
        return;
    default:
        if (!write_generated(*this, value)) fail();
    }
}

// libpg_query's raw parse in a memory context of its own, deleted with this.
class RawParse {
public:
    explicit RawParse(const char* sql) : context_(pg_query_enter_memory_context()) {
        result_ = pg_query_raw_parse(sql);
    }
    ~RawParse() {
        if (result_.error != nullptr) pg_query_free_error(result_.error);
        std::free(result_.stderr_buffer);
        pg_query_exit_memory_context(context_);
    }
    RawParse(const RawParse&) = delete;
    RawParse& operator=(const RawParse&) = delete;
    [[nodiscard]] const PgQueryInternalParsetreeAndError& result() const { return result_; }

private:
    MemoryContext context_;
    PgQueryInternalParsetreeAndError result_{};
};

// {"version": ..., "stmts": [{"stmt": ..., "stmt_location": ..., "stmt_len": ...}, ...]}
bool write_statements(const List* statements, JsonTree& tree) {
    tree.clear();
    TreeWriter out(tree);
    out.open_object({});
    out.integer("version", pg_query_version);
    out.open_array("stmts");
    for (int index = 0; index < list_length(statements); ++index) {
        const auto* raw = static_cast<const RawStmt*>(list_nth(statements, index));
        out.open_object({});
        out.node("stmt", raw->stmt);
        out.integer("stmt_location", raw->stmt_location);
        out.integer("stmt_len", raw->stmt_len);
        out.close();
    }
    out.close();
    out.close();
    return !out.failed();
}

}  // namespace

bool read_parse_tree(const char* sql, JsonTree& tree) {
    const RawParse parse(sql);
    return parse.result().error == nullptr && write_statements(parse.result().tree, tree);
}

void ParsedText::take_error(const PgQueryError& error) {
    error_ = error.message != nullptr ? error.message : "syntax error";
    error_cursor_ = error.cursorpos;
}

ParsedText::ParsedText(const char* sql, JsonTree& tree) {
    {
        const RawParse parse(sql);
        if (parse.result().error != nullptr) {
            take_error(*parse.result().error);
            return;
        }
        if (write_statements(parse.result().tree, tree)) {
            ok_ = true;
            return;
        }
    }
    json_.emplace(pg_query_parse(sql));
    if ((*json_)->error != nullptr) {
        take_error(*(*json_)->error);
        return;
    }
    ok_ = tree.parse((*json_)->parse_tree);
}

}  // namespace pgrail::sql::detail
