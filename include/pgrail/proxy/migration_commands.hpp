// The in-band commands backed by the migrations module: registry, runner, ledger snapshot.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "pgrail/audit/audit_log.hpp"
#include "pgrail/config/serve_config.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/migrations/registry.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "pgrail/proxy/policy_gate.hpp"

namespace pgrail::proxy {

class MigrationCommands final : public InbandCommands {
public:
    // Loads the registry (throws if migrations.dir cannot be read) and the ledger snapshot.
    MigrationCommands(const config::ServeConfig& config, std::shared_ptr<audit::AuditLog> audit_log,
                      std::shared_ptr<PolicyGate> gate);

    // No process-wide serialisation: status and plan read the ledger with a plain query;
    // migrate_up/down wait at most migrations.lock_wait for the advisory lock.
    InbandOutcome run(const SessionContext& session, const std::string& command,
                      const std::vector<std::string>& arguments, AbandonedFlag abandoned = nullptr) override;

    // Reads the directory and the ledger again (SIGHUP); keeps the old registry on failure.
    void reload();

private:
    // Publishes the current registry and the ledger state to the gate, for migrator DDL matching.
    void refresh_snapshot();
    [[nodiscard]] std::shared_ptr<const migrations::Registry> registry() const;

    config::ServeConfig config_;
    std::shared_ptr<audit::AuditLog> audit_log_;
    std::shared_ptr<PolicyGate> gate_;
    mutable std::mutex mutex_;
    std::shared_ptr<const migrations::Registry> registry_;
    // Snapshot refreshes run concurrently; the one that started reading last wins.
    std::atomic<std::uint64_t> refresh_started_{0};
    std::uint64_t refresh_published_ = 0;  // under mutex_
};

// `conninfo` (key=value or URI) with bounds for a short read of pgrail's own: connect_timeout
// (from connect_timeout_ms, unless it names one), tcp_user_timeout and the server's
// statement_timeout (added to its `options`). Unparseable text is returned as it is.
[[nodiscard]] std::string bounded_conninfo(const std::string& conninfo, std::uint32_t connect_timeout_ms,
                                           std::uint32_t statement_timeout_ms);

// A query whose result set is `table`: SELECT * FROM (VALUES ...) with typed, quoted literals.
[[nodiscard]] std::string result_set_sql(const migrations::ResultTable& table);

}  // namespace pgrail::proxy
