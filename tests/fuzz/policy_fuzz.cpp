// Fuzzes the policy loader (policy::load_policy_string: strict YAML through yaml-cpp), then
// decides a fixed set of statements and startup packets with every policy that loads.
// Properties: a bad policy is refused only with config::ConfigError (what SIGHUP reports and
// survives; any other exception escapes and is a finding), naming "name:line:column" or the
// name; a policy that loads has rules, its last rule matches every session, it summarises,
// and every decision names one of its rules, a refusal with pgrail's message.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_support.hpp"
#include "pgrail/config/yaml_reader.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail;

namespace {

// One statement of each kind a guard looks at, analysed once.
const std::vector<sql::Analysis>& statements() {
    static const std::vector<sql::Analysis> analyses = [] {
        std::vector<sql::Analysis> out;
        for (const char* text : {
                 "SELECT * FROM public.users WHERE id = 1",
                 "UPDATE accounts SET balance = 0",
                 "DELETE FROM app.orders WHERE id = 2",
                 "TRUNCATE audit_log",
                 "ALTER TABLE profiles ADD COLUMN timezone text",
                 "CREATE TEMP TABLE scratch (a int)",
                 "COPY users TO PROGRAM 'cat'",
                 "COPY users FROM '/etc/passwd'",
                 "SELECT pg_read_file('/etc/passwd')",
                 "SET search_path = evil, public",
                 "SELECT set_config('role', 'postgres', false)",
                 "ALTER SYSTEM SET work_mem = '1GB'",
                 "VACUUM users",
                 "BEGIN; INSERT INTO t VALUES (1); COMMIT",
                 "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
                 "SELECT * FROM pgrail.status()",
                 "SELECT * FROM pgrail.migrate_up('20261125090000')",
                 "SELEC broken",
             })
            out.push_back(sql::analyze(text));
        return out;
    }();
    return analyses;
}

std::vector<policy::SessionInfo> sessions() {
    std::vector<policy::SessionInfo> out(4);
    out[0] = {"agent", "app", "psql", "127.0.0.1", {}};
    out[1] = {"app_owner", "app", "migrate", "10.1.2.3", {}};
    out[2] = {"migrator", "postgres", "", "::1", {}};
    out[3] = {"x?*[", "", "", "/var/run/postgresql", {}};
    return out;
}

const std::vector<std::pair<std::string, std::string>> startup_params = {
    {"user", "agent"},       {"database", "app"},          {"application_name", "fuzz"},
    {"options", "-c search_path=x --statement_timeout=5 -c role=postgres"},
    {"replication", "database"}, {"session_replication_role", "replica"}, {"_pq_.x", "1"},
};

void check_decision(const policy::Policy& loaded, const policy::Decision& decision) {
    bool named = false;
    for (const auto& rule : loaded.rules) named = named || rule.name == decision.rule;
    PGRAIL_FUZZ_CHECK(named);
    if (decision.action == policy::Decision::Action::deny) PGRAIL_FUZZ_CHECK(!decision.message.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string yaml(fuzz::as_text(data, size));
    std::shared_ptr<const policy::Policy> loaded;
    try {
        loaded = policy::load_policy_string(yaml, "fuzz.yaml");
    } catch (const config::ConfigError& error) {
        PGRAIL_FUZZ_CHECK(std::string(error.what()).starts_with("fuzz.yaml"));
        return 0;
    }
    PGRAIL_FUZZ_CHECK(loaded != nullptr && !loaded->rules.empty());
    PGRAIL_FUZZ_CHECK(loaded->rules.back().match.matches_everything());
    (void)policy::summarize(*loaded);
    (void)policy::migrations_hint(*loaded);
    for (const auto& session : sessions()) {
        (void)loaded->rule_for(session);
        check_decision(*loaded, policy::evaluate_startup(*loaded, session, startup_params));
        check_decision(*loaded, policy::evaluate_function_call(*loaded, session, 764));
        for (const auto& analysis : statements()) {
            check_decision(*loaded, policy::evaluate_all(*loaded, session, analysis));
            for (const auto& statement : analysis.statements) check_decision(*loaded, policy::evaluate(*loaded, session, statement));
        }
    }
    return 0;
}
