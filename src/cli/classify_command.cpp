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
    command->callback([sql_text] {
        std::string query = *sql_text;
        if (query == "-") query.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        const sql::Analysis analysis = sql::analyze(query);
        for (const sql::Statement& statement : analysis.statements) {
            std::cout << sql::to_json(statement, query).dump() << '\n';
        }
        std::cout.flush();
        // A statement pgrail cannot read is an error for scripts.
        if (analysis.error) throw CLI::RuntimeError(2);
    });
}

}  // namespace pgrail::cli
