// The server side of one SCRAM-SHA-256(-PLUS) exchange (RFC 5802, RFC 7677), checked as PostgreSQL checks it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/auth/scram.hpp"

namespace pgrail::auth {

// Longest client-first or client-final message accepted (libpq's are under 200 bytes).
inline constexpr std::size_t max_scram_message_length = 4096;
inline constexpr std::string_view tls_server_end_point = "tls-server-end-point";

// How PostgreSQL classifies a failed exchange (the SQLSTATE it answers with).
enum class ScramFailure {
    none,
    protocol_violation,      // 08P01: malformed message, channel-binding mismatch, nonce mismatch, wrong order
    feature_not_supported,   // 0A000: authorization identity, mandatory extension
    authentication_failed,   // 28P01: wrong proof, or the mock exchange of an unknown identity
};

struct ScramStep {
    enum class Status { next, success, failure };
    Status status = Status::failure;
    // next: the body of AuthenticationSASLContinue (server-first-message);
    // success: the body of AuthenticationSASLFinal (server-final-message).
    std::string message;
    ScramFailure failure = ScramFailure::none;
    // failure: PostgreSQL's primary message and detail for the client. For authentication_failed the
    // client must hear only "password authentication failed for user ..." (the same for an unknown
    // identity); `detail` then says why, for the server's log alone.
    std::string error;
    std::string detail;
};

// 32 bytes from the CSPRNG for ScramServer::mock: make one at start-up and keep it for the process.
[[nodiscard]] std::string new_mock_secret();

class ScramServer {
public:
    // An exchange against a known identity's verifier. `channel_binding` is the tls-server-end-point
    // data of the client leg (the hash of pgrail's certificate, RFC 5929); empty when the client did
    // not connect with TLS, and then SCRAM-SHA-256-PLUS is not offered.
    [[nodiscard]] static ScramServer for_verifier(ScramVerifier verifier, std::string channel_binding = {});
    // For an unknown identity: the same messages as a real exchange (a salt derived from the name and
    // `mock_secret`, so it is stable across attempts, like PostgreSQL's scram_mock_salt) and always
    // authentication_failed at the end. `mock_secret`: at least 16 random bytes made once per
    // process (new_mock_secret()). `iterations`: what real identities offer (a count no identity has
    // would tell the name is unknown).
    [[nodiscard]] static ScramServer mock(std::string_view user, std::string_view mock_secret,
                                          std::string channel_binding = {}, int iterations = default_scram_iterations);

    // The mechanism names for AuthenticationSASL, in PostgreSQL's order.
    [[nodiscard]] static std::vector<std::string_view> mechanisms(bool channel_binding);
    [[nodiscard]] std::vector<std::string_view> mechanisms() const { return mechanisms(!channel_binding_.empty()); }

    // SASLInitialResponse: the chosen mechanism and its data (client-first-message).
    [[nodiscard]] ScramStep client_first(std::string_view mechanism, std::string_view message);
    // The same with a given server nonce (RFC test vectors only: a real exchange needs a fresh one).
    [[nodiscard]] ScramStep client_first(std::string_view mechanism, std::string_view message,
                                         std::string_view server_nonce);
    // SASLResponse: client-final-message.
    [[nodiscard]] ScramStep client_final(std::string_view message);

private:
    ScramServer(ScramVerifier verifier, bool doomed, std::string channel_binding)
        : verifier_(std::move(verifier)), doomed_(doomed), channel_binding_(std::move(channel_binding)) {}

    enum class State { initial, first_done, finished };
    ScramStep fail(ScramFailure kind, std::string error, std::string detail = {});

    ScramVerifier verifier_;
    bool doomed_ = false;
    std::string channel_binding_;
    State state_ = State::initial;
    bool plus_ = false;       // the client chose SCRAM-SHA-256-PLUS
    char cbind_flag_ = 0;     // 'n', 'y' or 'p'
    std::string gs2_header_;  // "n,," / "y,," / "p=tls-server-end-point,,"
    std::string client_first_bare_;
    std::string client_nonce_;
    std::string server_nonce_;
    std::string server_first_;
};

}  // namespace pgrail::auth
