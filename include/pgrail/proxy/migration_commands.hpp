// The in-band commands backed by the migrations module: registry, runner, ledger snapshot.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

#include "pgrail/audit/audit_log.hpp"
#include "pgrail/config/serve_config.hpp"
#include "pgrail/config/tls_config.hpp"
#include "pgrail/migrations/commands.hpp"
#include "pgrail/migrations/directory_watch.hpp"
#include "pgrail/migrations/proposals.hpp"
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
    // migrate_up/down wait at most migrations.lock_wait for the advisory lock. Each command first
    // follows the migrations directory (follow_directory()).
    InbandOutcome run(const SessionContext& session, policy::Command command, const std::vector<std::string>& arguments,
                      AbandonedFlag abandoned = nullptr) override;
    void record_migrator_commit(const SessionContext& session,
                                const std::vector<migrations::CommittedStatement>& committed,
                                migrations::ExternalProgress& progress) override;

    // Reads the directory and the ledger again (SIGHUP), adopting the directory as it is (invalid
    // files become invalid entries); keeps the old registry when the directory cannot be read.
    void reload();

private:
    // Before each command: a cheap look at the migrations directory (DirectoryWatch). A change is
    // adopted (new registry, new snapshot for the gate's migrator matching) unless it brought a
    // migration file that is not valid: then the registry read before stays in force and every
    // command fails with an error naming the file, until the file is fixed or removed (or SIGHUP
    // adopts the directory as it is). An unreadable directory fails the command (58030).
    [[nodiscard]] std::optional<protocol::ErrorMessage> follow_directory();
    void adopt(std::shared_ptr<const migrations::Registry> loaded);
    // Before each command, after the directory: the approved proposals of the ledger database (one
    // query), merged into the registry (migrations::merge_proposals). A file and an approved
    // proposal of the same version with different checksums fail every command but
    // reject_migration (55000), until one of them goes. A ledger that cannot be read keeps the
    // proposals read before.
    [[nodiscard]] std::optional<protocol::ErrorMessage> follow_proposals();
    // effective_ := registry_ with approved_ (under mutex_).
    void merge_locked();
    [[nodiscard]] std::shared_ptr<const migrations::Registry> directory_registry() const;
    // The policy's migration tools' bookkeeping tables (every rule's), left out of schema fingerprints.
    [[nodiscard]] std::vector<std::string> bookkeeping_tables() const;
    // Publishes the current registry and the ledger state to the gate, for migrator DDL matching.
    void refresh_snapshot();
    // The registry the commands use: the directory's and the approved proposals.
    [[nodiscard]] std::shared_ptr<const migrations::Registry> registry() const;

    config::ServeConfig config_;
    std::shared_ptr<audit::AuditLog> audit_log_;
    std::shared_ptr<PolicyGate> gate_;
    mutable std::mutex mutex_;
    std::shared_ptr<const migrations::Registry> registry_;   // the directory's
    std::vector<migrations::Proposal> approved_;              // under mutex_
    std::shared_ptr<const migrations::Registry> effective_;  // under mutex_: registry_ + approved_
    std::vector<std::string> proposal_conflicts_;             // under mutex_
    std::mutex watch_mutex_;  // serialises polls of the directory; taken before mutex_, never after
    migrations::DirectoryWatch watch_;                      // under watch_mutex_
    std::optional<protocol::ErrorMessage> directory_error_;  // under watch_mutex_: a change not adopted
    // Snapshot refreshes run concurrently; the one that started reading last wins.
    std::atomic<std::uint64_t> refresh_started_{0};
    std::uint64_t refresh_published_ = 0;  // under mutex_
    // The database the ledger was last read from (under mutex_): only sessions on it take the
    // migrator route (a registered statement run elsewhere is not the migration applied).
    std::string migrations_database_;
};

// `conninfo` (key=value or URI) with bounds for a short read of pgrail's own: connect_timeout
// (from connect_timeout_ms, unless it names one), tcp_user_timeout and the server's
// statement_timeout (added to its `options`). Unparseable text is returned as it is.
[[nodiscard]] std::string bounded_conninfo(const std::string& conninfo, std::uint32_t connect_timeout_ms,
                                           std::uint32_t statement_timeout_ms);

// `conninfo` (pgrail's own libpq connections: the migration runner, the catalog reads) with the
// server leg's TLS (tls.server: sslmode, sslrootcert, sslcert, sslkey) where it names none of its
// own, so that every connection pgrail makes to the server is as protected as its sessions. An
// unparseable conninfo is returned as it is (libpq reports it). ca_file "system" is not passed
// (libpq 15 has no sslrootcert=system: name the bundle's file).
[[nodiscard]] std::string conninfo_with_server_tls(const std::string& conninfo, const config::ServerTlsConfig& tls);

}  // namespace pgrail::proxy
