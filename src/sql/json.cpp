// Statement -> JSON, one shape for the CLI and the audit log.
#include "pgrail/sql/json.hpp"

#include "pgrail/sql/normalize.hpp"

namespace pgrail::sql {
namespace {

nlohmann::json error_json(const ParseError& error) {
    return {{"message", error.message}, {"cursor", error.cursor}};
}

}  // namespace

std::vector<std::string> flag_names(const StatementFlags& flags) {
    std::vector<std::string> names;
    const auto add = [&names](bool set, const char* name) {
        if (set) names.emplace_back(name);
    };
    add(flags.update_or_delete_without_where, "update_or_delete_without_where");
    add(flags.data_modifying_cte, "data_modifying_cte");
    add(flags.select_into, "select_into");
    add(flags.create_table_as, "create_table_as");
    add(flags.copy_direction == CopyDirection::from, "copy_from");
    add(flags.copy_direction == CopyDirection::to, "copy_to");
    add(flags.copy_program, "copy_program");
    add(flags.copy_file, "copy_file");
    add(flags.explain_analyze, "explain_analyze");
    add(flags.locking_clause, "locking_clause");
    add(flags.temporary_object, "temporary_object");
    add(flags.ddl_capable_dynamic, "ddl_capable_dynamic");
    add(flags.alter_system, "alter_system");
    add(flags.runs_query_text, "runs_query_text");
    add(flags.writes_sequence, "writes_sequence");
    add(flags.sequence_unnamed, "sequence_unnamed");
    return names;
}

nlohmann::json to_json(const Statement& statement, std::string_view query, Lexing lexing) {
    nlohmann::json out;
    out["class"] = to_string(statement.statement_class);
    out["tag"] = statement.tag;
    out["offset"] = statement.offset;
    out["length"] = statement.length;
    if (!query.empty() && statement.offset <= query.size()) {
        const std::string_view text = query.substr(statement.offset, statement.length);
        out["text"] = text;
        out["normalized"] = statement.error ? std::string() : normalize(text, lexing);
    }
    nlohmann::json objects = nlohmann::json::array();
    for (const ObjectRef& object : statement.objects) {
        nlohmann::json entry = {{"schema", object.schema}, {"name", object.name}, {"kind", object.kind},
                                {"role", to_string(object.role)}};
        if (object.temporary) entry["temporary"] = true;
        objects.push_back(std::move(entry));
    }
    out["objects"] = std::move(objects);
    out["functions"] = statement.functions;
    nlohmann::json settings = nlohmann::json::array();
    for (const SettingChange& setting : statement.settings) {
        settings.push_back({{"name", setting.name}, {"via_function", setting.via_function}, {"value", setting.value}});
    }
    out["settings"] = std::move(settings);
    out["flags"] = flag_names(statement.flags);
    // The canonical form's size only: the form itself is long and not meant for reading.
    if (!statement.structural_form.empty()) out["structural_form_bytes"] = statement.structural_form.size();
    if (!statement.advisory_lock_keys.empty()) out["advisory_lock_keys"] = statement.advisory_lock_keys;
    if (statement.error) out["error"] = error_json(*statement.error);
    if (!statement.pgrail_calls.empty()) {
        nlohmann::json calls = nlohmann::json::array();
        for (const PgrailCall& call : statement.pgrail_calls) {
            calls.push_back({{"function", call.function},
                             {"arguments", call.arguments},
                             {"offset", call.offset},
                             {"length", call.length}});
        }
        out["pgrail_calls"] = std::move(calls);
    }
    if (!statement.inner.empty()) {
        nlohmann::json inner = nlohmann::json::array();
        for (const Statement& wrapped : statement.inner) inner.push_back(to_json(wrapped));
        out["inner"] = std::move(inner);
    }
    return out;
}

nlohmann::json to_json(const Analysis& analysis, std::string_view query, Lexing lexing) {
    nlohmann::json statements = nlohmann::json::array();
    for (const Statement& statement : analysis.statements) statements.push_back(to_json(statement, query, lexing));
    nlohmann::json out{{"statements", std::move(statements)}};
    if (analysis.error) out["error"] = error_json(*analysis.error);
    return out;
}

}  // namespace pgrail::sql
