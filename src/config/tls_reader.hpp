// Reading the `tls:` section of the serve configuration (called by serve_config.cpp).
#pragma once

#include <string>

#include "pgrail/config/tls_config.hpp"
#include "pgrail/config/yaml_reader.hpp"

namespace pgrail::config {

// Reads and validates `tls` (a mapping with `client` and `server`). Relative file names are
// resolved against base_dir; every named file must be readable now (ConfigError at its key).
[[nodiscard]] TlsConfig read_tls_config(const YamlReader& reader, const YAML::Node& tls, const std::string& base_dir);

}  // namespace pgrail::config
