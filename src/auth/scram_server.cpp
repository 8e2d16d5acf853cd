// The server side of SCRAM-SHA-256(-PLUS): GS2 header, channel binding and proof checked as auth-scram.c does.
#include "pgrail/auth/scram_server.hpp"

#include <cassert>

#include <fmt/format.h>

#include "crypto.hpp"
#include "scram_parse.hpp"

namespace pgrail::auth {

namespace {

constexpr std::size_t nonce_bytes = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr std::string_view malformed = "malformed SCRAM message";

// PostgreSQL refuses an empty message and one with a NUL inside (its length must match strlen).
std::string check_message(std::string_view message) {
    if (message.empty()) return "The message is empty.";
    if (message.find('\0') != std::string_view::npos) return "Message length does not match input length.";
    if (message.size() > max_scram_message_length)
        return fmt::format("The message is longer than {} bytes.", max_scram_message_length);
    return {};
}

}  // namespace

ScramServer ScramServer::for_verifier(ScramVerifier verifier, std::string channel_binding) {
    return ScramServer(std::move(verifier), false, std::move(channel_binding));
}

std::string new_mock_secret() { return detail::random_bytes(32); }

ScramServer ScramServer::mock(std::string_view user, std::string_view mock_secret, std::string channel_binding,
                              int iterations) {
    assert(mock_secret.size() >= 16 && "ScramServer::mock needs a secret from new_mock_secret()");
    // The salt an unknown name gets must not change between attempts (a changing salt would tell an
    // attacker the name is unknown) and must not be guessable without the secret.
    ScramVerifier verifier;
    verifier.iterations = iterations;
    const auto salt = detail::hmac_sha256(mock_secret, user);
    verifier.salt.assign(reinterpret_cast<const char*>(salt.data()), scram_salt_length);
    const auto keys = detail::random_bytes(64);
    std::copy(keys.begin(), keys.begin() + 32, verifier.stored_key.begin());
    std::copy(keys.begin() + 32, keys.end(), verifier.server_key.begin());
    return ScramServer(std::move(verifier), true, std::move(channel_binding));
}

std::vector<std::string_view> ScramServer::mechanisms(bool channel_binding) {
    if (channel_binding) return {scram_sha_256_plus, scram_sha_256};
    return {scram_sha_256};
}

ScramStep ScramServer::fail(ScramFailure kind, std::string error, std::string detail) {
    state_ = State::finished;
    ScramStep step;
    step.status = ScramStep::Status::failure;
    step.failure = kind;
    step.error = std::move(error);
    step.detail = std::move(detail);
    return step;
}

ScramStep ScramServer::client_first(std::string_view mechanism, std::string_view message) {
    const auto nonce = detail::base64_encode(detail::random_bytes(nonce_bytes));
    return client_first(mechanism, message, nonce);
}

ScramStep ScramServer::client_first(std::string_view mechanism, std::string_view message,
                                    std::string_view server_nonce) {
    if (state_ != State::initial)
        return fail(ScramFailure::protocol_violation, std::string(malformed), "The exchange has already started.");
    if (mechanism == scram_sha_256_plus && !channel_binding_.empty()) {
        plus_ = true;
    } else if (mechanism != scram_sha_256) {
        return fail(ScramFailure::protocol_violation, "client selected an invalid SASL authentication mechanism");
    }
    if (auto problem = check_message(message); !problem.empty())
        return fail(ScramFailure::protocol_violation, std::string(malformed), std::move(problem));

    // gs2-header: gs2-cbind-flag "," [authzid] ","
    detail::AttributeReader reader{message, {}};
    cbind_flag_ = message.front();
    switch (cbind_flag_) {
        case 'n':
        case 'y':
            if (plus_)
                return fail(ScramFailure::protocol_violation, std::string(malformed),
                            "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel "
                            "binding data.");
            if (cbind_flag_ == 'y' && !channel_binding_.empty())
                // The client could bind but believes we cannot: a downgrade if we offered -PLUS.
                return fail(ScramFailure::protocol_violation, "SCRAM channel binding negotiation error",
                            "The client supports SCRAM channel binding but thinks the server does not.  However, "
                            "this server does support channel binding.");
            reader.rest.remove_prefix(1);
            if (reader.rest.empty() || reader.rest.front() != ',')
                return fail(ScramFailure::protocol_violation, std::string(malformed),
                            fmt::format("Comma expected, but found character \"{}\".",
                                        reader.rest.empty() ? std::string("end of string")
                                                            : detail::AttributeReader::printable(reader.rest.front())));
            reader.rest.remove_prefix(1);
            break;
        case 'p': {
            if (!plus_)
                return fail(ScramFailure::protocol_violation, std::string(malformed),
                            "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message "
                            "includes channel binding data.");
            const auto type = reader.read('p');
            if (!type) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
            if (*type != tls_server_end_point)
                return fail(ScramFailure::protocol_violation,
                            fmt::format("unsupported SCRAM channel-binding type \"{}\"", *type));
            break;
        }
        default:
            return fail(ScramFailure::protocol_violation, std::string(malformed),
                        fmt::format("Unexpected channel-binding flag \"{}\".",
                                    detail::AttributeReader::printable(cbind_flag_)));
    }
    if (!reader.rest.empty() && reader.rest.front() == 'a')
        return fail(ScramFailure::feature_not_supported, "client uses authorization identity, but it is not supported");
    if (reader.rest.empty() || reader.rest.front() != ',')
        return fail(ScramFailure::protocol_violation, std::string(malformed),
                    fmt::format("Unexpected attribute \"{}\" in client-first-message.",
                                reader.rest.empty() ? std::string("end of string")
                                                    : detail::AttributeReader::printable(reader.rest.front())));
    reader.rest.remove_prefix(1);
    gs2_header_ = std::string(message.substr(0, message.size() - reader.rest.size()));
    client_first_bare_ = std::string(reader.rest);
    if (!reader.rest.empty() && reader.rest.front() == 'm')
        return fail(ScramFailure::feature_not_supported, "client requires an unsupported SCRAM extension");
    // The user name in n= is ignored, as PostgreSQL does: the startup packet's user is the identity.
    if (!reader.read('n')) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
    const auto nonce = reader.read('r');
    if (!nonce) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
    if (nonce->empty() || !detail::AttributeReader::is_printable(*nonce))
        return fail(ScramFailure::protocol_violation, "non-printable characters in SCRAM nonce");
    client_nonce_ = std::string(*nonce);
    while (!reader.rest.empty()) {  // optional extensions, ignored as PostgreSQL ignores them
        char attr = 0;
        if (!reader.read_any(attr)) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
    }

    server_nonce_ = std::string(server_nonce);
    server_first_ = fmt::format("r={}{},s={},i={}", client_nonce_, server_nonce_, detail::base64_encode(verifier_.salt),
                                verifier_.iterations);
    state_ = State::first_done;
    ScramStep step;
    step.status = ScramStep::Status::next;
    step.message = server_first_;
    return step;
}

ScramStep ScramServer::client_final(std::string_view message) {
    if (state_ != State::first_done)
        return fail(ScramFailure::protocol_violation, std::string(malformed),
                    "client-final-message out of order.");
    if (auto problem = check_message(message); !problem.empty())
        return fail(ScramFailure::protocol_violation, std::string(malformed), std::move(problem));
    detail::AttributeReader reader{message, {}};
    const auto binding = reader.read('c');
    if (!binding) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
    if (plus_) {
        const auto expected = detail::base64_encode(gs2_header_ + channel_binding_);
        if (!detail::constant_time_equal(*binding, expected))
            return fail(ScramFailure::protocol_violation, "SCRAM channel binding check failed");
    } else if (!(*binding == "biws" && cbind_flag_ == 'n') && !(*binding == "eSws" && cbind_flag_ == 'y')) {
        return fail(ScramFailure::protocol_violation,
                    "unexpected SCRAM channel-binding attribute in client-final-message");
    }
    const auto nonce = reader.read('r');
    if (!nonce) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
    // Optional extensions, then the proof, which must come last.
    std::size_t proof_start = 0;
    std::optional<std::string_view> proof_text;
    for (;;) {
        proof_start = message.size() - reader.rest.size();
        char attr = 0;
        const auto value = reader.read_any(attr);
        if (!value) return fail(ScramFailure::protocol_violation, std::string(malformed), reader.error);
        if (attr == 'p') {
            proof_text = value;
            break;
        }
    }
    const auto proof = detail::base64_decode(*proof_text);
    if (!proof || proof->size() != detail::sha256_size)
        return fail(ScramFailure::protocol_violation, std::string(malformed), "Malformed proof in client-final-message.");
    // read_any stops at a ',' too: anything left after the proof is garbage.
    if (!reader.rest.empty() || message.back() == ',')
        return fail(ScramFailure::protocol_violation, std::string(malformed),
                    "Garbage found at the end of client-final-message.");
    if (*nonce != client_nonce_ + server_nonce_)
        return fail(ScramFailure::protocol_violation, "invalid SCRAM response", "Nonce does not match.");

    // proof_start points at "p=": the message without proof ends before the ',' that precedes it.
    const auto without_proof = message.substr(0, proof_start - 1);
    const auto auth_message = client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
    const auto signature = detail::hmac_sha256(
        std::string_view(reinterpret_cast<const char*>(verifier_.stored_key.data()), verifier_.stored_key.size()),
        auth_message);
    std::string client_key(detail::sha256_size, '\0');
    for (std::size_t i = 0; i < client_key.size(); ++i)
        client_key[i] = static_cast<char>(static_cast<unsigned char>((*proof)[i]) ^ signature[i]);
    const auto stored = detail::sha256(client_key);
    const bool proof_ok = detail::constant_time_equal(
        detail::view(stored),
        std::string_view(reinterpret_cast<const char*>(verifier_.stored_key.data()), verifier_.stored_key.size()));
    if (doomed_) return fail(ScramFailure::authentication_failed, "password authentication failed", "unknown identity");
    if (!proof_ok)
        return fail(ScramFailure::authentication_failed, "password authentication failed", "the SCRAM proof is wrong");

    const auto server_signature = detail::hmac_sha256(
        std::string_view(reinterpret_cast<const char*>(verifier_.server_key.data()), verifier_.server_key.size()),
        auth_message);
    state_ = State::finished;
    ScramStep step;
    step.status = ScramStep::Status::success;
    step.message = "v=" + detail::base64_encode(detail::view(server_signature));
    return step;
}

}  // namespace pgrail::auth
