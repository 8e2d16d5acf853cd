// Strict YAML reading: unknown keys and wrong types are errors naming file:line:column.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace pgrail::config {

// An error in a YAML file; what() is "file:line:column: message" (1-based).
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Reads one YAML document and checks keys and types as it goes.
class YamlReader {
public:
    // Parses `path`; throws ConfigError (with the position of the syntax error) on failure.
    static YamlReader from_file(const std::string& path);
    static YamlReader from_string(const std::string& text, const std::string& name);

    [[nodiscard]] const YAML::Node& root() const { return root_; }
    [[nodiscard]] const std::string& file() const { return file_; }

    // "file:line:column" of a node.
    [[nodiscard]] std::string where(const YAML::Node& node) const;
    [[noreturn]] void fail(const YAML::Node& node, std::string_view message) const;

    // Requires `node` to be a mapping whose keys are all in `allowed`.
    void expect_map(const YAML::Node& node, std::initializer_list<std::string_view> allowed,
                    std::string_view what) const;

    [[nodiscard]] std::string as_string(const YAML::Node& node, std::string_view key) const;
    [[nodiscard]] bool as_bool(const YAML::Node& node, std::string_view key) const;
    [[nodiscard]] std::int64_t as_int(const YAML::Node& node, std::string_view key, std::int64_t min,
                                      std::int64_t max) const;
    [[nodiscard]] std::vector<std::string> as_string_list(const YAML::Node& node, std::string_view key) const;
    // One of `choices`.
    [[nodiscard]] std::string as_choice(const YAML::Node& node, std::string_view key,
                                        std::initializer_list<std::string_view> choices) const;

private:
    YamlReader(YAML::Node root, std::string file) : root_(std::move(root)), file_(std::move(file)) {}
    YAML::Node root_;
    std::string file_;
};

}  // namespace pgrail::config
