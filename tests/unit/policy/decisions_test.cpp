// The decision table (tests/data/policy_decisions.txt): real SQL through sql::analyze() and the policy.
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

using namespace pgrail;
using namespace pgrail::policy;

namespace {

const std::string repository = PGRAIL_TEST_DATA "/../..";

std::string trim(std::string text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string::npos) return {};
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

struct Expected {
    std::string decision, rule, guard, sql;
    std::map<std::string, std::string> texts;  // message / detail / hint
    int line = 0;
};

class Table {
public:
    explicit Table(const std::string& path) : in_(path) { REQUIRE(in_); }

    void run() {
        std::string line;
        int number = 0;
        std::optional<Expected> pending;
        while (std::getline(in_, line)) {
            ++number;
            const auto text = trim(line);
            if (text.empty() || text.starts_with("#")) continue;
            if (pending && line.starts_with("  ") && is_text_line(text)) {
                const auto colon = text.find(':');
                pending->texts[text.substr(0, colon)] = trim(text.substr(colon + 1));
                continue;
            }
            if (pending) check(*pending);
            pending.reset();
            if (text.starts_with("policy ")) {
                policy_ = load_policy_file(repository + "/" + trim(text.substr(7)));
                registered_.clear();
            } else if (text.starts_with("session ")) {
                std::istringstream fields(text.substr(8));
                for (std::string field; fields >> field;) {
                    const auto eq = field.find('=');
                    REQUIRE(eq != std::string::npos);
                    const auto key = field.substr(0, eq), value = field.substr(eq + 1);
                    if (key == "user") session_.user = value;
                    else if (key == "database") session_.database = value;
                    else if (key == "application") session_.application_name = value;
                    else if (key == "client") session_.client_address = value;
                    else if (key == "standard_conforming_strings") session_.lexing.standard_conforming_strings = value == "on";
                    else if (key == "prepared_lock_keys") session_.prepared_lock_keys = value == "on";
                    else if (key == "prepared_executes") session_.prepared_executes = value == "on";
                    else FAIL("unknown session field " << key << " at line " << number);
                }
            } else if (text.starts_with("registered ")) {
                // registered [version=V] [name=N] [down] SQL: a statement of a registered migration
                // (of its down script with `down`), in the state where it matches.
                std::string rest = text.substr(11);
                RegisteredStatement migration{"1", "registered", false};
                for (bool more = true; more;) {
                    more = false;
                    const auto space = rest.find(' ');
                    const auto word = rest.substr(0, space);
                    if (word.starts_with("version=")) migration.version = word.substr(8);
                    else if (word.starts_with("name=")) migration.name = word.substr(5);
                    else if (word == "down") migration.rollback = true;
                    else break;
                    rest = rest.substr(space + 1);
                    more = true;
                }
                const auto analysis = sql::analyze(rest);
                INFO("registered statement at line " << number);
                REQUIRE(analysis.statements.size() == 1);
                REQUIRE(analysis.statements[0].statement_class == sql::StatementClass::ddl);
                registered_[analysis.statements[0].structural_form] = migration;
            } else {
                const auto bar = text.find(" | ");
                INFO("line " << number << ": " << text);
                REQUIRE(bar != std::string::npos);
                std::istringstream head(text.substr(0, bar));
                Expected expected;
                head >> expected.decision >> expected.rule >> expected.guard;
                expected.sql = text.substr(bar + 3);
                expected.line = number;
                pending = std::move(expected);
            }
        }
        if (pending) check(*pending);
    }

    int cases() const { return cases_; }

private:
    static bool is_text_line(const std::string& text) {
        return text.starts_with("message:") || text.starts_with("detail:") || text.starts_with("hint:");
    }

    Decision decide(const std::string& query) const {
        if (query.starts_with("startup: ")) {
            const auto assignment = query.substr(9);
            const auto eq = assignment.find('=');
            return evaluate_startup(*policy_, session_, {{assignment.substr(0, eq), assignment.substr(eq + 1)}});
        }
        const MigrationMatcher matcher = [this](const sql::Statement& statement) -> std::optional<RegisteredStatement> {
            const auto found = registered_.find(statement.structural_form);
            if (found == registered_.end()) return std::nullopt;
            return found->second;
        };
        return evaluate_all(*policy_, session_, sql::analyze(query, session_.lexing), &matcher);
    }

    void check(const Expected& expected) {
        ++cases_;
        REQUIRE(policy_);
        const auto decision = decide(expected.sql);
        std::string got = to_string(decision.action);
        if (decision.action == Decision::Action::deny && !decision.enforced) got = "would-deny";
        const std::string got_guard = decision.action == Decision::Action::intercept
                                          ? std::string(pgrail::sql::name_of(decision.command))
                                          : decision.guard;
        INFO("policy_decisions.txt:" << expected.line << ": " << expected.sql);
        INFO("got: " << got << " " << decision.rule << " " << got_guard << "\n  message: " << decision.message
                     << "\n  detail: " << decision.detail << "\n  hint: " << decision.hint);
        CHECK(got == expected.decision);
        CHECK(decision.rule == expected.rule);
        CHECK(got_guard == expected.guard);
        for (const auto& [field, text] : expected.texts) {
            const auto& actual = field == "message" ? decision.message : field == "detail" ? decision.detail : decision.hint;
            CHECK(actual == text);
        }
        if (decision.action == Decision::Action::deny) CHECK(decision.message.starts_with("pgrail: "));
    }

    std::ifstream in_;
    std::shared_ptr<const Policy> policy_;
    SessionInfo session_;
    std::map<std::string, RegisteredStatement> registered_;
    int cases_ = 0;
};

}  // namespace

TEST_CASE("policy decisions (tests/data/policy_decisions.txt)", "[policy][decisions]") {
    Table table(PGRAIL_TEST_DATA "/policy_decisions.txt");
    table.run();
    CHECK(table.cases() >= 80);
}
