// Adds or replaces one identity in the identities file's YAML, keeping every other entry.
#include "pgrail/auth/identities_writer.hpp"

#include <fmt/format.h>

#include "pgrail/config/yaml_reader.hpp"

namespace pgrail::auth {

IdentityUpsert upsert_identity(const std::string& existing, const std::string& file, const std::string& name,
                               const std::string& role, const std::string& verifier) {
    const auto reader = config::YamlReader::from_string(existing, file);
    YAML::Node root = YAML::Clone(reader.root());
    if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) reader.fail(reader.root(), "the identities file must be a mapping (identities, roles)");
    // Checked on the parsed nodes, which carry positions (a clone does not).
    const YAML::Node& original_root = reader.root();
    YAML::Node identities(YAML::NodeType::Sequence);
    if (original_root.IsMap() && original_root["identities"] && !original_root["identities"].IsNull())
        identities = original_root["identities"];
    if (!identities.IsSequence())
        reader.fail(identities, "'identities' must be a list of {name, role, verifier}");

    IdentityUpsert result;
    YAML::Node entries(YAML::NodeType::Sequence);
    for (const auto& item : identities) {
        if (!item.IsMap()) reader.fail(item, "an identity must be a mapping");
        YAML::Node copy = YAML::Clone(item);
        if (item["name"] && item["name"].IsScalar() && item["name"].Scalar() == name) {
            copy["role"] = role;
            copy["verifier"] = verifier;
            result.replaced = true;
        }
        copy.SetStyle(YAML::EmitterStyle::Flow);
        entries.push_back(copy);
    }
    if (!result.replaced) {
        YAML::Node entry(YAML::NodeType::Map);
        entry["name"] = name;
        entry["role"] = role;
        entry["verifier"] = verifier;
        entry.SetStyle(YAML::EmitterStyle::Flow);
        entries.push_back(entry);
    }
    root["identities"] = entries;

    YAML::Emitter out;
    out << root;
    if (!out.good()) throw config::ConfigError(fmt::format("{}: cannot write the identities file: {}", file, out.GetLastError()));
    result.text = "# pgrail identities file (written by pgrail passwd: comments are not kept).\n"
                  "# identities: who may log in to pgrail; roles: where pgrail's own password for each role comes from.\n";
    result.text += out.c_str();
    result.text += '\n';
    return result;
}

}  // namespace pgrail::auth
