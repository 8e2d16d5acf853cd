// `pgrail explain --policy FILE --user U ... "SQL"`: the decision for each statement and the rule that made it.
#include <iostream>
#include <sstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::cli {

namespace {

struct ExplainArguments {
    std::string policy_file;
    std::string migrations_dir = "migrations";
    policy::SessionInfo session;
    std::vector<std::string> startup;
    std::string sql = "-";
};

std::string verdict(const policy::Decision& decision) {
    using Action = policy::Decision::Action;
    switch (decision.action) {
        case Action::allow: return fmt::format("allow (rule \"{}\")", decision.rule);
        case Action::intercept:
            return fmt::format("intercept: pgrail runs pgrail.{} (rule \"{}\")", sql::name_of(decision.command),
                               decision.rule);
        case Action::deny:
            return fmt::format("{} (rule \"{}\", guard {})", decision.enforced ? "deny" : "would deny (audit_only)",
                               decision.rule, decision.guard);
    }
    return "?";
}

void print_refusal(const policy::Decision& decision, const std::string& indent) {
    if (decision.action != policy::Decision::Action::deny) return;
    std::cout << indent << "ERROR " << decision.sqlstate << ": " << decision.message << '\n';
    if (!decision.detail.empty()) std::cout << indent << "DETAIL: " << decision.detail << '\n';
    if (!decision.hint.empty()) std::cout << indent << "HINT: " << decision.hint << '\n';
}

std::string describe(const sql::Statement& statement) {
    std::string out = fmt::format("{} [{}]", statement.tag.empty() ? "(unparsed)" : statement.tag,
                                  policy::class_name(statement.statement_class));
    std::string objects;
    for (const auto& object : statement.objects)
        objects += fmt::format("{}{}{} ({})", objects.empty() ? "" : ", ",
                               object.schema.empty() ? "" : object.schema + ".", object.name, sql::to_string(object.role));
    if (!objects.empty()) out += " on " + objects;
    return out;
}

void explain_statement(const policy::Policy& policy, const policy::SessionInfo& session,
                       const sql::Statement& statement, const std::string& number, const std::string& query) {
    const auto decision = policy::evaluate(policy, session, statement);
    const auto text = query.substr(std::min(statement.offset, query.size()), statement.length);
    std::cout << number << ". " << describe(statement) << "\n";
    if (!text.empty()) std::cout << std::string(number.size() + 2, ' ') << "sql: " << text << '\n';
    std::cout << std::string(number.size() + 2, ' ') << "-> " << verdict(decision) << '\n';
    print_refusal(decision, std::string(number.size() + 5, ' '));
    for (std::size_t index = 0; index < statement.inner.size(); ++index)
        explain_statement(policy, session, statement.inner[index], fmt::format("{}.{}", number, index + 1), "");
}

}  // namespace

void add_explain_command(CLI::App& app) {
    auto args = std::make_shared<ExplainArguments>();
    CLI::App* command = app.add_subcommand(
        "explain", "Print the policy's decision for each statement of SQL (and the statements they wrap)");
    command->add_option("--policy", args->policy_file, "The policy file (YAML)")->required();
    command->add_option("--user", args->session.user, "Session user")->required();
    command->add_option("--database", args->session.database, "Session database (default: the user name)");
    command->add_option("--application", args->session.application_name, "Session application_name");
    command->add_option("--client", args->session.client_address, "Client address (IPv4 or IPv6)");
    command->add_option("--startup", args->startup,
                        "A startup parameter KEY=VALUE to check with the startup guards (repeatable)")
        ->allow_extra_args(false);
    command->add_option("--migrations-dir", args->migrations_dir, "The migrations directory named in the DDL hint")
        ->default_str("migrations");
    command->add_option("sql", args->sql, "SQL text, or - to read it from standard input")->default_str("-");
    command->callback([args] {
        const auto policy = policy::load_policy_file(args->policy_file, {args->migrations_dir});
        auto session = args->session;
        if (session.database.empty()) session.database = session.user;  // as libpq defaults it
        std::string query = args->sql;
        if (query == "-") {
            std::ostringstream input;
            input << std::cin.rdbuf();
            query = std::move(input).str();
        }

        const auto& rule = policy->rule_for(session);
        std::cout << fmt::format("policy {} ({}), session user={} database={} application={} client={}\n",
                                 policy->source, policy::to_string(policy->mode), session.user, session.database,
                                 session.application_name.empty() ? "-" : session.application_name,
                                 session.client_address.empty() ? "-" : session.client_address);
        std::cout << fmt::format("rule: \"{}\" ({})\n", rule.name, rule.location);

        bool refused = false;
        if (!args->startup.empty()) {
            std::vector<std::pair<std::string, std::string>> params;
            for (const auto& item : args->startup) {
                const auto eq = item.find('=');
                if (eq == std::string::npos) throw CLI::ValidationError("--startup", "expects KEY=VALUE, got " + item);
                params.emplace_back(item.substr(0, eq), item.substr(eq + 1));
            }
            const auto decision = policy::evaluate_startup(*policy, session, params);
            std::cout << "startup -> " << verdict(decision) << '\n';
            print_refusal(decision, "     ");
            refused = refused || (decision.action == policy::Decision::Action::deny && decision.enforced);
        }

        const auto analysis = sql::analyze(query);
        for (std::size_t index = 0; index < analysis.statements.size(); ++index)
            explain_statement(*policy, session, analysis.statements[index], std::to_string(index + 1), query);
        const auto overall = policy::evaluate_all(*policy, session, analysis);
        std::cout << "query -> " << verdict(overall);
        if (overall.action != policy::Decision::Action::allow && analysis.statements.size() > 1)
            std::cout << " at statement " << overall.statement_index + 1;
        std::cout << '\n';
        print_refusal(overall, "     ");
        std::cout.flush();
        refused = refused || (overall.action == policy::Decision::Action::deny && overall.enforced);
        // Scripts can test the outcome: exit status 1 when pgrail would refuse.
        if (refused) throw CLI::RuntimeError(1);
    });
}

}  // namespace pgrail::cli
