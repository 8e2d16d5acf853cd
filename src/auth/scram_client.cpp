// The client side of SCRAM-SHA-256(-PLUS) as libpq speaks it, and the md5/cleartext password answers.
#include "pgrail/auth/scram_client.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "crypto.hpp"
#include "pgrail/auth/scram.hpp"
#include "pgrail/auth/scram_server.hpp"
#include "scram_parse.hpp"

namespace pgrail::auth {

namespace {

constexpr std::size_t nonce_bytes = 18;  // as libpq

struct DerivedKeys {
    detail::Digest client_key{};
    detail::Digest server_key{};
};

// PBKDF2 of the role's password costs about a millisecond and a half per login at 4096 iterations,
// and the server answers every login of a role with the same salt and count: keep the derived keys
// (as PgBouncer does) for the last few (password, salt, iterations), process-wide.
class KeyCache {
public:
    std::optional<DerivedKeys> find(const std::string& key) {
        const std::lock_guard lock(mutex_);
        const auto found = entries_.find(key);
        if (found == entries_.end()) return std::nullopt;
        return found->second;
    }
    void put(const std::string& key, const DerivedKeys& keys) {
        const std::lock_guard lock(mutex_);
        if (!entries_.emplace(key, keys).second) return;
        order_.push_back(key);
        if (order_.size() > capacity) {
            entries_.erase(order_.front());
            order_.pop_front();
        }
    }

private:
    static constexpr std::size_t capacity = 256;
    std::mutex mutex_;
    std::map<std::string, DerivedKeys> entries_;
    std::deque<std::string> order_;
};

KeyCache& key_cache() {
    static KeyCache cache;
    return cache;
}

DerivedKeys derive_keys(const std::string& password, const std::string& salt, int iterations) {
    // Keyed by the password's hash, so the cache holds no second copy of the password itself.
    const auto key = std::string(detail::view(detail::sha256(password))) + std::to_string(iterations) + '\0' + salt;
    if (auto cached = key_cache().find(key)) return *cached;
    const auto salted = detail::salted_password(password, salt, iterations);
    DerivedKeys keys;
    keys.client_key = detail::hmac_sha256(detail::view(salted), "Client Key");
    keys.server_key = detail::hmac_sha256(detail::view(salted), "Server Key");
    key_cache().put(key, keys);
    return keys;
}

}  // namespace

ScramClient::ScramClient(std::string_view password, std::string channel_binding, bool require_channel_binding)
    : password_(scram_normalize_password(password)),
      channel_binding_(std::move(channel_binding)),
      require_channel_binding_(require_channel_binding) {}

std::optional<std::string_view> ScramClient::choose_mechanism(const std::vector<std::string_view>& offered) {
    const auto has = [&](std::string_view name) { return std::find(offered.begin(), offered.end(), name) != offered.end(); };
    if (state_ != State::initial) {
        error_ = "the SCRAM mechanism was already chosen";
        return std::nullopt;
    }
    if (!channel_binding_.empty() && has(scram_sha_256_plus)) {
        plus_ = true;
        gs2_header_ = fmt::format("p={},,", tls_server_end_point);
    } else if (require_channel_binding_) {
        error_ = "channel binding is required, but the server did not offer SCRAM-SHA-256-PLUS over TLS";
        return std::nullopt;
    } else if (has(scram_sha_256)) {
        // 'y': we could bind but the server did not offer it, so a server that can will see a downgrade.
        gs2_header_ = channel_binding_.empty() ? "n,," : "y,,";
    } else {
        error_ = "the server offers no SASL mechanism pgrail supports (SCRAM-SHA-256)";
        return std::nullopt;
    }
    state_ = State::mechanism_chosen;
    return plus_ ? scram_sha_256_plus : scram_sha_256;
}

std::string ScramClient::client_first() {
    // The user name is empty: the server takes it from the startup packet (as libpq sends it).
    return client_first(detail::base64_encode(detail::random_bytes(nonce_bytes)), "");
}

std::string ScramClient::client_first(std::string_view nonce, std::string_view user) {
    if (state_ != State::mechanism_chosen) {
        error_ = "client_first before choose_mechanism";
        return {};
    }
    client_nonce_ = std::string(nonce);
    client_first_bare_ = fmt::format("n={},r={}", user, client_nonce_);
    state_ = State::first_sent;
    return gs2_header_ + client_first_bare_;
}

ScramClientStep ScramClient::server_first(std::string_view message) {
    const auto failed = [this](std::string why) {
        state_ = State::finished;
        error_ = why;
        return ScramClientStep{false, {}, std::move(why)};
    };
    if (state_ != State::first_sent) return failed("SCRAM server-first-message out of order");
    if (message.empty() || message.size() > max_scram_message_length || message.find('\0') != std::string_view::npos)
        return failed("malformed SCRAM server-first-message (empty, too long or with a NUL byte)");
    detail::AttributeReader reader{message, {}};
    if (message.front() == 'm') return failed("the server requires an unsupported SCRAM extension");
    const auto nonce = reader.read('r');
    if (!nonce) return failed("malformed SCRAM server-first-message: " + reader.error);
    if (nonce->size() <= client_nonce_.size() || !nonce->starts_with(client_nonce_) ||
        !detail::AttributeReader::is_printable(*nonce))
        return failed("invalid SCRAM response (the server's nonce does not extend ours)");
    const auto salt_text = reader.read('s');
    if (!salt_text) return failed("malformed SCRAM server-first-message: " + reader.error);
    const auto salt = detail::base64_decode(*salt_text);
    if (!salt || salt->empty() || salt->size() > max_scram_salt_length)
        return failed("malformed SCRAM server-first-message: the salt is not valid base64");
    const auto iterations_text = reader.read('i');
    if (!iterations_text) return failed("malformed SCRAM server-first-message: " + reader.error);
    int iterations = 0;
    const auto* end = iterations_text->data() + iterations_text->size();
    const auto [ptr, ec] = std::from_chars(iterations_text->data(), end, iterations);
    if (iterations_text->empty() || ec != std::errc() || ptr != end || iterations < 1 ||
        iterations > max_scram_iterations)
        return failed(fmt::format("malformed SCRAM server-first-message: the iteration count must be from 1 to {}",
                                  max_scram_iterations));
    if (!reader.rest.empty() || message.back() == ',')
        return failed("malformed SCRAM server-first-message: garbage at its end");

    const auto [client_key, server_key] = derive_keys(password_, *salt, iterations);
    const auto stored_key = detail::sha256(detail::view(client_key));
    const auto without_proof =
        fmt::format("c={},r={}", detail::base64_encode(gs2_header_ + (plus_ ? channel_binding_ : std::string())), *nonce);
    const auto auth_message = client_first_bare_ + "," + std::string(message) + "," + without_proof;
    const auto signature = detail::hmac_sha256(detail::view(stored_key), auth_message);
    std::string proof(detail::sha256_size, '\0');
    for (std::size_t i = 0; i < proof.size(); ++i) proof[i] = static_cast<char>(client_key[i] ^ signature[i]);
    const auto server_signature = detail::hmac_sha256(detail::view(server_key), auth_message);
    expected_server_signature_ = std::string(detail::view(server_signature));
    state_ = State::proof_sent;
    return {true, without_proof + ",p=" + detail::base64_encode(proof), {}};
}

ScramClientStep ScramClient::server_final(std::string_view message) {
    const auto failed = [this](std::string why) {
        state_ = State::finished;
        error_ = why;
        return ScramClientStep{false, {}, std::move(why)};
    };
    if (state_ != State::proof_sent) return failed("SCRAM server-final-message out of order");
    if (message.empty() || message.size() > max_scram_message_length || message.find('\0') != std::string_view::npos)
        return failed("malformed SCRAM server-final-message");
    detail::AttributeReader reader{message, {}};
    if (message.front() == 'e') {
        const auto text = reader.read('e');
        return failed(fmt::format("the server refused the SCRAM exchange: {}", text ? *text : std::string_view("?")));
    }
    const auto verifier_text = reader.read('v');
    if (!verifier_text) return failed("malformed SCRAM server-final-message: " + reader.error);
    const auto signature = detail::base64_decode(*verifier_text);
    if (!signature || signature->size() != detail::sha256_size)
        return failed("malformed SCRAM server-final-message: the server signature is not base64 of 32 bytes");
    if (!reader.rest.empty() || message.back() == ',')
        return failed("malformed SCRAM server-final-message: garbage at its end");
    if (!detail::constant_time_equal(*signature, expected_server_signature_))
        return failed("incorrect server signature (the server does not know this role's SCRAM verifier)");
    state_ = State::finished;
    return {true, {}, {}};
}

std::string md5_password_response(std::string_view user, std::string_view password,
                                  const std::array<unsigned char, 4>& salt) {
    const auto inner = detail::md5_hex(std::string(password) + std::string(user));
    return "md5" + detail::md5_hex(inner + std::string(reinterpret_cast<const char*>(salt.data()), salt.size()));
}

std::optional<std::string> cleartext_password_response(std::string_view password) {
    if (password.find('\0') != std::string_view::npos) return std::nullopt;
    return std::string(password);
}

}  // namespace pgrail::auth
