// Strict YAML reading with file:line:column errors.
#include "pgrail/config/yaml_reader.hpp"

#include <fmt/format.h>

namespace pgrail::config {

namespace {

std::string position(const std::string& file, const YAML::Mark& mark) {
    if (mark.is_null()) return file;
    return fmt::format("{}:{}:{}", file, mark.line + 1, mark.column + 1);
}

std::string join(std::initializer_list<std::string_view> words) {
    std::string out;
    for (auto word : words) {
        if (!out.empty()) out += ", ";
        out += word;
    }
    return out;
}

}  // namespace

YamlReader YamlReader::from_file(const std::string& path) {
    try {
        return YamlReader(YAML::LoadFile(path), path);
    } catch (const YAML::BadFile&) {
        throw ConfigError(fmt::format("{}: cannot read file", path));
    } catch (const YAML::Exception& e) {
        throw ConfigError(fmt::format("{}: {}", position(path, e.mark), e.msg));
    }
}

YamlReader YamlReader::from_string(const std::string& text, const std::string& name) {
    try {
        return YamlReader(YAML::Load(text), name);
    } catch (const YAML::Exception& e) {
        throw ConfigError(fmt::format("{}: {}", position(name, e.mark), e.msg));
    }
}

std::string YamlReader::where(const YAML::Node& node) const { return position(file_, node.Mark()); }

void YamlReader::fail(const YAML::Node& node, std::string_view message) const {
    throw ConfigError(fmt::format("{}: {}", where(node), message));
}

void YamlReader::expect_map(const YAML::Node& node, std::initializer_list<std::string_view> allowed,
                            std::string_view what) const {
    if (!node.IsMap()) fail(node, fmt::format("{} must be a mapping", what));
    for (const auto& entry : node) {
        const auto key = entry.first.Scalar();
        bool known = false;
        for (auto name : allowed) known = known || key == name;
        if (!known) fail(entry.first, fmt::format("unknown key '{}' in {} (expected one of: {})", key, what, join(allowed)));
    }
}

std::string YamlReader::as_string(const YAML::Node& node, std::string_view key) const {
    if (!node.IsScalar()) fail(node, fmt::format("'{}' must be a string", key));
    return node.Scalar();
}

bool YamlReader::as_bool(const YAML::Node& node, std::string_view key) const {
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value))
        fail(node, fmt::format("'{}' must be true or false", key));
    return value;
}

std::int64_t YamlReader::as_int(const YAML::Node& node, std::string_view key, std::int64_t min,
                                std::int64_t max) const {
    std::int64_t value = 0;
    if (!node.IsScalar() || !YAML::convert<std::int64_t>::decode(node, value))
        fail(node, fmt::format("'{}' must be an integer", key));
    if (value < min || value > max) fail(node, fmt::format("'{}' must be between {} and {}", key, min, max));
    return value;
}

std::vector<std::string> YamlReader::as_string_list(const YAML::Node& node, std::string_view key) const {
    if (!node.IsSequence()) fail(node, fmt::format("'{}' must be a list of strings", key));
    std::vector<std::string> out;
    for (const auto& item : node) out.push_back(as_string(item, key));
    return out;
}

std::string YamlReader::as_choice(const YAML::Node& node, std::string_view key,
                                  std::initializer_list<std::string_view> choices) const {
    auto value = as_string(node, key);
    for (auto choice : choices)
        if (value == choice) return value;
    fail(node, fmt::format("'{}' must be one of: {} (got '{}')", key, join(choices), value));
}

}  // namespace pgrail::config
