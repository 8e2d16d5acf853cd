// Loading a policy file: strict YAML, every error names file:line:column.
#pragma once

#include <memory>
#include <string>

#include "pgrail/config/yaml_reader.hpp"
#include "pgrail/policy/policy.hpp"

namespace pgrail::policy {

struct LoadOptions {
    // The registry directory named in the DDL hint (the server config's migrations.dir).
    std::string migrations_dir = "migrations";
};

// Throw config::ConfigError whose what() is "file:line:column: message".
[[nodiscard]] std::shared_ptr<const Policy> load_policy_file(const std::string& path,
                                                            const LoadOptions& options = {});
[[nodiscard]] std::shared_ptr<const Policy> load_policy_string(const std::string& yaml, const std::string& name,
                                                              const LoadOptions& options = {});

// A human-readable summary (mode, rules, their matches and guards), as `pgrail check` prints it.
[[nodiscard]] std::string summarize(const Policy& policy);

}  // namespace pgrail::policy
