// The admin view over SQL: pgrail.sessions(), pgrail.stats(), pgrail.refusals([limit]), read-only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/audit/audit_log.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "refusal_ring.hpp"
#include "session_directory.hpp"

namespace pgrail::proxy {

// The columns (no rows) of any in-band command, the admin view's or the migrations module's, for
// a statement described before it runs.
[[nodiscard]] migrations::ResultTable inband_command_columns(policy::Command command);

// pgrail.refusals() without an argument shows this many; an argument must lie in 1..max.
inline constexpr std::size_t default_refusals_limit = 20;
inline constexpr std::size_t max_refusals_limit = 1000;

class AdminCommands final : public InbandCommands {
public:
    // `audit_log` null: nothing to audit into (pgrail serve without a policy, which never runs
    // a command); `refusals` the ring the gate fills (recent_refusals()).
    AdminCommands(std::shared_ptr<const SessionDirectory> directory, std::shared_ptr<audit::AuditLog> audit_log,
                  const RefusalRing& refusals);

    // Answers from memory, never the database; each call is audited before its answer is given
    // (an audit line that cannot be written fails the call, 58030, as a refusal's would).
    InbandOutcome run(const SessionContext& session, policy::Command command, const std::vector<std::string>& arguments,
                      AbandonedFlag abandoned = nullptr) override;

    [[nodiscard]] migrations::ResultTable sessions_table() const;
    [[nodiscard]] migrations::ResultTable stats_table() const;
    [[nodiscard]] migrations::ResultTable refusals_table(std::size_t limit) const;

private:
    std::shared_ptr<const SessionDirectory> directory_;
    std::shared_ptr<audit::AuditLog> audit_log_;
    const RefusalRing& refusals_;
    const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Routes each in-band command: the admin view's to `admin`, the rest to `migrations`, which is
// null when migrations are not configured (then `admin` refuses them, 55000, audited).
class InbandDispatch final : public InbandCommands {
public:
    InbandDispatch(std::shared_ptr<InbandCommands> admin, std::shared_ptr<InbandCommands> migrations);
    InbandOutcome run(const SessionContext& session, policy::Command command, const std::vector<std::string>& arguments,
                      AbandonedFlag abandoned = nullptr) override;
    void record_migrator_commit(const SessionContext& session,
                                const std::vector<migrations::CommittedStatement>& committed,
                                migrations::ExternalProgress& progress) override;

private:
    std::shared_ptr<InbandCommands> admin_;
    std::shared_ptr<InbandCommands> migrations_;
};

}  // namespace pgrail::proxy
