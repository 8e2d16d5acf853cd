// Fuzzes statement analysis: sql::analyze under each Lexing variant, what is computed from an
// analysis for the audit log (normalize, to_json), and the shipped policy's decision on it.
//
// Input: byte 0 chooses the Lexing (bit 0: standard_conforming_strings off, bit 1: a client-only
// encoding, bit 2: a converted encoding) and the session (bit 3: app_owner, the migrator rule,
// else agent); the rest is the query text.
// Properties: analyze never throws; its statements (and the ones they wrap) lie inside the text,
// in order, without overlapping; a text analysed twice gives the same analysis; the policy
// decides without throwing and names the rule and the statement that decided.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/json.hpp"
#include "pgrail/sql/normalize.hpp"

using namespace pgrail;

namespace {

void check_statement(const sql::Statement& statement, std::string_view text, sql::Lexing lexing) {
    PGRAIL_FUZZ_CHECK(statement.offset <= text.size() && statement.length <= text.size() - statement.offset);
    for (const auto& inner : statement.inner) check_statement(inner, text, lexing);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    sql::Lexing lexing;
    lexing.standard_conforming_strings = (data[0] & 1) == 0;
    lexing.client_only_encoding = (data[0] & 2) != 0;
    lexing.converted = (data[0] & 4) != 0;
    const std::string_view text = fuzz::as_text(data + 1, size - 1);

    const sql::Analysis analysis = sql::analyze(text, lexing);
    std::size_t end = 0;
    for (const auto& statement : analysis.statements) {
        PGRAIL_FUZZ_CHECK(statement.offset >= end);
        check_statement(statement, text, lexing);
        end = statement.offset + statement.length;
        // What the audit log renders of a statement (as it does: invalid UTF-8 replaced).
        const auto own_text = text.substr(statement.offset, statement.length);
        (void)sql::normalize(own_text, lexing);
        (void)sql::to_json(statement, text, lexing).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    PGRAIL_FUZZ_CHECK(sql::analyze(text, lexing) == analysis);

    policy::SessionInfo session;
    session.user = (data[0] & 8) != 0 ? "app_owner" : "agent";
    session.database = "app";
    session.client_address = "127.0.0.1";
    session.lexing = lexing;
    const auto decision = policy::evaluate_all(fuzz::default_policy(), session, analysis);
    PGRAIL_FUZZ_CHECK(!decision.rule.empty());
    if (!decision.allowed() && !analysis.statements.empty())
        PGRAIL_FUZZ_CHECK(decision.statement_index < analysis.statements.size());
    return 0;
}
