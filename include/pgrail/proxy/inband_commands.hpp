// pgrail's in-band commands (SELECT * FROM pgrail.status() ...), run for a session.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pgrail/migrations/commands.hpp"
#include "pgrail/migrations/external_runs.hpp"
#include "pgrail/protocol/backend.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

struct InbandOutcome {
    bool ok = false;
    migrations::ResultTable table;  // ok: the command's answer (the session makes it a relation the server reads)
    protocol::ErrorMessage error;   // !ok: the error to answer with
};

// Set by the session when the answer to a running command is no longer wanted (its client
// cancelled or disconnected): `abandoned->store(true)`. A command that changes the schema then
// never applies afterwards (see migrations::AbandonFlag); read-only commands ignore it.
using AbandonedFlag = std::shared_ptr<const std::atomic<bool>>;

class InbandCommands {
public:
    virtual ~InbandCommands() = default;
    // Blocking (it talks to the database): the proxy calls it off its I/O threads. status and
    // plan only read the ledger: they never wait for the migration lock or for another
    // session's command. `abandoned` may be null (never abandoned).
    [[nodiscard]] virtual InbandOutcome run(const SessionContext& session, policy::Command command,
                                            const std::vector<std::string>& arguments,
                                            AbandonedFlag abandoned = nullptr) = 0;
    // Statements of registered migrations a session committed (the migrator route): records each
    // script now run to its end in the ledger (migrations::record_external_runs) and refreshes the
    // migrator matching. Blocking, off the I/O threads; never throws (failures are logged and
    // audited: the schema then shows as drifted). `progress` is the session's own.
    virtual void record_migrator_commit(const SessionContext& session,
                                        const std::vector<migrations::CommittedStatement>& committed,
                                        migrations::ExternalProgress& progress) {
        (void)session;
        (void)committed;
        (void)progress;
    }
};

// The call among `calls` that changes something (a migration: at most one, the policy's), or null.
[[nodiscard]] const InbandCall* changing_call(const std::vector<InbandCall>& calls);
// The first call among `calls` that leaves a record (sql::leaves_a_record), or null.
[[nodiscard]] const InbandCall* recording_call(const std::vector<InbandCall>& calls);
// PostgreSQL's answer to a statement in a failed transaction block (25P02): what a call that
// leaves a record hears there instead of running.
[[nodiscard]] protocol::ErrorMessage failed_transaction_error();

// What one statement's calls answered: `tables[i]` is calls[i]'s; `error` is the first failure's
// (the calls after it did not run).
struct InbandAnswers {
    std::vector<migrations::ResultTable> tables;
    std::optional<protocol::ErrorMessage> error;
};

// Runs one statement's calls in the order that leaves nothing changed when one fails: the reads
// first, then the call that changes something. Blocking, as InbandCommands::run.
[[nodiscard]] InbandAnswers run_calls(InbandCommands& commands, const SessionContext& session,
                                      const std::vector<InbandCall>& calls, const AbandonedFlag& abandoned);

// Why `call` (the changing one) may not run where it was sent (SQLSTATE 25001): pgrail runs it on a
// connection of its own, so, like PostgreSQL's CREATE DATABASE, not inside a transaction block and
// not after another Execute of the same pipeline (the server may roll back what ran before it, but
// not the command).
[[nodiscard]] protocol::ErrorMessage outside_transaction_error(const InbandCall& call, bool in_pipeline);

}  // namespace pgrail::proxy
