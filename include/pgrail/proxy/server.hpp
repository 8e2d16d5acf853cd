// `pgrail serve`: the listener, the worker threads and the sessions they run.
#pragma once

#include <functional>
#include <memory>

#include "pgrail/audit/audit_log.hpp"
#include "pgrail/config/serve_config.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

class Server {
public:
    // `gate` decides on every Query and Parse; `inband` runs pgrail.* migration commands (null:
    // migrations are not configured); the admin view's commands (pgrail.sessions(), stats(),
    // refusals()) are always there, audited into `audit_log` (null: not audited; only without a
    // policy, when no command can run);
    // `on_reload` runs on SIGHUP, on a thread of its own (it may read files and the database:
    // the listener and the sessions go on meanwhile; it swaps the policy itself and logs
    // failures; sessions are never dropped). A SIGHUP during a reload runs another after it.
    Server(config::ServeConfig config, std::shared_ptr<StatementGate> gate, std::shared_ptr<InbandCommands> inband,
           std::function<void()> on_reload = {}, std::shared_ptr<audit::AuditLog> audit_log = nullptr);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds, then serves until SIGTERM or SIGINT. Throws if the address cannot be bound.
    // SIGTERM: the listeners close; idle sessions end at once, the others when their transaction
    // (or running pgrail.* command) is done, at most shutdown_timeout_ms; each with FATAL 57P01.
    // SIGINT (or SIGINT after SIGTERM): every session ends now (a running pgrail.* command is
    // abandoned: a migration rolls back, and its client hears that before the FATAL).
    // Returns the exit status: 0 when every session ended at rest, 1 when any was cut inside a
    // transaction or statement (by SIGINT or the deadline).
    int run();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgrail::proxy
