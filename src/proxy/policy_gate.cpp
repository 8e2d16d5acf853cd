// Enforcing the policy: analyse (cached), decide (pure), audit (durable), then answer.
#include "pgrail/proxy/policy_gate.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "pgrail/proxy/metrics.hpp"
#include "pgrail/proxy/token_bucket.hpp"
#include "refusal_ring.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/json.hpp"
#include "pgrail/sql/literal_shape.hpp"
#include "pgrail/sql/normalize.hpp"
#include "pgrail/sql/quote.hpp"
#include "pgrail/sql/pgrail_command.hpp"

namespace pgrail::proxy {

namespace {

protocol::ErrorMessage error_of(const policy::Decision& decision) {
    return {"ERROR", decision.sqlstate, decision.message, decision.detail, decision.hint};
}


// What every refusal's audit line says of the decision.
void add_decision_fields(nlohmann::json& event, const policy::Decision& decision) {
    event["rule"] = decision.rule;
    event["guard"] = decision.guard;
    event["decision"] = "deny";
    event["sqlstate"] = decision.sqlstate;
    event["message"] = decision.message;
    if (!decision.columns.empty()) event["columns"] = decision.columns;
}

// PostgreSQL's scanner and parser quote the text where they failed (`unterminated quoted string
// at or near "'secret`): with literals redacted, the audit keeps such messages without it.
std::string without_quoted_text(std::string_view message) {
    return std::string(message.substr(0, message.find(" at or near \"")));
}

// A refusal's line costs a bounded number of bytes whatever the statement's size: an agent that
// repeats refusals must not fill the audit volume (a full one stops every session's refusals).
constexpr std::size_t audit_statement_bytes = 4096;
constexpr std::size_t audit_message_bytes = 1024;
constexpr std::size_t audit_objects = 32;

// The longest prefix of `text` of at most `max` bytes that ends between UTF-8 characters.
std::string_view whole_characters(std::string_view text, std::size_t max) {
    if (text.size() <= max) return text;
    std::size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    return text.substr(0, end);
}

// `text` cut to at most `max` bytes of whole characters, "..." marking the cut.
std::string clipped(const std::string& text, std::size_t max) {
    if (text.size() <= max) return text;
    return std::string(whole_characters(text, max)) + "...";
}

void clip_refusal(nlohmann::json& event, std::size_t statement_size) {
    if (auto& objects = event["objects"]; objects.is_array() && objects.size() > audit_objects) {
        event["objects_omitted"] = objects.size() - audit_objects;
        objects.erase(objects.begin() + static_cast<std::ptrdiff_t>(audit_objects), objects.end());
    }
    if (auto& statement = event["statement"]; statement.is_string() && statement.get_ref<const std::string&>().size() > audit_statement_bytes) {
        statement = clipped(statement.get<std::string>(), audit_statement_bytes);
        event["statement_bytes"] = statement_size;
    }
    if (auto& message = event["message"]; message.is_string()) message = clipped(message.get<std::string>(), audit_message_bytes);
}

// How much of its time an I/O thread may spend on checks while it still analyses new texts of
// up to inline_text_max itself (PolicyGate::check_here): a hand-off to the analysis pool costs two
// thread wake-ups, which on a 2-core machine cost a 2 KB text more latency (100-150 us) than its
// analysis (50-90 us); but while a thread analyses, its other sessions wait. So the thread keeps a
// budget of check time, `inline_share` of its time with `inline_burst_seconds` in hand; every
// check is charged to it, and while it is spent new texts go to the pool.
constexpr double inline_share = 0.25;
constexpr double inline_burst_seconds = 0.002;

// Times a check for /metrics and charges it to the thread's inline budget, refilled first, so
// that what the thread earned is counted up to each check and never past the burst. The debt is
// bounded by the burst, or by one check's cost when longer: a thread recovers within burst /
// share (8 ms) of many checks, and pays a long one in full.
struct GateTimer {
    explicit GateTimer(TokenBucket& thread_budget) : budget(thread_budget) {}
    GateTimer(const GateTimer&) = delete;
    GateTimer& operator=(const GateTimer&) = delete;
    ~GateTimer() {
        const auto spent = std::chrono::steady_clock::now() - started;
        metrics().gate_seconds.observe(spent);
        budget.refill(inline_share, inline_burst_seconds, started);
        const double seconds = std::chrono::duration<double>(spent).count();
        budget.tokens = std::max(-std::max(inline_burst_seconds, seconds), budget.tokens - seconds);
    }
    TokenBucket& budget;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// Counts a text's decision for /metrics: the rule, the decision and the deciding statement's class.
void count(const policy::Decision& decision, const sql::Analysis& analysis) {
    const char* decision_name = decision.action == policy::Decision::Action::allow    ? "allow"
                                : decision.action == policy::Decision::Action::intercept ? "command"
                                : decision.enforced                                     ? "deny"
                                                                                        : "would_deny";
    const char* statement_class = decision.statement_index < analysis.statements.size()
                                      ? sql::to_string(analysis.statements[decision.statement_index].statement_class)
                                      : "unknown";
    metrics().count_statement(decision.rule, decision_name, statement_class);
    if (decision.action == policy::Decision::Action::deny) metrics().count_refusal(decision.rule, decision.guard);
}

// Whether an allowed text changes the schema: it is audited before it is forwarded.
bool changes_schema(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(),
                       [](const sql::Statement& statement) { return policy::changes_schema(statement); });
}

bool forgets(const sql::Statement& statement) {
    if (statement.tag == "DEALLOCATE" || statement.tag == "DEALLOCATE ALL" || statement.tag == "DISCARD ALL") return true;
    return std::any_of(statement.inner.begin(), statement.inner.end(), forgets);
}

// What a statement leaves the session that later texts rely on without its being read again
// (GateVerdict::keeps_for_later), at any depth (a DO block's EXECUTE acts for the session): a
// PREPARE, a DECLARE CURSOR, a setting changed (SET, RESET, set_config: a search_path into a
// schema a reload protects), any DDL (a rule that allowed it may have made temporary functions,
// procedures or domains; a DO block's dynamic SQL too), a COPY (its rows come later), a statement
// pgrail could not read or does not know. For a refused text, only the statements before the
// refused one count (they run; the rest does not).
bool keeps(const sql::Statement& statement) {
    return statement.tag == "PREPARE" || statement.tag == "DECLARE CURSOR" || statement.tag == "COPY" ||
           !statement.settings.empty() || statement.statement_class == sql::StatementClass::ddl ||
           statement.statement_class == sql::StatementClass::unknown || statement.flags.ddl_capable_dynamic ||
           statement.error.has_value() || std::any_of(statement.inner.begin(), statement.inner.end(), keeps);
}

// A text pgrail could not read whole (forwarded under audit_only or on_parse_error: allow) may
// have done any of it.
bool keeps_for_later(const sql::Analysis& analysis) {
    return analysis.error.has_value() || std::any_of(analysis.statements.begin(), analysis.statements.end(), keeps);
}

// The parameters whose values are advisory lock keys ("$n": GateVerdict::bound_lock_keys), at any
// depth. (The analyzer counts a $n past the 65535 values a Bind carries as computed.)
void add_bound_lock_keys(const sql::Statement& statement, std::vector<std::uint16_t>& numbers) {
    for (const std::string& key : statement.advisory_lock_keys) {
        unsigned number = 0;
        if (!key.starts_with('$') ||
            std::from_chars(key.data() + 1, key.data() + key.size(), number).ec != std::errc() || number == 0 ||
            number > 65535)
            continue;
        if (std::find(numbers.begin(), numbers.end(), number) == numbers.end())
            numbers.push_back(static_cast<std::uint16_t>(number));
    }
    for (const auto& inner : statement.inner) add_bound_lock_keys(inner, numbers);
}

std::vector<std::uint16_t> bound_lock_keys_of(const sql::Analysis& analysis) {
    std::vector<std::uint16_t> numbers;
    for (const auto& statement : analysis.statements) add_bound_lock_keys(statement, numbers);
    return numbers;
}

// Whether a text may drop prepared statements (DEALLOCATE, DISCARD ALL): the session then
// forgets the statements it knows to read pgrail commands, whose names may be gone or reused.
bool forgets_prepared(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(), forgets);
}

// Whether a text may change the session's client_encoding (GateVerdict::changes_encoding).
bool changes_encoding(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(), sql::may_change_client_encoding);
}

bool runs_prepared(const sql::Statement& statement) {
    return statement.flags.executes_prepared || std::any_of(statement.inner.begin(), statement.inner.end(), runs_prepared);
}

// Whether a text runs a prepared statement by SQL EXECUTE (GateVerdict::executes_prepared).
bool executes_prepared(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(), runs_prepared);
}


// Whether every change of client_encoding a statement may make sets `current`, the one in force
// (pg_restore's and drivers' SET client_encoding = 'UTF8'): no reset, no computed name or value.
bool sets_only(const sql::Statement& statement, const std::string& current) {
    if (statement.tag == "DISCARD ALL") return false;
    for (const auto& setting : statement.settings) {
        if (setting.name == "all" || setting.name == "*") return false;
        if (setting.name == "client_encoding" && (setting.value == "*" || sql::encoding_key(setting.value) != current))
            return false;
    }
    return std::all_of(statement.inner.begin(), statement.inner.end(),
                       [&](const sql::Statement& inner) { return sets_only(inner, current); });
}

// A text that may change client_encoding, but sets only the one in force while no change is on
// its way: nothing for the session to follow.
bool keeps_encoding(const sql::Analysis& analysis, const SessionContext& session) {
    if (session.lexing.encoding_pending || session.client_encoding.empty()) return false;
    const std::string current = sql::encoding_key(session.client_encoding);
    return std::all_of(analysis.statements.begin(), analysis.statements.end(),
                       [&](const sql::Statement& statement) { return sets_only(statement, current); });
}

// The names of the temporary relations a text makes (GateVerdict::temporary_relations). A
// temporary relation altered (renamed: `ALTER TABLE pg_temp.x RENAME TO profiles`) may take any
// name: "*", every unqualified name counts from then on.
void add_temporary_relations(const sql::Statement& statement, std::vector<std::string>& names) {
    for (const auto& object : statement.objects) {
        if (!object.temporary) continue;
        const std::string name = object.role == sql::ObjectRole::altered ? "*" : object.name;
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    for (const auto& inner : statement.inner) add_temporary_relations(inner, names);
}

std::vector<std::string> temporary_relations_of(const sql::Analysis& analysis) {
    std::vector<std::string> names;
    for (const auto& statement : analysis.statements) add_temporary_relations(statement, names);
    return names;
}

// Whether a statement (or one inside it) makes a temporary object other than a relation: a
// type or a domain, which pg_temp being searched first lets shadow the catalog's types.
bool makes_temporary_types(const sql::Statement& statement) {
    const bool makes = std::any_of(statement.objects.begin(), statement.objects.end(), [](const sql::ObjectRef& object) {
        return object.temporary && object.role != sql::ObjectRole::read && object.kind != "table" &&
               object.kind != "index" && object.kind != "view" && object.kind != "sequence" &&
               object.kind != "relation" && object.kind != "materialized view";
    });
    return makes || std::any_of(statement.inner.begin(), statement.inner.end(),
                                [](const sql::Statement& inner) { return makes_temporary_types(inner); });
}

bool makes_temporary_types(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(),
                       [](const sql::Statement& statement) { return makes_temporary_types(statement); });
}

// A search_path that resolves unqualified names as a role's usual one does: public, maybe after
// "$user", maybe followed by pg_temp, where naming it changes nothing. Named anywhere else, the
// implicit schemas change where names go: pg_temp before public makes an unqualified CREATE a
// temporary object (`SET search_path = pg_temp, public; CREATE TABLE t ...` makes pg_temp_N.t),
// and pg_catalog named at all moves it there when first, or lets public's functions and types
// shadow the catalog's when after (checked with PostgreSQL 15).
bool usual_search_path(const std::string& path) {
    const auto schemas = sql::split_identifiers(path, ',');
    if (!schemas) return false;
    std::vector<std::string> named;
    for (const auto& schema : *schemas) {
        if (schema == "pg_catalog") return false;
        if (schema == "pg_temp") {
            if (named.empty() || named.back() != "public") return false;
        } else {
            named.push_back(schema);
        }
    }
    return named == std::vector<std::string>{"public"} || named == std::vector<std::string>{"$user", "public"};
}

// Whether a statement (or one inside it) sets a search_path other than a usual one, or one that
// is not a constant, or a setting whose name is not a constant (SessionContext::search_path_elsewhere).
// (A RESET returns to the session's startup value, which is judged when the session starts.)
bool sets_search_path_elsewhere(const sql::Statement& statement) {
    for (const auto& setting : statement.settings) {
        if (setting.name == "*") return true;
        if (setting.name == "search_path" && !setting.value.empty() && !usual_search_path(setting.value)) return true;
    }
    return std::any_of(statement.inner.begin(), statement.inner.end(), sets_search_path_elsewhere);
}

bool sets_search_path_elsewhere(const sql::Analysis& analysis) {
    return std::any_of(analysis.statements.begin(), analysis.statements.end(),
                       [](const sql::Statement& statement) { return sets_search_path_elsewhere(statement); });
}

}  // namespace

// What a verdict takes from an analysis besides the policy's decision: the same for every
// session, so the thread's slots keep it beside their analysis (decide() runs per statement).
struct PolicyGate::AnalysisFacts {
    explicit AnalysisFacts(const sql::Analysis& analysis)
        : changes_schema(proxy::changes_schema(analysis)),
          forgets_prepared(proxy::forgets_prepared(analysis)),
          changes_encoding(proxy::changes_encoding(analysis)),
          executes_prepared(proxy::executes_prepared(analysis)),
          sets_search_path_elsewhere(proxy::sets_search_path_elsewhere(analysis)),
          makes_temporary_types(proxy::makes_temporary_types(analysis)),
          keeps_for_later(proxy::keeps_for_later(analysis)),
          temporary_relations(temporary_relations_of(analysis)),
          bound_lock_keys(bound_lock_keys_of(analysis)) {}
    // What the verdict on a text that runs (in part, if refused) says of it.
    void describe(GateVerdict& verdict, bool allowed) const {
        verdict.changes_encoding = changes_encoding;
        verdict.executes_prepared = executes_prepared;
        // (What a refused text's first statements make or set counts too: they run.)
        verdict.temporary_relations = temporary_relations;
        verdict.sets_search_path_elsewhere = sets_search_path_elsewhere;
        verdict.makes_temporary_types = makes_temporary_types;
        verdict.keeps_for_later = keeps_for_later;
        if (allowed) {
            verdict.forgets_prepared = forgets_prepared;
            verdict.bound_lock_keys = bound_lock_keys;
        }
    }
    bool changes_schema;
    bool forgets_prepared;
    bool changes_encoding;
    bool executes_prepared;
    bool sets_search_path_elsewhere;
    bool makes_temporary_types;
    bool keeps_for_later;
    std::vector<std::string> temporary_relations;
    std::vector<std::uint16_t> bound_lock_keys;
};

namespace {

// Whether `text` holds `name` as a word (letters, digits, _ and $ around it are not), in any
// case: a conservative reading of where a name appears (in a literal or a comment too).
bool holds_word(std::string_view text, std::string_view name) {
    const auto word_byte = [](char c) {
        const auto byte = static_cast<unsigned char>(c);
        return std::isalnum(byte) != 0 || c == '_' || c == '$' || byte >= 0x80;
    };
    if (name.empty() || name.size() > text.size()) return false;
    for (std::size_t at = 0; at + name.size() <= text.size(); ++at) {
        if (at > 0 && word_byte(text[at - 1])) continue;
        if (at + name.size() < text.size() && word_byte(text[at + name.size()])) continue;
        bool equal = true;
        for (std::size_t i = 0; i < name.size() && equal; ++i)
            equal = std::tolower(static_cast<unsigned char>(text[at + i])) == std::tolower(static_cast<unsigned char>(name[i]));
        if (equal) return true;
    }
    return false;
}

// A registered migration's statement that names, unqualified, a relation the session (or the
// text before it) made temporary, or that runs under a search_path other than a role's usual
// one: the server would resolve the name to another relation than the runner's connection would
// (pg_temp comes first), and the ledger would record a migration applied that never reached the
// schema. Its index, and the refusal's message; nothing when none does.
std::optional<std::pair<std::size_t, std::string>> shadowed_migrator_statement(const policy::MigrationMatcher* matcher,
                                                                                const sql::Analysis& analysis,
                                                                                const SessionContext& session,
                                                                                std::string_view sql) {
    if (matcher == nullptr || !*matcher) return std::nullopt;
    const auto& statements = analysis.statements;
    if (std::none_of(statements.begin(), statements.end(),
                     [](const sql::Statement& statement) { return policy::changes_schema(statement); }))
        return std::nullopt;  // (every read: nothing to match)
    // The session's temporary relations, and those the text's earlier statements make.
    std::vector<std::string> temporary = session.temporary_relations;
    bool elsewhere = session.search_path_elsewhere;
    bool types = session.temporary_types;
    for (std::size_t index = 0; index < analysis.statements.size(); ++index) {
        const auto& statement = analysis.statements[index];
        if (policy::changes_schema(statement) && (*matcher)(statement)) {
            if (types)
                return std::pair{index, std::string("pgrail: this session made a temporary type, which a registered "
                                                    "migration's type names would reach before the catalog's")};
            // A temporary relation's row type is a type of its name, and pg_temp is searched first
            // for types too: a registered statement that names it anywhere (a column's type) may
            // reach it. Past the names known, any may.
            const auto text = sql.substr(std::min(statement.offset, sql.size()), statement.length);
            for (const auto& name : temporary)
                if (name != "*" && holds_word(text, name))
                    return std::pair{index, fmt::format("pgrail: this session made a temporary relation named "
                                                        "\"{}\", which a registered migration's name (of a relation "
                                                        "or of a type) would reach first",
                                                        name)};
            if (session.many_temporary_relations || std::find(temporary.begin(), temporary.end(), "*") != temporary.end())
                return std::pair{index, std::string("pgrail: this session altered a temporary relation or made many, "
                                                    "which a registered migration's names may reach first")};
            // (An unqualified relation name the session made temporary is a word of the text: above.)
            for (const auto& object : statement.objects) {
                if (!object.schema.empty() || object.temporary) continue;
                if (elsewhere)
                    return std::pair{index, fmt::format("pgrail: this session set a search_path other than public: a "
                                                        "registered migration's unqualified name \"{}\" may reach "
                                                        "another schema's relation than the one it was written for",
                                                        object.name)};
            }
        }
        add_temporary_relations(statement, temporary);
        elsewhere = elsewhere || sets_search_path_elsewhere(statement);
        types = types || makes_temporary_types(statement);
    }
    return std::nullopt;
}

// An unqualified DROP of relations this session (or the text before it) made temporary stays
// refused: the temporary relation may be gone (a rollback, DISCARD TEMP, a drop by a function),
// and the name then reaches the schema's relation. But the agent is told the certain way, the
// name qualified with pg_temp, instead of being sent to propose a migration for a scratch table.
void advise_temporary_drop(policy::Decision& decision, const sql::Analysis& analysis, const SessionContext& session) {
    if (decision.guard != "ddl" || decision.statement_index >= analysis.statements.size()) return;
    const auto& statement = analysis.statements[decision.statement_index];
    std::vector<std::string> temporary = session.temporary_relations;
    for (std::size_t index = 0; index < decision.statement_index; ++index)
        add_temporary_relations(analysis.statements[index], temporary);
    static constexpr std::array<std::string_view, 5> relation_kinds = {"table", "view", "materialized view",
                                                                         "sequence", "index"};
    std::vector<std::string> qualified;
    for (const auto& object : statement.objects) {
        if (object.role != sql::ObjectRole::dropped) continue;
        if (!object.schema.empty() || std::find(temporary.begin(), temporary.end(), object.name) == temporary.end() ||
            std::find(relation_kinds.begin(), relation_kinds.end(), object.kind) == relation_kinds.end())
            return;
        qualified.push_back(sql::quote_qualified("pg_temp", object.name));
    }
    if (qualified.empty()) return;
    const auto names = fmt::format("{}", fmt::join(qualified, ", "));
    decision.message = fmt::format("pgrail: {} refused: an unqualified name may reach a permanent relation; to drop the "
                                   "temporary one this session made, name it {}",
                                   statement.tag, names);
    decision.hint = fmt::format("Send {} {}. pgrail cannot tell whether the temporary relation still exists (a "
                                "rollback, DISCARD TEMP or a drop ends it, and the unqualified name then reaches the "
                                "schema's). A permanent relation is dropped only through a migration: "
                                "pgrail.propose_migration(name, up_sql, down_sql).",
                                statement.tag, names);
}

// The allowed schema changes that are a registered migration's statements: the session follows
// them to their commit, and the ledger records a script run to its end (docs/migrations.md).
std::vector<MigratorStatement> migrator_statements(const policy::MigrationMatcher* matcher,
                                                   const sql::Analysis& analysis) {
    std::vector<MigratorStatement> out;
    if (matcher == nullptr || !*matcher) return out;
    for (std::size_t index = 0; index < analysis.statements.size(); ++index) {
        const auto& statement = analysis.statements[index];
        if (!policy::changes_schema(statement)) continue;
        auto found = (*matcher)(statement);
        if (!found) continue;
        out.push_back({index, std::move(found->version),
                       found->rollback ? migrations::Direction::down : migrations::Direction::up,
                       statement.structural_form, statement.tag});
    }
    return out;
}

// The shared cache's analysis of `sql`, counted for /metrics: a hit, or a miss and the fresh
// analysis's time. (A miss looks twice: it costs tens of microseconds anyway.) Where no analysis
// may run (`may_analyse()`, asked on a miss), a miss is null, and counted where the text is analysed.
template <class MayAnalyse>
std::shared_ptr<const sql::Analysis> shared_analysis(sql::AnalysisCache& cache, std::string_view sql,
                                                     MayAnalyse&& may_analyse) {
    if (auto found = cache.find(sql)) {
        metrics().count_cache(GateCache::shared_text, true);
        return found;
    }
    if (!may_analyse()) return nullptr;
    metrics().count_cache(GateCache::shared_text, false);
    const auto started = std::chrono::steady_clock::now();
    auto analysis = cache.analyze(sql);
    metrics().analysis_seconds.observe(std::chrono::steady_clock::now() - started);
    return analysis;
}

// A fresh analysis past the caches (a session lexed otherwise), timed for /metrics.
sql::Analysis timed_analysis(std::string_view sql, sql::Lexing lexing) {
    const auto started = std::chrono::steady_clock::now();
    auto analysis = sql::analyze(sql, lexing);
    metrics().analysis_seconds.observe(std::chrono::steady_clock::now() - started);
    return analysis;
}

// The size of an event's audit line (a refusal's, which its login pays for: refusal_pacer.hpp).
// (Measured as the audit writes it: a name or an application_name with invalid UTF-8 in it is
// replaced there, and a strict dump would throw.)
std::size_t line_bytes(const nlohmann::json& event) {
    return event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size() + 1;
}

// Statements longer than this skip the per-thread caches; what their slots hold in all (texts
// and analyses, which outlive the shared cache's eviction) is bounded per thread, by text and by
// shape each: an agent's texts can make analyses of tens of times their size.
constexpr std::size_t front_cache_max_text = 4096;
constexpr std::size_t front_cache_slots = 512;
constexpr std::size_t shape_cache_slots = 512;
constexpr std::size_t front_cache_max_bytes = std::size_t{4} << 20;
// New texts up to this size are analysed on the I/O thread while its inline budget lasts and
// PostgreSQL's scanner reads them in linear time (sql::scans_in_linear_time): the analysis of 4 KB
// takes about 100-200 us, what the thread's other sessions wait for one.
constexpr std::size_t inline_text_max = 4096;
static_assert(inline_text_max <= front_cache_max_text, "a text analysed on the thread lands in its cache");

}  // namespace

// A client's application_name as PostgreSQL shows it (pg_stat_activity keeps 63 bytes): the audit
// line of a refusal costs no more than the client's few bytes of it. (user and database are cut
// to 63 bytes when the startup packet is read, as the server cuts them.)
std::string shown_application_name(std::string_view name) {
    // As pg_stat_activity shows it: each byte outside printable ASCII a '?' (PostgreSQL's
    // pg_clean_ascii), at most 63 bytes.
    std::string shown(name.substr(0, 63));
    for (char& c : shown)
        if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
    return shown;
}

nlohmann::json session_fields(const SessionContext& session) {
    return {{"session_id", session.session_id},
            {"client_address", session.client_address},
            {"user", session.user},
            {"identity", session.identity.empty() ? session.user : session.identity},
            {"database", session.database},
            {"application_name", shown_application_name(session.application_name)}};
}

struct PolicyGate::ThreadState {
    const PolicyGate* owner = nullptr;
    std::uint64_t generation = 0;
    std::shared_ptr<const policy::Policy> policy;
    std::shared_ptr<const policy::MigrationMatcher> matcher;
    std::string migrations_database;
    struct Slot {
        std::string text;
        std::shared_ptr<const sql::Analysis> analysis;
        std::optional<AnalysisFacts> facts;  // (of `analysis`)
        std::size_t bytes = 0;  // sql::footprint() of the text and analysis
    };
    std::array<Slot, front_cache_slots> slots;
    std::size_t slots_bytes = 0;
    struct ShapeSlot {
        std::string shape;  // sql::literal_shape() of the text analysed
        std::shared_ptr<const sql::Analysis> analysis;
        std::optional<AnalysisFacts> facts;
        std::size_t bytes = 0;
    };
    std::array<ShapeSlot, shape_cache_slots> shape_slots;
    std::size_t shape_slots_bytes = 0;
    TokenBucket inline_budget{inline_burst_seconds};  // seconds of checks (inline_share)
};

PolicyGate::ThreadState& PolicyGate::thread_state() {
    thread_local ThreadState state;
    if (state.owner != this) {
        state = ThreadState{};
        state.owner = this;
    }
    const auto generation = generation_.load(std::memory_order_acquire);
    if (state.generation != generation) {
        std::lock_guard lock(policy_mutex_);
        state.policy = policy_;
        state.matcher = matcher_;
        state.migrations_database = migrations_database_;
        state.generation = generation_.load(std::memory_order_relaxed);
    }
    return state;
}

PolicyGate::PolicyGate(std::shared_ptr<const policy::Policy> policy, std::shared_ptr<audit::AuditLog> audit_log,
                       bool redact_literals, std::size_t max_analyzed_size)
    : policy_(std::move(policy)), audit_log_(std::move(audit_log)), redact_literals_(redact_literals),
      max_analyzed_size_(max_analyzed_size) {}

void PolicyGate::replace_policy(std::shared_ptr<const policy::Policy> policy) {
    std::lock_guard lock(policy_mutex_);
    policy_ = std::move(policy);
    generation_.fetch_add(1, std::memory_order_release);
}

void PolicyGate::set_migration_matcher(std::string database,
                                       std::shared_ptr<const policy::MigrationMatcher> matcher) {
    std::lock_guard lock(policy_mutex_);
    matcher_ = std::move(matcher);
    migrations_database_ = std::move(database);
    generation_.fetch_add(1, std::memory_order_release);
}

bool PolicyGate::rule_changed(const SessionContext& session, PolicyHold& held) {
    const auto generation = generation_.load(std::memory_order_acquire);
    if (generation == held.generation) return false;  // the hot path: one load
    auto policy = current_policy();
    if (session.holds_checked_work && held.policy && policy != held.policy &&
        !held.policy->decides_alike(*policy, session))
        return true;
    held.generation = generation;
    held.policy = std::move(policy);
    return false;
}

std::shared_ptr<const policy::Policy> PolicyGate::current_policy() const {
    std::lock_guard lock(policy_mutex_);
    return policy_;
}

std::optional<GateVerdict> PolicyGate::check_here(const SessionContext& session, std::string_view sql) {
    auto& state = thread_state();
    // (The rule first: sessions of rules without sensitive columns take no lock here.)
    if (const auto& policy = *state.policy; catalogs_ && policy.has_result_guards &&
                                            !policy.rule_for(session).guards.sensitive.empty() &&
                                            !catalogs_->ready(session.database))
        return std::nullopt;
    return checked(session, state, sql, sql.size() <= inline_text_max ? MayAnalyse::if_cheap : MayAnalyse::no);
}

GateVerdict PolicyGate::check(const SessionContext& session, std::string_view sql) {
    GateVerdict verdict = check_deferred(session, sql);
    settle_audit(verdict);
    return verdict;
}

GateVerdict PolicyGate::check_deferred(const SessionContext& session, std::string_view sql) {
    return *checked(session, thread_state(), sql, MayAnalyse::yes);
}

std::optional<GateVerdict> PolicyGate::checked(const SessionContext& session, ThreadState& state,
                                               std::string_view sql, MayAnalyse may) {
    const GateTimer timer(state.inline_budget);
    // Asked only when the caches miss: whether this thread may work on the text now (its budget),
    // and whether it may analyse it (also: the text scans in linear time).
    const auto within_budget = [&] {
        if (may != MayAnalyse::if_cheap) return may == MayAnalyse::yes;
        state.inline_budget.refill(inline_share, inline_burst_seconds, std::chrono::steady_clock::now());
        return state.inline_budget.tokens > 0;
    };
    const auto may_analyse = [&] {
        return within_budget() && (may != MayAnalyse::if_cheap || sql::scans_in_linear_time(sql));
    };
    if (sql.size() > max_analyzed_size_)
        return decide(session, state, sql::too_long_to_analyse(sql.size(), max_analyzed_size_), sql);
    // A session the server lexes otherwise (standard_conforming_strings off, a client-only
    // encoding) is analysed as the server reads it, past the caches, which hold analyses under
    // the default lexing. Such sessions are rare.
    if (session.lexing != sql::Lexing{}) {
        if (!may_analyse()) return std::nullopt;
        return decide(session, state, timed_analysis(sql, session.lexing), sql);
    }
    if (sql.size() > front_cache_max_text) {
        const auto analysis = shared_analysis(cache_, sql, may_analyse);
        if (!analysis) return std::nullopt;
        return decide(session, state, *analysis, sql);
    }
    auto& slot = state.slots[std::hash<std::string_view>{}(sql) % front_cache_slots];
    if (slot.analysis && slot.text == sql) {
        metrics().count_cache(GateCache::thread_text, true);
        return decide(session, state, *slot.analysis, sql, &*slot.facts);
    }

    // A new text may be a known statement with other values (clients that inline them send
    // a new text every time): an analysis that reads no literal decides for the whole shape.
    // It may only allow: a refusal or a command needs the exact text's offsets and values.
    // (Where no analysis may run, the shared cache alone is asked: the thread that analyses the
    // text tries its shape.)
    // (literal_shape is pgrail's own scanner, linear in any text: the shape is looked up before
    // the text is asked whether PostgreSQL's scanner reads it in linear time.)
    const bool budget = within_budget();
    std::optional<std::string> shape;
    ThreadState::ShapeSlot* shaped = nullptr;
    if (budget) shape = sql::literal_shape(sql);
    if (shape) {
        shaped = &state.shape_slots[std::hash<std::string>{}(*shape) % shape_cache_slots];
        // (Not under sensitive_columns: an allow there may mask, and a masking is audited.)
        if (shaped->analysis && shaped->shape == *shape && !state.policy->has_sensitive_columns) {
            const auto decision = policy::evaluate_all(*state.policy, session, *shaped->analysis, nullptr);
            if (decision.action == policy::Decision::Action::allow) {
                metrics().count_cache(GateCache::thread_text, false);
                metrics().count_cache(GateCache::thread_shape, true);
                count(decision, *shaped->analysis);
                std::optional<GateVerdict> verdict(std::in_place);
                shaped->facts->describe(*verdict, true);
                return verdict;
            }
        }
    }
    const bool analyse = budget && (may != MayAnalyse::if_cheap || sql::scans_in_linear_time(sql));
    auto analysis = shared_analysis(cache_, sql, [analyse] { return analyse; });
    if (!analysis) return std::nullopt;  // (counted where it is analysed)
    metrics().count_cache(GateCache::thread_text, false);
    if (shape) metrics().count_cache(GateCache::thread_shape, false);
    // Kept while the thread's slots stay within their bound (the slot's old entry leaves).
    const std::size_t bytes = sql::footprint(sql, *analysis);
    const AnalysisFacts facts(*analysis);
    if (state.slots_bytes - slot.bytes + bytes <= front_cache_max_bytes) {
        state.slots_bytes = state.slots_bytes - slot.bytes + bytes;
        slot.text.assign(sql);
        slot.analysis = analysis;
        slot.facts = facts;
        slot.bytes = bytes;
    }
    if (shaped && sql::literal_independent(*analysis) && !facts.changes_schema &&
        state.shape_slots_bytes - shaped->bytes + bytes <= front_cache_max_bytes) {
        state.shape_slots_bytes = state.shape_slots_bytes - shaped->bytes + bytes;
        shaped->shape = std::move(*shape);
        shaped->analysis = analysis;
        shaped->facts = facts;
        shaped->bytes = bytes;
    }
    return decide(session, state, *analysis, sql, &facts);
}

GateVerdict PolicyGate::decide(const SessionContext& session, ThreadState& state, const sql::Analysis& analysis,
                               std::string_view sql, const AnalysisFacts* known_facts) {
    const std::optional<AnalysisFacts> fresh_facts =
        known_facts ? std::nullopt : std::optional<AnalysisFacts>(std::in_place, analysis);
    const AnalysisFacts& facts = known_facts ? *known_facts : *fresh_facts;
    policy::SensitiveContext sensitive;
    const policy::SensitiveContext* sensitive_in_use = nullptr;
    if (state.policy->has_sensitive_columns) {
        const auto& rule = state.policy->rule_for(session);
        if (!rule.guards.sensitive.empty()) {
            Resolved resolved = resolve(state.policy, rule, session.database);
            sensitive.set = resolved.set.get();
            sensitive.error = std::move(resolved.error);
            sensitive.keep = std::move(resolved.set);
            sensitive_in_use = &sensitive;
        }
    }
    // The migrator route is the ledger's database's: elsewhere a registered statement is ad hoc DDL.
    const policy::MigrationMatcher* matcher =
        state.matcher && !state.migrations_database.empty() && session.database == state.migrations_database
            ? state.matcher.get()
            : nullptr;
    auto decision = policy::evaluate_all(*state.policy, session, analysis, matcher, sensitive_in_use);
    if (decision.action == policy::Decision::Action::allow) {
        if (const auto shadowed = shadowed_migrator_statement(matcher, analysis, session, sql)) {
            decision.action = policy::Decision::Action::deny;
            decision.guard = "migrator_name_resolution";
            decision.sqlstate = "55000";
            decision.statement_index = shadowed->first;
            decision.message = shadowed->second;
            decision.detail = "The ledger would record the migration as applied while the schema's own relation "
                              "stays unchanged, or takes a temporary object that ends with the session.";
            decision.hint = "Run the migration in a new connection, without temporary relations of those names or "
                            "temporary types and with the role's own search_path, or with pgrail migrate up.";
        }
    }
    // pgrail answers a statement that reads its commands in the server's place, and the session
    // follows none of what such a statement changes besides: client_encoding (how pgrail reads the
    // texts after it), search_path, temporary objects, prepared statements. It must change nothing.
    if (decision.action == policy::Decision::Action::intercept &&
        (facts.changes_encoding || facts.sets_search_path_elsewhere || facts.makes_temporary_types ||
         !facts.temporary_relations.empty() || facts.forgets_prepared || facts.keeps_for_later)) {
        decision.action = policy::Decision::Action::deny;
        decision.guard = "migrations";
        decision.sqlstate = "0A000";
        decision.message = "pgrail: a statement that reads pgrail's commands cannot also change the session (a "
                           "setting, a temporary object, a prepared statement or cursor); send the change as a "
                           "statement of its own";
        decision.detail = fmt::format("rule \"{}\" (migrations) refused a pgrail command combined with a change of "
                                      "the session",
                                      decision.rule);
        decision.hint = "Call the pgrail command alone, e.g. SELECT * FROM pgrail.status().";
    }
    if (decision.action == policy::Decision::Action::deny) advise_temporary_drop(decision, analysis, session);
    count(decision, analysis);
    GateVerdict verdict;
    facts.describe(verdict, decision.action == policy::Decision::Action::allow);
    verdict.keeps_encoding = verdict.changes_encoding && keeps_encoding(analysis, session);
    // An enforced refusal runs only the statements before the refused one (none of a text that
    // does not parse): only those leave the session anything.
    if (decision.action == policy::Decision::Action::deny && decision.enforced)
        verdict.keeps_for_later =
            !analysis.error && std::any_of(analysis.statements.begin(),
                                           analysis.statements.begin() +
                                               static_cast<std::ptrdiff_t>(std::min(decision.statement_index,
                                                                                    analysis.statements.size())),
                                           keeps);
    if (decision.action == policy::Decision::Action::allow) {
        // A schema change that passes (a migrator's registered statement, a rule with ddl: allow)
        // is on record before the server runs it; if it cannot be, it does not run. So is a read
        // whose results pgrail masks.
        std::vector<std::function<bool()>> writers;
        if (facts.changes_schema) {
            writers.push_back(writer(session, schema_change_event(session, decision, analysis, sql)));
            verdict.migrator_statements = migrator_statements(matcher, analysis);
        }
        if (!decision.columns.empty()) writers.push_back(writer(session, masking_event(session, decision, analysis, sql)));
        if (writers.size() == 1) {
            verdict.write_audit = std::move(writers.front());
        } else if (writers.size() > 1) {
            verdict.write_audit = [writers = std::move(writers)] {
                return std::all_of(writers.begin(), writers.end(), [](const auto& write) { return write(); });
            };
        }
        return verdict;
    }

    if (decision.action == policy::Decision::Action::intercept) {
        const auto& statement = analysis.statements.at(decision.statement_index);
        verdict.kind = GateVerdict::Kind::intercept;
        // Every call names a command: the evaluator refuses a statement with an unknown one.
        for (const auto& call : statement.pgrail_calls)
            verdict.calls.push_back(InbandCall{call.command.value(), call.arguments, call.offset, call.length,
                                               call.aliased, call.whole_statement});
        verdict.highest_parameter = statement.highest_parameter;
        return verdict;
    }

    auto event = refusal_event(session, decision, analysis, sql);
    verdict.audit_bytes = decision.enforced ? line_bytes(event) : 0;
    verdict.write_audit = writer(session, std::move(event));
    if (!decision.enforced) return verdict;  // audit_only: forwarded, but on record
    verdict.kind = GateVerdict::Kind::refuse;
    verdict.error = error_of(decision);
    // Text that does not parse runs not at all on PostgreSQL (it parses a whole Query first).
    verdict.refused_offset = !analysis.error && decision.statement_index < analysis.statements.size()
                                 ? analysis.statements[decision.statement_index].offset
                                 : 0;
    return verdict;
}

GateVerdict PolicyGate::check_bound_lock_key(const SessionContext& session, std::string_view key,
                                             std::string_view message) {
    const auto decision = policy::evaluate_bound_lock_key(*thread_state().policy, session, key);
    if (decision.allowed()) return {};
    // (One of pgrail's own keys, or "*": no value of the client's.)
    return message_refusal(session, decision, message, {{"advisory_lock_key", key}});
}

GateVerdict PolicyGate::message_refusal(const SessionContext& session, const policy::Decision& decision,
                                        std::string_view tag, const nlohmann::json& fields) const {
    auto event = session_fields(session);
    event["event"] = decision.enforced ? "statement_refused" : "statement_would_be_refused";
    event["tag"] = tag;
    event["class"] = "unknown";
    event.update(fields);
    add_decision_fields(event, decision);
    GateVerdict verdict;
    verdict.audit_bytes = decision.enforced ? line_bytes(event) : 0;
    verdict.write_audit = writer(session, std::move(event));
    if (!decision.enforced) return verdict;  // audit_only: passed on, but on record
    verdict.kind = GateVerdict::Kind::refuse;
    verdict.error = error_of(decision);
    return verdict;
}

GateVerdict PolicyGate::check_function_call(const SessionContext& session, std::uint32_t function_oid) {
    // The worker's own copy of the policy, as for statements: no lock shared between threads.
    const auto decision = policy::evaluate_function_call(*thread_state().policy, session, function_oid);
    return message_refusal(session, decision, "FunctionCall", {{"function_oid", function_oid}});
}

GateVerdict PolicyGate::check_startup(const SessionContext& session, const StartupParameters& parameters) {
    const auto policy = current_policy();
    const auto decision = policy::evaluate_startup(*policy, session, parameters);
    metrics().count_session_rule(decision.rule);
    if (!decision.allowed()) return connection_refusal(session, decision, !session.identity.empty());
    // A place among max_connections for a client pgrail authenticated; in passthrough mode only
    // once the server has (admit_session): else anyone naming a user of the rule holds one.
    if (session.identity.empty()) return {};
    return admit_session(session);
}

GateVerdict PolicyGate::take_login_place(const SessionContext& session, std::function<void()> evict) {
    const auto policy = current_policy();
    const auto& rule = policy->rule_for(session);
    GateVerdict verdict;
    if (rule.guards.max_connections == 0) return verdict;
    verdict.session_place = rule_sessions_->take(rule.name, rule.guards.max_connections, std::move(evict),
                                                 AddressBudget::key_of(session.client_address));
    if (verdict.session_place) return verdict;
    return connection_refusal(session, policy::evaluate_connection_limit(*policy, session), false);
}

GateVerdict PolicyGate::admit_session(const SessionContext& session) {
    const auto policy = current_policy();
    const auto& rule = policy->rule_for(session);
    GateVerdict verdict;
    if (rule.guards.max_connections == 0) return verdict;
    verdict.session_place = rule_sessions_->take(rule.name, rule.guards.max_connections);
    if (verdict.session_place) return verdict;
    return connection_refusal(session, policy::evaluate_connection_limit(*policy, session), true);
}

GateVerdict PolicyGate::connection_refusal(const SessionContext& session, const policy::Decision& decision,
                                           bool authenticated) {
    GateVerdict verdict;
    auto event = session_fields(session);
    event["event"] = decision.enforced ? "connection_refused" : "connection_would_be_refused";
    add_decision_fields(event, decision);
    // Before authentication (a startup packet in passthrough mode) the user is only a claim, and
    // anyone who can connect causes these lines (bounded, see audit_budget.hpp).
    event["authenticated"] = authenticated;
    if (authenticated) {
        verdict.write_audit = writer(session, std::move(event));
    } else if (const auto left_out = unauthenticated_audit_.take(session.client_address)) {
        if (*left_out > 0) event["unaudited_before"] = *left_out;
        verdict.write_audit = writer(session, std::move(event));
    }
    if (!decision.enforced) return verdict;
    verdict.kind = GateVerdict::Kind::refuse;
    verdict.error = error_of(decision);
    return verdict;
}

void PolicyGate::set_sensitive_catalogs(std::shared_ptr<SensitiveCatalogs> catalogs) { catalogs_ = std::move(catalogs); }

void PolicyGate::catalog_changed() {
    if (catalogs_) catalogs_->invalidate();
}

PolicyGate::Resolved PolicyGate::resolve(const std::shared_ptr<const policy::Policy>& policy, const policy::Rule& rule,
                                         const std::string& database, bool after_check) {
    const auto& guards = rule.guards;
    std::shared_ptr<const CatalogSnapshot> snapshot;
    std::string error;
    if (!guards.sensitive.empty()) {
        if (!catalogs_) {
            error = "no catalog connection is configured (catalog.conninfo, or migrations.migrator)";
        } else {
            // The check before a result read this snapshot or an older one, so the newest one
            // held serves its guard; a load there would stall an I/O thread (one that an
            // invalidate() between the two would otherwise cause).
            if (after_check) snapshot = catalogs_->loaded_snapshot(database);
            if (!snapshot) snapshot = catalogs_->snapshot(database, &error);  // may load it
        }
    }
    const std::uint64_t version = snapshot ? snapshot->version : 0;
    std::lock_guard lock(resolved_mutex_);
    const std::pair<std::string_view, std::string_view> names{rule.name, database};
    auto found = resolved_.find(names);
    if (found == resolved_.end())
        found = resolved_.emplace(std::pair<std::string, std::string>(names), ResolvedEntry{}).first;
    auto& entry = found->second;
    if (entry.policy == policy && entry.catalog_version == version && (snapshot || entry.resolved.error == error))
        return entry.resolved;

    Resolved resolved;
    resolved.error = std::move(error);
    auto guard = std::make_shared<ResultGuard>();
    guard->rule = rule.name;
    guard->max_rows = guards.max_rows;
    guard->hash_key = policy->masking_key;
    if (snapshot) {
        auto set = std::make_shared<const policy::SensitiveSet>(resolve_sensitive(*snapshot, guards.sensitive));
        const bool masks = guards.sensitive.action == policy::SensitiveAction::mask;
        for (const auto& [key, index] : set->keys) {
            const auto& relation = set->relations.at(index);
            MaskedColumn column;
            for (std::size_t at = 0; at < relation.numbers.size() && at < relation.columns.size(); ++at)
                if (relation.numbers[at] == key.column) column.column = relation.schema + "." + relation.name + "." + relation.columns[at];
            // A column the rule refuses (or always refuses) never reaches a result legitimately.
            column.backstop = !masks || relation.always_deny;
            column.method = column.backstop ? policy::MaskMethod::null : guards.sensitive.method;
            column.constant = guards.sensitive.constant;
            guard->columns.emplace(key, std::move(column));
        }
        resolved.set = std::move(set);
    }
    // audit_only forwards everything as the server answers it: its would-be refusals are audited,
    // but no result is masked or cut.
    if (guard->active() && policy->mode == policy::Mode::enforce) resolved.guard = std::move(guard);
    entry.policy = policy;
    entry.catalog_version = version;
    entry.resolved = resolved;
    return resolved;
}

std::shared_ptr<const ResultGuard> PolicyGate::result_guard(const SessionContext& session) {
    auto& state = thread_state();
    if (!state.policy->has_result_guards) return nullptr;
    const auto& rule = state.policy->rule_for(session);
    if (rule.guards.sensitive.empty() && rule.guards.max_rows.limit == 0) return nullptr;
    return resolve(state.policy, rule, session.database, true).guard;
}

bool PolicyGate::audit_result_event(const SessionContext& session, const ResultEvent& result) {
    auto event = session_fields(session);
    event["event"] = result.kind == ResultEvent::Kind::truncated ? "result_truncated"
                     : result.kind == ResultEvent::Kind::refused ? "result_refused"
                                                                 : "result_masked_backstop";
    event["rule"] = result.rule;
    event["decision"] = result.kind == ResultEvent::Kind::refused ? "deny" : "allow";
    if (result.kind == ResultEvent::Kind::masked_backstop) {
        event["guard"] = "sensitive_columns";
        event["columns"] = result.columns;
    } else {
        event["guard"] = "max_rows";
        event["rows_sent"] = result.rows_sent;
        event["limit"] = result.limit;
    }
    return writer(session, std::move(event))();
}

bool PolicyGate::audit_auth_event(const SessionContext& session, std::string_view kind, std::string_view reason) {
    auto event = session_fields(session);
    event["event"] = std::string(kind);
    event["decision"] = "deny";
    event["message"] = std::string(reason);
    if (kind == "login_refused") {  // before authentication: bounded as a refused startup packet
        event["authenticated"] = false;
        const auto left_out = unauthenticated_audit_.take(session.client_address);
        if (!left_out) return true;  // counted, and carried by the next line written
        if (*left_out > 0) event["unaudited_before"] = *left_out;
    }
    return writer(session, std::move(event))();
}

bool PolicyGate::audit_command_refused(const SessionContext& session, const InbandCall& call,
                                       const protocol::ErrorMessage& error) {
    auto event = session_fields(session);
    event["event"] = "command";
    event["command"] = fmt::format("pgrail.{}", sql::name_of(call.command));
    nlohmann::json arguments = nlohmann::json::array();  // redacted: nothing was looked up
    for (std::size_t index = 0; index < call.arguments.size(); ++index) arguments.push_back(fmt::format("${}", index + 1));
    event["arguments"] = std::move(arguments);
    event["outcome"] = "error";
    event["sqlstate"] = error.sqlstate;
    event["message"] = error.message;
    return writer(session, std::move(event))();
}

nlohmann::json PolicyGate::masking_event(const SessionContext& session, const policy::Decision& decision,
                                         const sql::Analysis& analysis, std::string_view sql) const {
    auto event = session_fields(session);
    event["event"] = "statement_masked";
    event["rule"] = decision.rule;
    event["guard"] = "sensitive_columns";
    event["decision"] = "allow";
    event["columns"] = decision.columns;
    if (!analysis.statements.empty()) {
        const auto& first = analysis.statements.front();
        event["tag"] = first.tag;
        const std::string_view text = sql.substr(first.offset, analysis.statements.back().offset +
                                                                  analysis.statements.back().length - first.offset);
        event["statement"] = sql::normalize(text, session.lexing);  // always without its literals
    }
    return event;
}

nlohmann::json PolicyGate::schema_change_event(const SessionContext& session, const policy::Decision& decision,
                                               const sql::Analysis& analysis, std::string_view sql) const {
    auto event = session_fields(session);
    event["event"] = "schema_change_forwarded";
    event["rule"] = decision.rule;
    event["decision"] = "allow";
    nlohmann::json statements = nlohmann::json::array();
    for (const auto& statement : analysis.statements) {
        if (!policy::changes_schema(statement)) continue;
        auto rendered = sql::to_json(statement);
        const std::string_view text = sql.substr(statement.offset, statement.length);
        statements.push_back({{"tag", statement.tag},
                              {"class", sql::to_string(statement.statement_class)},
                              {"objects", std::move(rendered["objects"])},
                              {"statement", redact_literals_ ? sql::normalize(text, session.lexing) : std::string(text)}});
    }
    event["statements"] = std::move(statements);
    return event;
}

nlohmann::json PolicyGate::refusal_event(const SessionContext& session, const policy::Decision& decision,
                                         const sql::Analysis& analysis, std::string_view sql) const {
    auto event = session_fields(session);
    event["event"] = decision.enforced ? "statement_refused" : "statement_would_be_refused";
    std::size_t statement_size = sql.size();
    if (decision.statement_index < analysis.statements.size()) {
        const auto& statement = analysis.statements[decision.statement_index];
        auto rendered = sql::to_json(statement);
        event["tag"] = statement.tag;
        event["class"] = sql::to_string(statement.statement_class);
        event["objects"] = std::move(rendered["objects"]);
        const std::string_view text = sql.substr(statement.offset, statement.length);
        statement_size = text.size();
        // Normalised only here, on a refusal: the allow path never pays for it. Text that did
        // not parse cannot be normalised: its size stands for it.
        if (statement.error && (redact_literals_ || statement.error->limit)) {
            // (Beyond a limit, even an unredacted line keeps only the size: it may be megabytes.)
            event["statement"] = nullptr;
            event["statement_bytes"] = text.size();
        } else if (!redact_literals_ && decision.guard != "sensitive_columns") {
            // (A statement that reached a sensitive column is always logged without its literals.)
            event["statement"] = std::string(text);
        } else {
            event["statement"] = sql::normalize(text, session.lexing);
        }
    } else {
        // Text that did not parse cannot be normalised: keep only its size unless told otherwise.
        event["class"] = "unknown";
        event["statement"] = redact_literals_ ? nlohmann::json(nullptr) : nlohmann::json(std::string(sql));
        event["statement_bytes"] = sql.size();
    }
    add_decision_fields(event, decision);
    if (analysis.error) {
        const auto& message = analysis.error->message;
        event["parse_error"] = redact_literals_ ? without_quoted_text(message) : message;
        if (redact_literals_) event["message"] = without_quoted_text(decision.message);
    }
    clip_refusal(event, statement_size);
    return event;
}

std::function<bool()> PolicyGate::writer(const SessionContext& session, nlohmann::json event) const {
    return [log = audit_log_, session_id = session.session_id, event = std::move(event)]() mutable {
        // A refusal is shown by pgrail.refusals() once it is on record, redacted as its line is.
        auto refusal = RefusalRing::record_of(event);
        if (log->record(std::move(event))) {
            metrics().audit_lines.fetch_add(1, std::memory_order_relaxed);
            if (refusal) recent_refusals().add(std::move(*refusal));
            return true;
        }
        metrics().audit_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("session {}: audit log write failed: {}", session_id, log->last_error());
        return false;
    };
}

}  // namespace pgrail::proxy
