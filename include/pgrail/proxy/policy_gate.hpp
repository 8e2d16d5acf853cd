// The statement gate that enforces a policy: analyse, decide, audit, answer.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "pgrail/audit/audit_log.hpp"
#include "pgrail/policy/evaluator.hpp"
#include "pgrail/proxy/address_budget.hpp"
#include "pgrail/proxy/rule_sessions.hpp"
#include "pgrail/policy/policy.hpp"
#include "pgrail/proxy/sensitive_catalog.hpp"
#include "pgrail/proxy/statement_gate.hpp"
#include "pgrail/sql/analysis_cache.hpp"

namespace pgrail::proxy {

class PolicyGate final : public StatementGate {
public:
    // Texts longer than `max_analyzed_size` are not analysed: they count as not parsing.
    PolicyGate(std::shared_ptr<const policy::Policy> policy, std::shared_ptr<audit::AuditLog> audit_log,
               bool redact_literals, std::size_t max_analyzed_size);

    GateVerdict check(const SessionContext& session, std::string_view sql) override;
    GateVerdict check_deferred(const SessionContext& session, std::string_view sql) override;
    // Texts analysed before (or over max_analyzed_size: refused unread), and new texts up to 4 KB
    // that PostgreSQL's scanner reads in linear time, while the calling thread's budget of check
    // time lasts (policy_gate.cpp). Not while the session's database's catalog
    // must be read first (sensitive_columns): that read may take up to catalog.timeout, on a
    // thread other sessions do not wait for.
    std::optional<GateVerdict> check_here(const SessionContext& session, std::string_view sql) override;
    GateVerdict check_function_call(const SessionContext& session, std::uint32_t function_oid) override;
    GateVerdict check_bound_lock_key(const SessionContext& session, std::string_view key,
                                     std::string_view message = "Bind") override;
    GateVerdict take_login_place(const SessionContext& session, std::function<void()> evict) override;
    GateVerdict check_startup(const SessionContext& session, const StartupParameters& parameters) override;
    GateVerdict admit_session(const SessionContext& session) override;

    std::shared_ptr<const ResultGuard> result_guard(const SessionContext& session) override;
    bool rule_changed(const SessionContext& session, PolicyHold& held) override;
    bool audit_result_event(const SessionContext& session, const ResultEvent& event) override;
    bool audit_auth_event(const SessionContext& session, std::string_view event, std::string_view reason) override;
    bool audit_command_refused(const SessionContext& session, const InbandCall& call,
                               const protocol::ErrorMessage& error) override;
    // Where sensitive_columns are resolved: each database's catalog (null: none configured, and a
    // rule with sensitive_columns refuses what reads a relation).
    void set_sensitive_catalogs(std::shared_ptr<SensitiveCatalogs> catalogs);
    // The schema changed (a migration applied or rolled back, SIGHUP): each database's catalog is
    // read again before the next statement that needs it is decided.
    void catalog_changed();

    // Swaps the policy for statements checked from now on (SIGHUP).
    void replace_policy(std::shared_ptr<const policy::Policy> policy);
    // Lets migrator sessions on `database` (the ledger's: a registered statement run in another
    // database is not the migration applied) run DDL that equals a registered migration's statement.
    void set_migration_matcher(std::string database, std::shared_ptr<const policy::MigrationMatcher> matcher);
    [[nodiscard]] std::shared_ptr<const policy::Policy> current_policy() const;
    [[nodiscard]] sql::AnalysisCache& cache() { return cache_; }

private:
    // The audit lines of a refusal and of an allowed schema change.
    nlohmann::json refusal_event(const SessionContext& session, const policy::Decision& decision,
                                 const sql::Analysis& analysis, std::string_view sql) const;
    nlohmann::json schema_change_event(const SessionContext& session, const policy::Decision& decision,
                                       const sql::Analysis& analysis, std::string_view sql) const;
    // A verdict's write_audit for this event.
    std::function<bool()> writer(const SessionContext& session, nlohmann::json event) const;
    struct ThreadState;
    // The calling worker thread's copies of the policy and matcher (refreshed when the
    // generation moves) and its small lock-free caches of analyses, by text and by shape.
    ThreadState& thread_state();
    // Where a text the caches miss may be analysed: not on this thread; on an I/O thread while
    // its budget lasts and the text scans in linear time; on the analysis pool, always.
    enum class MayAnalyse : std::uint8_t { no, if_cheap, yes };
    // The check on `state`'s thread; nothing when the text is new there and no analysis may run
    // there: then another thread checks it.
    std::optional<GateVerdict> checked(const SessionContext& session, ThreadState& state, std::string_view sql,
                                       MayAnalyse may);
    struct AnalysisFacts;
    // `facts`: of `analysis`, when a slot keeps them (else worked out here).
    GateVerdict decide(const SessionContext& session, ThreadState& state, const sql::Analysis& analysis,
                       std::string_view sql, const AnalysisFacts* facts = nullptr);

    // A rule's sensitive_columns and max_rows in one database, resolved against its catalog.
    struct Resolved {
        std::shared_ptr<const policy::SensitiveSet> set;  // null: none (error says why, if it should be)
        std::shared_ptr<const ResultGuard> guard;         // null: results pass untouched
        std::string error;
    };
    // `after_check`: for a statement the check has passed (on an I/O thread): the newest catalog
    // loaded serves, without loading one unless none is held.
    Resolved resolve(const std::shared_ptr<const policy::Policy>& policy, const policy::Rule& rule,
                     const std::string& database, bool after_check = false);
    nlohmann::json masking_event(const SessionContext& session, const policy::Decision& decision,
                                 const sql::Analysis& analysis, std::string_view sql) const;

    mutable std::mutex policy_mutex_;  // guards the two pointers below; held only to copy them
    std::shared_ptr<const policy::Policy> policy_;
    std::shared_ptr<const policy::MigrationMatcher> matcher_;
    std::string migrations_database_;  // the matcher's database (empty: none matches)
    // Bumped on every swap: worker threads copy the pointers only when it moved, so the hot
    // path takes no lock shared between threads.
    std::atomic<std::uint64_t> generation_{1};
    std::shared_ptr<audit::AuditLog> audit_log_;
    // Lines of clients not authenticated yet: per address, 1 a second after a burst of 20; in all,
    // 10 a second after a burst of 100 (address_budget.hpp).
    mutable AddressBudget unauthenticated_audit_;
    // A refused connection's verdict: its audit line (bounded for clients nobody authenticated).
    // The refusal of a protocol message that is no statement (a FunctionCall, a Bind's lock key),
    // its audit line naming the message (`tag`) and what it carried (`fields`).
    GateVerdict message_refusal(const SessionContext& session, const policy::Decision& decision, std::string_view tag,
                                const nlohmann::json& fields) const;
    GateVerdict connection_refusal(const SessionContext& session, const policy::Decision& decision,
                                   bool authenticated);
    std::shared_ptr<RuleSessions> rule_sessions_ = std::make_shared<RuleSessions>();
    bool redact_literals_;
    std::size_t max_analyzed_size_;
    sql::AnalysisCache cache_;
    std::shared_ptr<SensitiveCatalogs> catalogs_;  // set once, before sessions start
    struct ResolvedEntry {
        std::shared_ptr<const policy::Policy> policy;  // the policy it was resolved under
        std::uint64_t catalog_version = 0;
        Resolved resolved;
    };
    std::mutex resolved_mutex_;
    // (rule, database), looked up by views: a statement allocates no key.
    struct ByNames {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            return std::pair<std::string_view, std::string_view>(a.first, a.second) <
                   std::pair<std::string_view, std::string_view>(b.first, b.second);
        }
    };
    std::map<std::pair<std::string, std::string>, ResolvedEntry, ByNames> resolved_;
};

// Who a session is, as every audit line about it says it (the gate's, the commands', the login's).
[[nodiscard]] nlohmann::json session_fields(const SessionContext& session);

}  // namespace pgrail::proxy
