// `pgrail classify [SQL | -]`: the analysis of SQL text as JSON, one object per statement.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/json.hpp"

namespace pgrail::cli {

void add_classify_command(CLI::App& app) {
    auto sql_text = std::make_shared<std::string>("-");
    CLI::App* command = app.add_subcommand(
        "classify", "Print how pgrail reads SQL: one JSON object per statement (class, tag, objects, flags ...)");
    command->add_option("sql", *sql_text, "SQL text, or - to read it from standard input")->default_str("-");
    // How the session would lex it: the settings the server reports in ParameterStatus.
    auto conforming = std::make_shared<bool>(true);
    auto client_encoding = std::make_shared<std::string>("UTF8");
    auto server_encoding = std::make_shared<std::string>("UTF8");
    command->add_option("--standard-conforming-strings", *conforming, "the session's standard_conforming_strings")
        ->default_str("on");
    command->add_option("--client-encoding", *client_encoding, "the session's client_encoding")->default_str("UTF8");
    command->add_option("--server-encoding", *server_encoding, "the database's server_encoding")->default_str("UTF8");
    command->callback([sql_text, conforming, client_encoding, server_encoding] {
        std::string query = *sql_text;
        if (query == "-") query.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        // As a session reads ParameterStatus: the server converts between different encodings,
        // except to or from SQL_ASCII.
        const sql::Lexing lexing{*conforming, sql::is_client_only_encoding(*client_encoding),
                                 *client_encoding != *server_encoding && *client_encoding != "SQL_ASCII" &&
                                     *server_encoding != "SQL_ASCII"};
        const sql::Analysis analysis = sql::analyze(query, lexing);
        for (const sql::Statement& statement : analysis.statements) {
            // Bytes that are not UTF-8 (a LATIN1 client's text) print as U+FFFD, as in the audit log.
            std::cout << sql::to_json(statement, query, lexing).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                      << '\n';
        }
        std::cout.flush();
        // A statement pgrail cannot read is an error for scripts.
        if (analysis.error) throw CLI::RuntimeError(2);
    });
}

}  // namespace pgrail::cli
