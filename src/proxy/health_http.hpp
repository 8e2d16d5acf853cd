// The operator's HTTP listener (config `http:`, off by default): /metrics in the Prometheus text
// format, /healthz (the process answers) and /readyz (listening, policy loaded, the server
// reachable within a timeout). Separate from the PostgreSQL listener; one request per connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "pgrail/config/serve_config.hpp"

namespace pgrail::proxy {

class HealthHttp {
public:
    // `policy_state`: "" when ready, else why not (e.g. no policy loaded when one is configured).
    HealthHttp(boost::asio::io_context& context, const config::ServeConfig& config,
               std::function<std::string()> policy_state);
    ~HealthHttp();
    HealthHttp(const HealthHttp&) = delete;
    HealthHttp& operator=(const HealthHttp&) = delete;

    // Binds and starts accepting; throws std::runtime_error when it cannot bind.
    void start();
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace pgrail::proxy
