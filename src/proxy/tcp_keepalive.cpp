#include "tcp_keepalive.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace pgrail::proxy {
namespace {

int whole_seconds(std::uint32_t ms) { return static_cast<int>(std::max<std::uint32_t>(1, (ms + 999) / 1000)); }

}  // namespace

void set_tcp_keepalive(int fd, const config::ServeConfig& config) {
    if (config.tcp_keepalive_idle_ms == 0) return;
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
        (address.ss_family != AF_INET && address.ss_family != AF_INET6))
        return;
    const int on = 1;
    const int idle = whole_seconds(config.tcp_keepalive_idle_ms);
    const int interval = whole_seconds(config.tcp_keepalive_interval_ms);
    const int count = static_cast<int>(config.tcp_keepalive_count);
    (void)::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

}  // namespace pgrail::proxy
