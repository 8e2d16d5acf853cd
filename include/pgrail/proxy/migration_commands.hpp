// The in-band commands backed by the migrations module: registry, runner, ledger snapshot.
#pragma once

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

    InbandOutcome run(const SessionContext& session, const std::string& command,
                      const std::vector<std::string>& arguments) override;

    // Reads the directory and the ledger again (SIGHUP); keeps the old registry on failure.
    void reload();

private:
    // Publishes the registry and ledger state to the gate, for migrator DDL matching.
    void refresh_snapshot(const std::shared_ptr<const migrations::Registry>& registry);
    [[nodiscard]] std::shared_ptr<const migrations::Registry> registry() const;

    config::ServeConfig config_;
    std::shared_ptr<audit::AuditLog> audit_log_;
    std::shared_ptr<PolicyGate> gate_;
    mutable std::mutex mutex_;
    std::shared_ptr<const migrations::Registry> registry_;
    std::mutex run_mutex_;  // one command at a time per process; the advisory lock covers the rest
};

// A query whose result set is `table`: SELECT * FROM (VALUES ...) with typed, quoted literals.
[[nodiscard]] std::string result_set_sql(const migrations::ResultTable& table);

}  // namespace pgrail::proxy
