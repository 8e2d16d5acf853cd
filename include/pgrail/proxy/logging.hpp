// Process-wide log set-up: spdlog to stderr, as text or as JSON lines.
#pragma once

#include <string>

namespace pgrail::proxy {

// `level`: trace debug info warn error critical off; `format`: text | json.
void configure_logging(const std::string& level, const std::string& format);

}  // namespace pgrail::proxy
