// `pgrail serve`: the listener, the worker threads and the sessions they run.
#pragma once

#include <functional>
#include <memory>

#include "pgrail/config/serve_config.hpp"
#include "pgrail/proxy/inband_commands.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

class Server {
public:
    // `gate` decides on every Query and Parse; `inband` runs pgrail.* commands (may be null);
    // `on_reload` runs on SIGHUP (it swaps the policy itself and logs failures; sessions are
    // never dropped).
    Server(config::ServeConfig config, std::shared_ptr<StatementGate> gate, std::shared_ptr<InbandCommands> inband,
           std::function<void()> on_reload = {});
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds, then serves until SIGINT or SIGTERM. Throws if the address cannot be bound.
    void run();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgrail::proxy
