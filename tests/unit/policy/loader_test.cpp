// The policy loader: the shipped files load, bad files give file:line:column errors (tests/data/policy_errors.txt).
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>

#include <cstdlib>

#include "pgrail/policy/loader.hpp"

using namespace pgrail;
using namespace pgrail::policy;

namespace {

struct ErrorCase {
    std::string title;
    std::string expected;
    std::string yaml;
    int line = 0;
};

std::vector<ErrorCase> read_error_cases(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in);
    std::vector<ErrorCase> cases;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.starts_with("== ")) {
            cases.push_back({line.substr(3), "", "", number});
        } else if (line.starts_with("!! ") && !cases.empty() && cases.back().expected.empty()) {
            cases.back().expected = line.substr(3);
        } else if (!cases.empty()) {
            cases.back().yaml += line + "\n";
        }
    }
    return cases;
}

}  // namespace

TEST_CASE("the shipped default policy loads and says what it does", "[policy][loader]") {
    auto policy = load_policy_file(PGRAIL_TEST_DATA "/../../policies/default.yaml");
    CHECK(policy->mode == Mode::enforce);
    CHECK(policy->on_parse_error == OnParseError::deny);
    REQUIRE(policy->rules.size() == 2);
    CHECK(policy->rules.back().match.matches_everything());
    const auto& agents = policy->rules.back().guards;
    CHECK(agents.ddl == DdlMode::migrations_only);
    CHECK_FALSE(agents.migrator);
    CHECK(agents.require_where);
    CHECK_FALSE(agents.allow_truncate);
    CHECK_FALSE(agents.allows_class(sql::StatementClass::utility));
    CHECK(agents.allows_command(Command::migrate_up));
    CHECK_FALSE(agents.allows_command(Command::migrate_down));
    for (const char* function : {"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import",
                                 "lo_export", "dblink", "dblink_exec", "dblink_connect", "pg_terminate_backend",
                                 "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "pg_promote"})
        CHECK(agents.denied_functions.contains(function));
    for (const char* setting : {"session_replication_role", "role", "session_authorization",
                                "default_transaction_read_only", "transaction_read_only"})
        CHECK(agents.protected_settings.contains(setting));
    for (const char* schema : {"pgrail", "pg_catalog", "information_schema"})
        CHECK(std::find(agents.protected_schemas.begin(), agents.protected_schemas.end(), schema) !=
              agents.protected_schemas.end());
    CHECK(policy->rules.front().guards.migrator);

    const auto summary = summarize(*policy);
    CHECK_THAT(summary, Catch::Contains("mode: enforce"));
    CHECK_THAT(summary, Catch::Contains("1. owner"));
    CHECK_THAT(summary, Catch::Contains("2. agents"));
    CHECK_THAT(summary, Catch::Contains("match: every session"));
}

TEST_CASE("the test policies load", "[policy][loader]") {
    for (const char* file : {"/policy_custom.yaml", "/policy_audit_only.yaml"}) {
        INFO(file);
        CHECK_NOTHROW(load_policy_file(std::string(PGRAIL_TEST_DATA) + file));
    }
    auto custom = load_policy_file(PGRAIL_TEST_DATA "/policy_custom.yaml");
    CHECK(custom->rules.size() == 4);
    const auto& ops = custom->rules[2].guards;
    CHECK_FALSE(ops.denied_functions.contains("pg_cancel_backend"));
    CHECK(ops.denied_functions.contains("pg_terminate_backend"));
    CHECK_FALSE(ops.protected_settings.contains("statement_timeout"));
    CHECK(custom->rules[3].guards.protected_settings.contains("statement_timeout"));
    CHECK_THAT(summarize(*custom), Catch::Contains("message overrides: ddl, require_where"));
    CHECK_THAT(summarize(*custom), Catch::Contains("match: users deployer; clients 10.0.0.0/8, fd00::/8"));
    CHECK(custom->rules[0].guards.allow_copy_server_files);
    CHECK_FALSE(custom->rules[0].guards.allow_copy_program);  // copy.program keeps its default
}

TEST_CASE("a missing file is a clear error", "[policy][loader]") {
    CHECK_THROWS_WITH(load_policy_file("/nonexistent/policy.yaml"), "/nonexistent/policy.yaml: cannot read file");
}

TEST_CASE("sensitive_columns, max_rows and masking load", "[policy][loader]") {
    ::setenv("PGRAIL_TEST_MASK_KEY", "0123456789abcdef0123", 1);
    const auto policy = load_policy_string(R"(version: 1
masking: {key_env: PGRAIL_TEST_MASK_KEY}
defaults:
  max_rows: 500
rules:
  - name: agents
    match: {users: [agent]}
    sensitive_columns:
      action: mask
      columns: [users.password_hash, "billing.cards.*", "*.ssn"]
    max_rows: {limit: 1000, action: deny}
  - name: readers
    match: {users: [reader]}
    sensitive_columns: {action: mask, method: constant, value: "[hidden]", columns: [users.email]}
  - name: all
    sensitive_columns: {columns: [users.password_hash]}
)",
                                           "case");
    CHECK(policy->masking_key == "0123456789abcdef0123");
    CHECK(policy->has_sensitive_columns);
    CHECK(policy->has_result_guards);
    const auto& agents = policy->rules.at(0).guards;
    CHECK(agents.sensitive.action == policy::SensitiveAction::mask);
    CHECK(agents.sensitive.method == policy::MaskMethod::hash);
    REQUIRE(agents.sensitive.patterns.size() == 3);
    CHECK(agents.sensitive.patterns[1].schema == "billing");
    CHECK(agents.sensitive.patterns[1].table == "cards");
    CHECK(agents.sensitive.patterns[1].column == "*");
    CHECK(agents.sensitive.patterns[2].to_string() == "*.ssn");
    CHECK(agents.max_rows.limit == 1000);
    CHECK(agents.max_rows.action == policy::MaxRowsAction::deny);
    const auto& readers = policy->rules.at(1).guards;
    CHECK(readers.sensitive.method == policy::MaskMethod::constant);
    CHECK(readers.sensitive.constant == "[hidden]");
    CHECK(readers.max_rows.limit == 500);  // from defaults
    CHECK(readers.max_rows.action == policy::MaxRowsAction::truncate);
    CHECK(policy->rules.at(2).guards.sensitive.action == policy::SensitiveAction::deny);
    CHECK(summarize(*policy).find("sensitive columns (masked by keyed hash): users.password_hash") != std::string::npos);
}

TEST_CASE("bad policies give file:line:column errors (policy_errors.txt)", "[policy][loader]") {
    const auto cases = read_error_cases(PGRAIL_TEST_DATA "/policy_errors.txt");
    CHECK(cases.size() >= 40);
    ::setenv("PGRAIL_TEST_SHORT_KEY", "short", 1);  // the masking key cases
    ::unsetenv("PGRAIL_TEST_UNSET_KEY");
    for (const auto& error_case : cases) {
        INFO("case \"" << error_case.title << "\" at policy_errors.txt:" << error_case.line);
        std::string message = "(no error)";
        try {
            (void)load_policy_string(error_case.yaml, "case");
        } catch (const config::ConfigError& e) {
            message = e.what();
        }
        INFO("got: " << message);
        CHECK(message.starts_with("case:" + error_case.expected));
    }
}
