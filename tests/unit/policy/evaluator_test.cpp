// evaluate() over hand-built statements: every guard, its order, and its message.
#include <chrono>

#include <fmt/format.h>

#include <catch2/catch.hpp>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail;
using namespace pgrail::policy;
using sql::ObjectRef;
using sql::ObjectRole;
using sql::Statement;
using sql::StatementClass;
using Action = Decision::Action;

namespace {

std::shared_ptr<const Policy> default_policy() {
    static auto policy = load_policy_file(PGRAIL_TEST_DATA "/../../policies/default.yaml", {"db/migrations"});
    return policy;
}

Statement statement(StatementClass statement_class, std::string tag, std::vector<ObjectRef> objects = {}) {
    Statement out;
    out.statement_class = statement_class;
    out.tag = std::move(tag);
    out.objects = std::move(objects);
    return out;
}

ObjectRef table(std::string schema, std::string name, ObjectRole role) {
    return ObjectRef{std::move(schema), std::move(name), "table", role};
}

const SessionInfo agent{"agent", "app", "psql", "10.1.2.3"};
const SessionInfo owner{"app_owner", "app", "flyway", "10.1.2.3"};

}  // namespace

TEST_CASE("a plain SELECT is allowed by the catch-all rule", "[policy][evaluate]") {
    auto decision = evaluate(*default_policy(), agent,
                             statement(StatementClass::read, "SELECT", {table("", "profiles", ObjectRole::read)}));
    CHECK(decision.action == Action::allow);
    CHECK(decision.rule == "agents");
    CHECK(decision.guard.empty());
    CHECK(decision.message.empty());
}

TEST_CASE("ad hoc DDL is refused with the rule, tag, objects and the migrations hint", "[policy][evaluate]") {
    auto decision = evaluate(*default_policy(), agent,
                             statement(StatementClass::ddl, "ALTER TABLE", {table("public", "profiles", ObjectRole::altered)}));
    CHECK(decision.action == Action::deny);
    CHECK(decision.enforced);
    CHECK(decision.sqlstate == "42501");
    CHECK(decision.guard == "ddl");
    CHECK(decision.message ==
          "pgrail: ad hoc ALTER TABLE refused; propose it as a migration: SELECT * FROM "
          "pgrail.propose_migration('alter_table_profiles', '<your ALTER TABLE>', '<SQL that undoes it>')");
    CHECK(decision.detail == "rule \"agents\" (ddl: migrations_only) refused ALTER TABLE on public.profiles");
    CHECK_THAT(decision.hint, Catch::Contains("pgrail.propose_migration(name, up_sql, down_sql)") &&
                                  Catch::Contains("migrations directory (db/migrations)"));
}

TEST_CASE("a migrator's DDL passes only when it equals a registered migration statement", "[policy][evaluate]") {
    auto ddl = statement(StatementClass::ddl, "ALTER TABLE", {table("", "profiles", ObjectRole::altered)});
    ddl.structural_form = "form";
    MigrationMatcher registered = [](const Statement& s) -> std::optional<RegisteredStatement> {
        if (s.structural_form != "form") return std::nullopt;
        return RegisteredStatement{"20261125090000", "add_profiles_timezone", false};
    };
    MigrationMatcher none = [](const Statement&) -> std::optional<RegisteredStatement> { return std::nullopt; };
    CHECK(evaluate(*default_policy(), owner, ddl, &registered).action == Action::allow);
    auto refused = evaluate(*default_policy(), owner, ddl, &none);
    CHECK(refused.action == Action::deny);
    CHECK(refused.rule == "owner");
    CHECK_THAT(refused.detail, Catch::Contains("matches no statement of a registered migration"));
    CHECK(evaluate(*default_policy(), owner, ddl, nullptr).action == Action::deny);
    // Not a migrator: refused all the same, and the message names the migration to apply instead.
    const auto agents = evaluate(*default_policy(), agent, ddl, &registered);
    CHECK(agents.action == Action::deny);
    CHECK(agents.message == "pgrail: this ALTER TABLE is part of registered migration 20261125090000 "
                            "(add_profiles_timezone); apply that instead: SELECT * FROM "
                            "pgrail.migrate_up('20261125090000')");
    // A rollback statement of an applied migration: roll the migration back (or ask, when the rule
    // may not).
    MigrationMatcher rollback = [](const Statement&) -> std::optional<RegisteredStatement> {
        return RegisteredStatement{"7", "seven", true};
    };
    CHECK_THAT(evaluate(*default_policy(), agent, ddl, &rollback).message,
               Catch::Contains("rollback of applied migration 7 (seven); ask an operator to roll it back"));
}

TEST_CASE("migrations.require_version: migrate_up and migrate_down only with a version", "[policy][evaluate]") {
    auto policy = load_policy_string(R"(version: 1
defaults:
  migrations: {require_version: true}
rules:
  - name: deploy
    match: {users: deployer}
    migrations: [status, plan, migrate_up, migrate_down]
  - name: all
    migrations: {commands: [status, plan, migrate_up], require_version: false}
)", "p");
    auto call = [](std::string function, std::vector<std::string> arguments) {
        auto s = statement(StatementClass::read, "SELECT");
        s.pgrail_calls.push_back(sql::PgrailCall{function, std::move(arguments), sql::pgrail_command_named(function)});
        return s;
    };
    const SessionInfo deployer{"deployer", "app", "deploy", "10.1.2.3"};
    // The list form of the rule's commands inherits require_version from the defaults.
    CHECK(policy->rules[0].guards.require_version);
    CHECK_FALSE(policy->rules[1].guards.require_version);
    auto all = evaluate(*policy, deployer, call("migrate_up", {}));
    CHECK(all.action == Action::deny);
    CHECK(all.guard == "migrations");
    CHECK(all.message == "pgrail: pgrail.migrate_up() without a version is not allowed for this session; name the "
                         "migration: SELECT * FROM pgrail.migrate_up('<version>')");
    CHECK(all.detail == "rule \"deploy\" (migrations: require_version) refused SELECT calling pgrail.migrate_up "
                        "without a version");
    CHECK(evaluate(*policy, deployer, call("migrate_down", {})).guard == "migrations");
    CHECK(evaluate(*policy, deployer, call("migrate_up", {"20261125090000"})).action == Action::intercept);
    CHECK(evaluate(*policy, deployer, call("migrate_down", {"20261125090000"})).action == Action::intercept);
    // Reading commands need no version.
    CHECK(evaluate(*policy, deployer, call("plan", {})).action == Action::intercept);
    CHECK(evaluate(*policy, deployer, call("status", {})).action == Action::intercept);
    CHECK(evaluate(*policy, agent, call("migrate_up", {})).action == Action::intercept);
    CHECK_THAT(summarize(*policy), Catch::Contains("(migrate_up and migrate_down with a version only)"));
}

TEST_CASE("temporary objects are not schema changes", "[policy][evaluate]") {
    auto temporary_table = table("", "scratch", ObjectRole::created);
    temporary_table.temporary = true;
    auto temp = statement(StatementClass::ddl, "CREATE TABLE", {temporary_table});
    temp.flags.temporary_object = true;
    CHECK(evaluate(*default_policy(), agent, temp).allowed());
    // A permanent relation changed alongside (INHERITS, PARTITION OF) makes it a schema change.
    auto attached = temp;
    attached.objects.push_back(table("public", "profiles", ObjectRole::altered));
    CHECK(evaluate(*default_policy(), agent, attached).guard == "ddl");
    auto policy = load_policy_string("version: 1\nrules:\n  - name: all\n    allow_temporary_objects: false\n", "p");
    CHECK(evaluate(*policy, agent, temp).guard == "ddl");
}

TEST_CASE("dynamic EXECUTE in DO counts as DDL", "[policy][evaluate]") {
    auto block = statement(StatementClass::procedural, "DO");
    block.flags.ddl_capable_dynamic = true;
    auto decision = evaluate(*default_policy(), agent, block);
    CHECK(decision.guard == "ddl");
    CHECK_THAT(decision.detail, Catch::Contains("dynamic EXECUTE"));
    CHECK(evaluate(*default_policy(), agent, statement(StatementClass::procedural, "DO")).allowed());
}

TEST_CASE("pgrail commands: intercept when allowed, refuse otherwise", "[policy][evaluate]") {
    auto call = [](std::string function) {
        auto s = statement(StatementClass::read, "SELECT");
        s.pgrail_calls.push_back(sql::PgrailCall{function, {}, sql::pgrail_command_named(function)});
        return s;
    };
    auto up = evaluate(*default_policy(), agent, call("migrate_up"));
    CHECK(up.action == Action::intercept);
    CHECK(up.command == Command::migrate_up);
    auto down = evaluate(*default_policy(), agent, call("migrate_down"));
    CHECK(down.action == Action::deny);
    CHECK(down.guard == "migrations");
    CHECK(down.message == "pgrail: pgrail.migrate_down is not allowed for this session; ask an operator to run it");
    CHECK_THAT(down.hint, Catch::Contains("pgrail.status, pgrail.plan, pgrail.migrate_up"));
    CHECK(evaluate(*default_policy(), owner, call("migrate_down")).action == Action::intercept);
    CHECK_THAT(evaluate(*default_policy(), agent, call("drop_everything")).message,
               Catch::StartsWith("pgrail: unknown command pgrail.drop_everything; see SELECT * FROM pgrail.status()"));

    sql::Analysis two;
    two.statements = {statement(StatementClass::read, "SELECT"), call("status")};
    auto mixed = evaluate_all(*default_policy(), agent, two);
    CHECK(mixed.action == Action::deny);
    CHECK(mixed.statement_index == 1);
    CHECK(mixed.message == "pgrail: a query that reads a pgrail command must be that one statement; send SELECT ... "
                           "FROM pgrail.status(...) on its own");

    auto prepare = statement(StatementClass::session, "PREPARE");
    prepare.inner = {call("status")};
    CHECK(evaluate(*default_policy(), agent, prepare).guard == "migrations");
}

TEST_CASE("denied functions: bare, pg_catalog-qualified, any schema, globs, lifted", "[policy][evaluate]") {
    auto calling = [](std::string function) {
        auto s = statement(StatementClass::read, "SELECT");
        s.functions = {"lower", std::move(function)};
        return s;
    };
    CHECK(evaluate(*default_policy(), agent, calling("pg_read_file")).guard == "denied_functions");
    CHECK(evaluate(*default_policy(), agent, calling("pg_catalog.pg_read_file")).guard == "denied_functions");
    CHECK(evaluate(*default_policy(), agent, calling("public.dblink_exec")).guard == "denied_functions");
    CHECK(evaluate(*default_policy(), agent, calling("pg_catalog.pg_terminate_backend")).message ==
          "pgrail: function pg_terminate_backend is not allowed for this session; ask an operator if you need it");
    CHECK(evaluate(*default_policy(), agent, calling("pg_sleep")).allowed());
    CHECK(evaluate(*default_policy(), agent, calling("now")).allowed());

    auto policy = load_policy_string(R"(version: 1
rules:
  - name: ops
    match: {users: ops}
    allowed_functions: [pg_cancel_backend, "dblink*"]
    denied_functions: [public.risky, "PG_SLEEP"]
  - name: rest
)", "p");
    const SessionInfo ops{"ops", "app", "", ""};
    CHECK(evaluate(*policy, ops, calling("pg_cancel_backend")).allowed());
    CHECK(evaluate(*policy, ops, calling("dblink")).allowed());
    CHECK(evaluate(*policy, ops, calling("pg_terminate_backend")).guard == "denied_functions");
    CHECK(evaluate(*policy, ops, calling("public.risky")).guard == "denied_functions");
    CHECK(evaluate(*policy, ops, calling("other.risky")).allowed());
    CHECK(evaluate(*policy, ops, calling("pg_sleep")).guard == "denied_functions");
    CHECK(evaluate(*policy, agent, calling("pg_cancel_backend")).guard == "denied_functions");
}

TEST_CASE("protected settings through SET, RESET and set_config", "[policy][evaluate]") {
    auto setting = [](std::string name, bool via_function) {
        auto s = statement(via_function ? StatementClass::read : StatementClass::session, via_function ? "SELECT" : "SET");
        s.settings = {sql::SettingChange{std::move(name), via_function}};
        if (via_function) s.functions = {"set_config"};
        return s;
    };
    CHECK(evaluate(*default_policy(), agent, setting("search_path", false)).allowed());
    CHECK(evaluate(*default_policy(), agent, setting("session_replication_role", false)).guard == "protected_settings");
    CHECK(evaluate(*default_policy(), agent, setting("role", true)).message ==
          "pgrail: changing setting role refused; it guards the database's protections, ask an operator");
    CHECK(evaluate(*default_policy(), agent, setting("all", false)).allowed());
    auto computed = statement(StatementClass::read, "SELECT");
    computed.functions = {"pg_catalog.set_config"};
    CHECK(evaluate(*default_policy(), agent, computed).message ==
          "pgrail: set_config with a computed setting name refused; pass the name as a constant");
}

TEST_CASE("writes to protected schemas are refused, reads pass", "[policy][evaluate]") {
    CHECK(evaluate(*default_policy(), agent,
                   statement(StatementClass::read, "SELECT", {table("pgrail", "schema_migrations", ObjectRole::read)}))
              .allowed());
    auto write = evaluate(*default_policy(), agent,
                          statement(StatementClass::write, "DELETE", {table("pgrail", "schema_migrations", ObjectRole::written)}));
    CHECK(write.guard == "protected_schemas");
    CHECK(write.message == "pgrail: write to protected schema pgrail refused; pgrail's commands change it");
    CHECK(evaluate(*default_policy(), agent,
                   statement(StatementClass::write, "UPDATE", {table("", "pg_authid", ObjectRole::written)}))
              .guard == "protected_schemas");
    // The migrator's registered DDL still may not touch pgrail's own schema.
    MigrationMatcher yes = [](const Statement&) -> std::optional<RegisteredStatement> {
        return RegisteredStatement{"1", "one", false};
    };
    CHECK(evaluate(*default_policy(), owner,
                   statement(StatementClass::ddl, "DROP SCHEMA", {ObjectRef{"", "pgrail", "schema", ObjectRole::dropped}}),
                   &yes)
              .guard == "protected_schemas");
}

TEST_CASE("DML guards: require_where, truncate, read-only tables", "[policy][evaluate]") {
    auto unbounded = statement(StatementClass::write, "DELETE", {table("", "orders", ObjectRole::written)});
    unbounded.flags.update_or_delete_without_where = true;
    auto decision = evaluate(*default_policy(), agent, unbounded);
    CHECK(decision.message ==
          "pgrail: DELETE without WHERE refused; add a WHERE clause that selects the rows (WHERE true if you mean "
          "every row)");
    CHECK(decision.detail == "rule \"agents\" (require_where) refused DELETE on orders");

    auto truncate = statement(StatementClass::write, "TRUNCATE TABLE", {table("", "orders", ObjectRole::truncated)});
    CHECK(evaluate(*default_policy(), agent, truncate).guard == "truncate");

    auto policy = load_policy_string(R"(version: 1
defaults:
  read_only_tables: [public.ledger, "audit.*", invoices]
  allow_truncate: true
  require_where: false
rules:
  - name: all
)", "p");
    CHECK(evaluate(*policy, agent, unbounded).allowed());
    CHECK(evaluate(*policy, agent, truncate).allowed());
    auto write = [](std::string schema, std::string name) {
        return statement(StatementClass::write, "INSERT", {table(std::move(schema), std::move(name), ObjectRole::written)});
    };
    CHECK(evaluate(*policy, agent, write("public", "ledger")).guard == "read_only_tables");
    CHECK(evaluate(*policy, agent, write("", "ledger")).guard == "read_only_tables");  // may resolve to public.ledger
    CHECK(evaluate(*policy, agent, write("other", "ledger")).allowed());
    CHECK(evaluate(*policy, agent, write("audit", "events")).guard == "read_only_tables");
    CHECK(evaluate(*policy, agent, write("x", "invoices")).message ==
          "pgrail: write to read-only table x.invoices refused; an operator changes it");
    CHECK(evaluate(*policy, agent, statement(StatementClass::read, "SELECT", {table("public", "ledger", ObjectRole::read)}))
              .allowed());
}

TEST_CASE("COPY PROGRAM, server files and ALTER SYSTEM", "[policy][evaluate]") {
    auto program = statement(StatementClass::copy, "COPY");
    program.flags.copy_program = true;
    CHECK(evaluate(*default_policy(), agent, program).guard == "copy_program");
    auto file = statement(StatementClass::copy, "COPY");
    file.flags.copy_file = true;
    CHECK(evaluate(*default_policy(), agent, file).guard == "copy_server_files");
    CHECK(evaluate(*default_policy(), agent, statement(StatementClass::copy, "COPY")).allowed());
    auto alter = statement(StatementClass::utility, "ALTER SYSTEM");
    alter.flags.alter_system = true;
    CHECK(evaluate(*default_policy(), agent, alter).guard == "alter_system");
}

TEST_CASE("statement classes outside allow_classes are refused", "[policy][evaluate]") {
    auto vacuum = evaluate(*default_policy(), agent, statement(StatementClass::utility, "VACUUM"));
    CHECK(vacuum.guard == "allow_classes");
    CHECK(vacuum.message == "pgrail: utility statements are not allowed for this session; ask an operator to run this "
                            "VACUUM");
    CHECK_THAT(vacuum.hint, Catch::Contains("read, write, transaction, session, procedural, copy"));
}

TEST_CASE("inner statements are evaluated too", "[policy][evaluate]") {
    auto inner = statement(StatementClass::write, "DELETE", {table("", "orders", ObjectRole::written)});
    inner.flags.update_or_delete_without_where = true;
    auto explain = statement(StatementClass::read, "EXPLAIN");
    explain.inner = {inner};
    auto decision = evaluate(*default_policy(), agent, explain);
    CHECK(decision.guard == "require_where");
    CHECK(decision.detail == "rule \"agents\" (require_where) refused DELETE on orders");
}

TEST_CASE("unparsed statements follow on_parse_error", "[policy][evaluate]") {
    sql::Analysis bad;
    bad.error = sql::ParseError{"syntax error at or near \"FORM\"", 10};
    auto decision = evaluate_all(*default_policy(), agent, bad);
    CHECK(decision.action == Action::deny);
    CHECK(decision.sqlstate == "42601");
    CHECK(decision.message == "pgrail: syntax error at or near \"FORM\"");
    CHECK(decision.guard == "on_parse_error");
    auto unknown = evaluate(*default_policy(), agent, statement(StatementClass::unknown, ""));
    CHECK(unknown.guard == "on_parse_error");
    CHECK(unknown.sqlstate == "42501");

    // A limit of pgrail's (the text's size, its nesting) is not a syntax error: 54000.
    sql::Analysis beyond_limit;
    beyond_limit.error = sql::ParseError{"statement nested too deeply to analyse safely", 1, true};
    const auto limited = evaluate_all(*default_policy(), agent, beyond_limit);
    CHECK(limited.action == Action::deny);
    CHECK(limited.sqlstate == "54000");
    CHECK(limited.guard == "on_parse_error");
    CHECK_THAT(limited.hint, Catch::Contains("parameters"));

    auto lenient = load_policy_string("version: 1\non_parse_error: allow\nrules:\n  - name: all\n", "p");
    CHECK(evaluate_all(*lenient, agent, bad).allowed());
    // ... but not past a limit: what pgrail did not read could be anything.
    const auto still_limited = evaluate_all(*lenient, agent, beyond_limit);
    CHECK(still_limited.action == Action::deny);
    CHECK(still_limited.sqlstate == "54000");
    CHECK(evaluate(*lenient, agent, statement(StatementClass::unknown, "")).allowed());
    CHECK(evaluate_all(*default_policy(), agent, sql::Analysis{}).allowed());  // empty query
}

TEST_CASE("audit_only decides but does not enforce", "[policy][evaluate]") {
    auto policy = load_policy_string("version: 1\nmode: audit_only\nrules:\n  - name: all\n", "p");
    auto decision = evaluate(*policy, agent, statement(StatementClass::ddl, "DROP TABLE", {table("", "t", ObjectRole::dropped)}));
    CHECK(decision.action == Action::deny);
    CHECK_FALSE(decision.enforced);
}

TEST_CASE("messages can be overridden with placeholders", "[policy][evaluate]") {
    auto policy = load_policy_string(R"(version: 1
messages:
  ddl:
    message: "pgrail: no schema changes from {rule}"
    hint: "Open a PR adding a migration to {migrations_dir} for {objects} ({tag})."
rules:
  - name: all
)", "p", {"sql/migrations"});
    auto decision = evaluate(*policy, agent,
                             statement(StatementClass::ddl, "ALTER TABLE", {table("public", "profiles", ObjectRole::altered)}));
    CHECK(decision.message == "pgrail: no schema changes from all");
    CHECK(decision.hint == "Open a PR adding a migration to sql/migrations for public.profiles (ALTER TABLE).");
    CHECK(decision.detail == "rule \"all\" (ddl: migrations_only) refused ALTER TABLE on public.profiles");
}

TEST_CASE("rules match on user, database, application and client; first match wins", "[policy][rules]") {
    auto policy = load_policy_string(R"(version: 1
rules:
  - name: office
    match: {users: "agent*", clients: [10.0.0.0/8, "2001:db8::/32"]}
  - name: reporting
    match: {databases: [reports, "analytics_*"], application_names: metabase}
  - name: rest
    match: {users: "*", clients: "::/0"}
)", "p");
    auto rule = [&](SessionInfo session) { return policy->rule_for(session).name; };
    CHECK(rule({"agent_7", "app", "", "10.9.9.9"}) == "office");
    CHECK(rule({"agent_7", "app", "", "::ffff:10.9.9.9"}) == "office");
    CHECK(rule({"agent_7", "app", "", "2001:db8::7"}) == "office");
    CHECK(rule({"agent_7", "app", "", "192.168.0.1"}) == "rest");
    CHECK(rule({"agent_7", "app", "", ""}) == "rest");  // Unix socket: no address, no CIDR match
    CHECK(rule({"bob", "analytics_eu", "metabase", "1.2.3.4"}) == "reporting");
    CHECK(rule({"bob", "analytics_eu", "psql", "1.2.3.4"}) == "rest");
    CHECK(rule({"agent_1", "reports", "metabase", "10.0.0.1"}) == "office");  // file order
}

TEST_CASE("rules match on the identity (auth.mode pgrail), which is the user in passthrough mode",
          "[policy][rules]") {
    auto policy = load_policy_string(R"(version: 1
rules:
  - name: seven
    match: {identities: [agent-7, "bot-*"]}
  - name: role
    match: {users: agent, identities: "*"}
  - name: rest
)", "p");
    auto rule = [&](std::string user, std::string identity) {
        SessionInfo session{user, "app", "", "10.0.0.1"};
        session.identity = std::move(identity);
        return policy->rule_for(session).name;
    };
    CHECK(rule("agent", "agent-7") == "seven");
    CHECK(rule("agent", "bot-42") == "seven");
    CHECK(rule("agent", "agent-8") == "role");
    CHECK(rule("bob", "agent-8") == "rest");
    CHECK(rule("agent-7", "") == "seven");  // passthrough: the identity is the user
    CHECK(rule("bob", "") == "rest");
}

TEST_CASE("startup guards: replication, options, protected startup settings", "[policy][startup]") {
    using Params = std::vector<std::pair<std::string, std::string>>;
    const auto& policy = *default_policy();
    CHECK(evaluate_startup(policy, agent, Params{{"user", "agent"}, {"database", "app"}}).allowed());
    auto replication = evaluate_startup(policy, agent, Params{{"replication", "database"}});
    CHECK(replication.guard == "replication");
    CHECK(replication.message ==
          "pgrail: replication connections are refused through pgrail; an operator sets up replication");
    CHECK(evaluate_startup(policy, agent, Params{{"replication", "false"}}).allowed());
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-c search_path=app,public"}}).allowed());
    CHECK(evaluate_startup(policy, agent, Params{{"options", "--statement-timeout=5s -c lock_timeout=1s"}}).allowed());
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-c work_mem=1GB"}}).guard == "options");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-c session_replication_role=replica"}}).guard ==
          "protected_settings");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-B 1000"}}).guard == "options");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-c search_path=a,\\ b"}}).allowed());
    CHECK(evaluate_startup(policy, agent, Params{{"session_replication_role", "replica"}}).guard == "protected_settings");
    CHECK(evaluate_startup(policy, agent, Params{{"default_transaction_read_only", "off"}}).guard == "protected_settings");
    CHECK(evaluate_startup(policy, agent, Params{{"client_encoding", "UTF8"}, {"application_name", "x"}}).allowed());
    const auto twice = evaluate_startup(policy, agent, Params{{"user", "agent"}, {"database", "app"}, {"user", "app_owner"}});
    CHECK(twice.sqlstate == "08P01");
    CHECK(twice.message == "pgrail: invalid startup packet: parameter \"user\" is given more than once");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-c lock_timeout=1s"}, {"options", "-c work_mem=1GB"}})
              .sqlstate == "08P01");

    auto deny = load_policy_string("version: 1\ndefaults: {options: deny, replication: allow}\nrules:\n  - name: all\n", "p");
    CHECK(evaluate_startup(*deny, agent, Params{{"options", "-c search_path=x"}}).guard == "options");
    CHECK(evaluate_startup(*deny, agent, Params{{"options", "  "}}).allowed());
    CHECK(evaluate_startup(*deny, agent, Params{{"replication", "true"}}).allowed());
    auto allow = load_policy_string("version: 1\ndefaults: {options: allow}\nrules:\n  - name: all\n", "p");
    CHECK(evaluate_startup(*allow, agent, Params{{"options", "-c work_mem=1GB -B 10"}}).allowed());
    CHECK(evaluate_startup(*allow, agent, Params{{"options", "-crole=postgres"}}).guard == "protected_settings");
    // Switches run together, as the server's getopt reads them (helper 72: `-ec search_path=pgrail`
    // set a protected search_path under allow): every -c and -- is a setting, wherever it stands.
    for (const char* together : {"-ec search_path=pgrail", "-ec role=postgres", "-Fec role=postgres", "-e -crole=postgres",
                                 "-e-role=postgres", "-e --role=postgres", "-B 10 -c role=postgres"}) {
        INFO(together);
        CHECK_FALSE(evaluate_startup(*allow, agent, Params{{"options", together}}).allowed());
    }
    CHECK(evaluate_startup(*allow, agent, Params{{"options", "-ec work_mem=1GB"}}).allowed());
    CHECK(evaluate_startup(*allow, agent, Params{{"options", "-B10 --work-mem=1GB"}}).allowed());
    // Under the allow list, only settings it names: other switches, and words that are none, are refused.
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-ec search_path=app"}}).guard == "options");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "search_path=app"}}).guard == "options");
    CHECK(evaluate_startup(policy, agent, Params{{"options", "-csearch_path=app --lock-timeout=1s"}}).allowed());
}

TEST_CASE("a fast-path function call is refused under every rule, in the policy's words if it has them",
          "[policy][evaluate]") {
    auto policy = load_policy_string(R"(version: 1
messages:
  function_call:
    message: "pgrail: PQfn is not for {rule}"
rules:
  - name: owner
    match: {users: app_owner}
    migrator: true
  - name: all
)", "p");
    for (const auto& [user, rule] : {std::pair{"app_owner", "owner"}, std::pair{"agent", "all"}}) {
        SessionInfo session;
        session.user = user;
        const auto decision = evaluate_function_call(*policy, session, 2078);
        CHECK(decision.rule == rule);
        CHECK(decision.action == Decision::Action::deny);
        CHECK(decision.guard == "function_call");
        CHECK(decision.sqlstate == "42501");
        CHECK(decision.detail == fmt::format("rule \"{}\" refused a FunctionCall message (function OID 2078)",
                                             decision.rule));
        CHECK(decision.message == "pgrail: PQfn is not for " + decision.rule);
        CHECK_THAT(decision.hint, Catch::Contains("SELECT"));
    }
    // Without words of its own the policy refuses in pgrail's.
    const auto plain = load_policy_string("version: 1\nrules:\n  - name: all\n", "p");
    const auto decision = evaluate_function_call(*plain, SessionInfo{}, 2078);
    CHECK(decision.action == Decision::Action::deny);
    CHECK(decision.sqlstate == "42501");
    CHECK(decision.detail == "rule \"all\" refused a FunctionCall message (function OID 2078)");
    CHECK_FALSE(decision.message.empty());
    CHECK(decision.message.find("PQfn is not for") == std::string::npos);
}

// Review 89: the default search_path begins with "$user", so for role agent an unqualified name
// resolves into a schema named agent first; and an unqualified call reaches a qualified denied
// function's schema through search_path.
TEST_CASE("names resolve as the server resolves them: \"$user\" and qualified denied functions", "[policy][evaluate]") {
    const auto policy = load_policy_string("version: 1\nrules:\n  - name: agents\n    protected_schemas: [agent]\n"
                                           "    read_only_tables: [\"ledgers.*\"]\n"
                                           "    denied_functions: [\"public.export_*\"]\n",
                                           "p");
    const auto decide = [&](const SessionInfo& session, const std::string& sql) {
        return evaluate_all(*policy, session, sql::analyze(sql));
    };
    const SessionInfo ledgers{"ledgers", "app", "psql", "10.1.2.3"};
    for (const char* write : {"INSERT INTO secret VALUES (1)", "UPDATE secret SET a = 1 WHERE id = 1",
                              "SELECT nextval('aseq')", "CREATE TEMP VIEW v AS SELECT * FROM secret"}) {
        INFO(write);
        const auto refused = decide(agent, write);
        CHECK(refused.action == Action::deny);
        CHECK(refused.guard == "protected_schemas");
        CHECK_THAT(refused.message, Catch::Contains("may resolve into protected schema agent"));
        // Qualified elsewhere, or another role (no schema of its name is protected): allowed.
        CHECK(decide(SessionInfo{"app", "app", "psql", "10.1.2.3"}, write).action == Action::allow);
    }
    CHECK(decide(agent, "INSERT INTO public.secret VALUES (1)").action == Action::allow);
    CHECK(decide(agent, "INSERT INTO pg_temp.scratch VALUES (1)").action == Action::allow);
    CHECK(decide(agent, "SELECT * FROM secret").action == Action::allow);  // reads are not guarded
    for (const char* path : {"SET search_path = \"$user\", public", "SET search_path = '$user'",
                             "SELECT set_config('search_path', '\"$user\"', false)"}) {
        INFO(path);
        CHECK(decide(agent, path).guard == "protected_schemas");
        CHECK(decide(SessionInfo{"app", "app", "psql", "10.1.2.3"}, path).action == Action::allow);
    }
    // A whole-schema read-only pattern guards the unqualified names of the role it is named like.
    CHECK(decide(ledgers, "UPDATE entries SET a = 1 WHERE id = 1").guard == "read_only_tables");
    CHECK(decide(SessionInfo{"app", "app", "psql", "10.1.2.3"}, "UPDATE entries SET a = 1 WHERE id = 1").action ==
          Action::allow);
    // "public.export_*" reaches an unqualified export_all().
    for (const char* call : {"SELECT export_all()", "SELECT public.export_all()", "SELECT * FROM export_all()"}) {
        INFO(call);
        CHECK(decide(agent, call).guard == "denied_functions");
    }
    CHECK(decide(agent, "SELECT other.export_all()").action == Action::allow);
    // Review 90: no false refusals. A qualified column is not a call of a qualified entry (the
    // built-in cron.schedule), an unqualified call does not reach a protected schema's function
    // (no search_path may name cron), a whole-schema entry is not every bare name, and a glob
    // protected schema is not matched against role names.
    for (const char* ordinary : {"SELECT s.schedule FROM shifts s", "SELECT schedule(1)", "SELECT now()"}) {
        INFO(ordinary);
        CHECK(evaluate_all(*default_policy(), agent, sql::analyze(ordinary)).action == Action::allow);
    }
    const auto whole_schema = load_policy_string("version: 1\nrules:\n  - name: all\n    denied_functions: [\"ext.*\"]\n"
                                                 "    protected_schemas: [\"app_*\"]\n",
                                                 "p");
    CHECK(evaluate_all(*whole_schema, owner, sql::analyze("SELECT lower('A'), now()")).action == Action::allow);
    CHECK(evaluate_all(*whole_schema, owner, sql::analyze("SELECT ext.f()")).guard == "denied_functions");
    CHECK(evaluate_all(*whole_schema, owner, sql::analyze("INSERT INTO t VALUES (1)")).action == Action::allow);
}

TEST_CASE("a refused CREATE of one object proposes the DROP that undoes it, not what replaces", "[policy][evaluate]") {
    const auto down_of = [](const std::string& sql) {
        const auto decision = evaluate_all(*default_policy(), agent, sql::analyze(sql));
        REQUIRE(decision.guard == "ddl");
        const auto comma = decision.message.rfind("', '");
        REQUIRE(comma != std::string::npos);
        return decision.message.substr(comma + 4, decision.message.size() - comma - 4 - 2);
    };
    CHECK(down_of("CREATE VIEW reporting.\"Totals\" AS SELECT 1") == "DROP VIEW reporting.\"Totals\"");
    CHECK(down_of("CREATE MATERIALIZED VIEW mv AS SELECT 1") == "DROP MATERIALIZED VIEW mv");
    CHECK(down_of("CREATE SEQUENCE order_numbers") == "DROP SEQUENCE order_numbers");
    CHECK(down_of("CREATE SCHEMA scratch") == "DROP SCHEMA scratch");
    CHECK(down_of("CREATE TYPE mood AS ENUM ('sad', 'ok')") == "DROP TYPE mood");
    CHECK(down_of("CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%')") == "DROP DOMAIN email");
    // With its arguments' types (review 102: `DROP FUNCTION f` fails where an overload exists).
    CHECK(down_of("CREATE FUNCTION app.total(a int) RETURNS int LANGUAGE sql AS 'SELECT a'") ==
          "DROP FUNCTION app.total(pg_catalog.int4)");
    CHECK(down_of("CREATE FUNCTION f(a text, OUT b int, VARIADIC c \"My Type\"[], d users.id%TYPE) LANGUAGE sql "
                  "AS 'SELECT 1'") == "DROP FUNCTION f(text, \"My Type\"[], users.id%TYPE)");
    CHECK(down_of("CREATE PROCEDURE tidy() LANGUAGE sql AS 'SELECT 1'") == "DROP PROCEDURE tidy()");
    CHECK(down_of("CREATE TRIGGER stamp BEFORE UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION f()") ==
          "DROP TRIGGER stamp ON app.items");
    // What was there before (OR REPLACE, IF NOT EXISTS) a DROP would not bring back.
    CHECK(down_of("CREATE OR REPLACE VIEW v AS SELECT 1") == "<SQL that undoes it>");
    CHECK(down_of("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'") == "<SQL that undoes it>");
    CHECK(down_of("CREATE SEQUENCE IF NOT EXISTS s") == "<SQL that undoes it>");
    CHECK(down_of("CREATE SCHEMA IF NOT EXISTS s") == "<SQL that undoes it>");
    CHECK(down_of("CREATE SCHEMA s CREATE TABLE t (a int)") == "<SQL that undoes it>");
}
