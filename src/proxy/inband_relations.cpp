// The texts the server runs for statements that read pgrail's commands as relations.
#include "pgrail/proxy/inband_relations.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "admin_commands.hpp"
#include "pgrail/proxy/migration_commands.hpp"

namespace pgrail::proxy {

namespace {

// E'' quoting is independent of standard_conforming_strings, and the quoted text is ASCII: the
// server reads a client's Query in the client's encoding, in which the bytes of a UTF-8 value
// could pair with a doubled backslash and end the string early (SJIS, BIG5, GBK), so every byte
// past ASCII is written as \xNN (it yields the same byte in the server's encoding).
std::string quote_literal(std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "E'";
    for (const char c : text) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte >= 0x80) {
            out += "\\x";
            out.push_back(hex[byte >> 4]);
            out.push_back(hex[byte & 0xf]);
            continue;
        }
        if (c == '\\' || c == '\'') out.push_back(c);
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

// The catalog's types, whatever the session made: pg_temp is searched first for type names
// (CREATE TYPE pg_temp.text ...), so names that are not keywords are qualified.
std::string_view type_name(std::uint32_t oid) {
    switch (oid) {
        case migrations::oid_bool: return "boolean";
        case migrations::oid_int8: return "bigint";
        case migrations::oid_timestamptz: return "pg_catalog.timestamptz";
        default: return "pg_catalog.text";
    }
}

std::string quote_identifier(std::string_view name) {
    std::string out = "\"";
    for (char c : name) {
        if (c == '"') out.push_back(c);
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

// `sql` with each call's bytes replaced by `relation(i)`, parenthesised and aliased as a
// subquery in FROM needs (a whole-statement call: the bare query).
template <class Relation>
std::string replace_calls(std::string_view sql, const std::vector<InbandCall>& calls, const Relation& relation) {
    std::string out;
    out.reserve(sql.size() + 256 * calls.size());
    std::size_t at = 0;
    for (std::size_t index = 0; index < calls.size(); ++index) {
        const InbandCall& call = calls[index];
        const std::size_t begin = std::min(call.offset, sql.size());
        const std::size_t end = std::min(call.offset + call.length, sql.size());
        if (begin < at) continue;  // overlapping spans cannot come from the analyzer; never copy twice
        out.append(sql.substr(at, begin - at));
        if (call.whole_statement) {
            out += relation(index);
        } else {
            out += '(';
            out += relation(index);
            out += ')';
            if (!call.aliased) out += " AS " + quote_identifier(std::string(sql::name_of(call.command)));
        }
        at = end;
    }
    out.append(sql.substr(at));
    return out;
}

}  // namespace

std::string result_set_sql(const migrations::ResultTable& table) {
    std::string columns;
    for (std::size_t i = 0; i < table.columns.size(); ++i) {
        if (i > 0) columns += ", ";
        columns += quote_identifier(table.columns[i]);
    }
    auto value = [&](std::size_t column, const std::optional<std::string>& text) {
        const auto type = type_name(column < table.types.size() ? table.types[column] : migrations::oid_text);
        return fmt::format("{}::{}", text ? quote_literal(*text) : std::string("NULL"), type);
    };
    std::string rows;
    if (table.rows.empty()) {
        // No rows: one typed row that WHERE false removes, so the columns still describe.
        rows = "(";
        for (std::size_t i = 0; i < table.columns.size(); ++i) rows += (i ? ", " : "") + value(i, std::nullopt);
        rows += ")";
        return fmt::format("SELECT * FROM (VALUES {}) AS pgrail_result({}) WHERE false", rows, columns);
    }
    for (std::size_t r = 0; r < table.rows.size(); ++r) {
        rows += r ? ", (" : "(";
        for (std::size_t i = 0; i < table.columns.size(); ++i) {
            if (i > 0) rows += ", ";
            rows += value(i, i < table.rows[r].size() ? table.rows[r][i] : std::nullopt);
        }
        rows += ")";
    }
    return fmt::format("SELECT * FROM (VALUES {}) AS pgrail_result({})", rows, columns);
}

std::string text_with_answers(std::string_view sql, const std::vector<InbandCall>& calls,
                              const std::vector<migrations::ResultTable>& answers) {
    return replace_calls(sql, calls, [&](std::size_t index) { return result_set_sql(answers.at(index)); });
}

std::string text_with_parameters(std::string_view sql, const std::vector<InbandCall>& calls,
                                 std::size_t first_parameter) {
    return replace_calls(sql, calls, [&](std::size_t index) {
        const migrations::ResultTable columns = inband_command_columns(calls[index].command);
        std::string definitions;
        for (std::size_t column = 0; column < columns.columns.size(); ++column) {
            if (column > 0) definitions += ", ";
            definitions += quote_identifier(columns.columns[column]);
            definitions += ' ';
            definitions += type_name(column < columns.types.size() ? columns.types[column] : migrations::oid_text);
        }
        return fmt::format("SELECT * FROM pg_catalog.json_to_recordset(${}::pg_catalog.json) AS pgrail_result({})",
                           first_parameter + index, definitions);
    });
}

std::string answer_json(const migrations::ResultTable& table) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : table.rows) {
        nlohmann::json object = nlohmann::json::object();
        for (std::size_t column = 0; column < table.columns.size(); ++column) {
            const auto* value = column < row.size() && row[column] ? &*row[column] : nullptr;
            object[table.columns[column]] = value != nullptr ? nlohmann::json(*value) : nlohmann::json(nullptr);
        }
        rows.push_back(std::move(object));
    }
    // Bytes that are not UTF-8 (a file name, a message) must not fail the answer: PostgreSQL reads
    // the JSON in the server's encoding, where U+FFFD stands for them.
    return rows.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string bind_with_answers(const protocol::BindMessage& bind, const std::vector<migrations::ResultTable>& answers) {
    const std::size_t given = bind.parameters.size();
    std::vector<std::string> rows;
    rows.reserve(answers.size());
    for (const auto& answer : answers) rows.push_back(answer_json(answer));
    protocol::BindMessage rewritten = bind;
    // One format code for all the client's parameters, or one each: pgrail's (text, 0) follow them
    // only in a list of one each (none, or a text one for all, leaves them text already).
    if (rewritten.parameter_formats.size() == 1 && rewritten.parameter_formats.front() != 0)
        rewritten.parameter_formats.assign(given, rewritten.parameter_formats.front());
    if (rewritten.parameter_formats.size() == given && given > 0)
        rewritten.parameter_formats.insert(rewritten.parameter_formats.end(), rows.size(), 0);
    for (const auto& row : rows) rewritten.parameters.emplace_back(row);
    std::string message;
    protocol::encode_bind(message, rewritten);
    return message;
}

}  // namespace pgrail::proxy
