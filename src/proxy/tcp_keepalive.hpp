// TCP keepalive on both legs' TCP connections. A peer that is gone without a word (a machine
// switched off, a network cut, an orphaned connection its kernel dropped) never sends a FIN or
// a reset: without probes, its session and the server's backend would stay until pgrail next
// wrote to it, which an idle or waiting session may never do. With them, the kernel reports the
// connection dead after idle + interval x count, and the session ends as if the peer had closed.
#pragma once

#include "pgrail/config/serve_config.hpp"

namespace pgrail::proxy {

// On a connected socket: TCP only (a Unix socket's peer is this machine's); failures are ignored
// (the connection then merely goes without probes).
void set_tcp_keepalive(int fd, const config::ServeConfig& config);

}  // namespace pgrail::proxy
