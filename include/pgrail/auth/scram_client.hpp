// The client side of SCRAM-SHA-256(-PLUS), md5 and cleartext: pgrail logging into the server as a role.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgrail::auth {

struct ScramClientStep {
    bool ok = false;
    std::string message;  // ok: the next message to send (client-final-message), empty after the last step
    std::string error;    // !ok: why, in a sentence for the log and the client's FATAL
};

class ScramClient {
public:
    // `password`: the role's password (SASLprep'd as libpq does). `channel_binding`: the
    // tls-server-end-point data of the server leg's certificate (RFC 5929), empty when the server leg
    // is not TLS. `require_channel_binding`: libpq's channel_binding=require.
    explicit ScramClient(std::string_view password, std::string channel_binding = {},
                         bool require_channel_binding = false);

    // The mechanism to answer AuthenticationSASL with: SCRAM-SHA-256-PLUS when the server offers it and
    // channel-binding data is held, else SCRAM-SHA-256. nullopt (error() says why) when none fits.
    [[nodiscard]] std::optional<std::string_view> choose_mechanism(const std::vector<std::string_view>& offered);
    // The data of SASLInitialResponse (client-first-message); call after choose_mechanism.
    [[nodiscard]] std::string client_first();
    // The same with a given nonce and n= user name (RFC test vectors only; pgrail sends an empty
    // name, as libpq does, and a fresh nonce).
    [[nodiscard]] std::string client_first(std::string_view nonce, std::string_view user);
    // AuthenticationSASLContinue's data -> the data of SASLResponse (client-final-message with the proof).
    [[nodiscard]] ScramClientStep server_first(std::string_view message);
    // AuthenticationSASLFinal's data: ok when the server proved it knows the verifier.
    [[nodiscard]] ScramClientStep server_final(std::string_view message);

    [[nodiscard]] const std::string& error() const { return error_; }

private:
    std::string password_;
    std::string channel_binding_;
    bool require_channel_binding_ = false;
    bool plus_ = false;
    std::string gs2_header_;
    std::string client_nonce_;
    std::string client_first_bare_;
    std::string expected_server_signature_;
    enum class State { initial, mechanism_chosen, first_sent, proof_sent, finished } state_ = State::initial;
    std::string error_;
};

// The PasswordMessage text for AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt),
// lower-case hex (without the message's terminating NUL).
[[nodiscard]] std::string md5_password_response(std::string_view user, std::string_view password,
                                                const std::array<unsigned char, 4>& salt);

// The PasswordMessage text for AuthenticationCleartextPassword: the password itself, which must
// not contain a NUL (nullopt then: the wire form cannot carry it).
[[nodiscard]] std::optional<std::string> cleartext_password_response(std::string_view password);

}  // namespace pgrail::auth
