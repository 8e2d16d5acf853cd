// Rule selection and the names of the policy's enumerations.
#include "pgrail/policy/policy.hpp"

#include <cassert>

namespace pgrail::policy {

namespace {

bool any_glob(const std::vector<std::string>& patterns, std::string_view text) {
    for (const auto& pattern : patterns)
        if (glob_match(pattern, text)) return true;
    return false;
}

bool has_star(const std::vector<std::string>& patterns) {
    for (const auto& pattern : patterns)
        if (pattern == "*") return true;
    return false;
}

}  // namespace

bool SessionMatch::matches_everything() const {
    const auto all_strings = [](const std::vector<std::string>& list) { return list.empty() || has_star(list); };
    bool all_clients = clients.empty();
    for (const auto& cidr : clients) all_clients = all_clients || cidr.matches_everything();
    return all_strings(users) && all_strings(identities) && all_strings(databases) && all_strings(application_names) && all_clients;
}

bool Policy::decides_alike(const Policy& other, const SessionInfo& session) const {
    return mode == other.mode && on_parse_error == other.on_parse_error && masking_key == other.masking_key &&
           rule_for(session).guards == other.rule_for(session).guards;
}

const Rule& Policy::rule_for(const SessionInfo& session) const {
    assert(!rules.empty());
    std::optional<std::array<std::uint8_t, 16>> address;
    bool address_parsed = false;
    for (const auto& rule : rules) {
        const auto& match = rule.match;
        if (!match.users.empty() && !any_glob(match.users, session.user)) continue;
        if (!match.identities.empty() &&
            !any_glob(match.identities, session.identity.empty() ? session.user : session.identity))
            continue;
        if (!match.databases.empty() && !any_glob(match.databases, session.database)) continue;
        if (!match.application_names.empty() && !any_glob(match.application_names, session.application_name))
            continue;
        if (!match.clients.empty()) {
            if (!address_parsed) {
                address = parse_address(session.client_address);
                address_parsed = true;
            }
            bool inside = false;
            for (const auto& cidr : match.clients) {
                // ::/0 is the explicit catch-all and also covers Unix sockets (no address).
                if (cidr.matches_everything() || (address && cidr.contains(*address))) {
                    inside = true;
                    break;
                }
            }
            if (!inside) continue;
        }
        return rule;
    }
    return rules.back();  // the loader guarantees a catch-all; never reached
}

const MessageOverride& Policy::message_for(std::string_view guard) const {
    for (std::size_t index = 0; index < guard_names.size(); ++index)
        if (guard == guard_names[index]) return messages[index];
    static const MessageOverride none;
    return none;
}

const char* to_string(Mode mode) { return mode == Mode::enforce ? "enforce" : "audit_only"; }

const char* to_string(OnParseError on_parse_error) { return on_parse_error == OnParseError::deny ? "deny" : "allow"; }

const char* to_string(DdlMode ddl) {
    switch (ddl) {
        case DdlMode::migrations_only: return "migrations_only";
        case DdlMode::deny: return "deny";
        case DdlMode::allow: return "allow";
    }
    return "?";
}

const char* to_string(OptionsMode options) {
    switch (options) {
        case OptionsMode::deny: return "deny";
        case OptionsMode::allow: return "allow";
        case OptionsMode::allow_list: return "allow_list";
    }
    return "?";
}

const char* to_string(Decision::Action action) {
    switch (action) {
        case Decision::Action::allow: return "allow";
        case Decision::Action::deny: return "deny";
        case Decision::Action::intercept: return "intercept";
    }
    return "?";
}

const char* class_name(sql::StatementClass statement_class) {
    using C = sql::StatementClass;
    switch (statement_class) {
        case C::read: return "read";
        case C::write: return "write";
        case C::ddl: return "ddl";
        case C::transaction: return "transaction";
        case C::session: return "session";
        case C::utility: return "utility";
        case C::procedural: return "procedural";
        case C::copy: return "copy";
        case C::unknown: return "unknown";
    }
    return "unknown";
}

}  // namespace pgrail::policy
