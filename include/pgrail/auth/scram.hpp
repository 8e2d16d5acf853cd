// SCRAM-SHA-256 verifiers in PostgreSQL's pg_authid text form, and SASLprep as PostgreSQL applies it.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pgrail::auth {

inline constexpr std::string_view scram_sha_256 = "SCRAM-SHA-256";
inline constexpr std::string_view scram_sha_256_plus = "SCRAM-SHA-256-PLUS";
// PostgreSQL's default (scram_iterations) and RFC 7677's minimum.
inline constexpr int default_scram_iterations = 4096;
// Making a verifier: no fewer than RFC 7677 asks for, no more than a login can afford.
inline constexpr int min_new_scram_iterations = 4096;
// Reading a verifier or a server's first message: PostgreSQL accepts any positive count; above
// this bound one login would burn seconds of CPU, so pgrail refuses it.
inline constexpr int max_scram_iterations = 10'000'000;
inline constexpr std::size_t scram_salt_length = 16;   // what PostgreSQL generates
inline constexpr std::size_t max_scram_salt_length = 1024;
// Longest password pgrail hashes or sends (PostgreSQL's own client limit is about 1000 bytes in psql).
inline constexpr std::size_t max_password_length = 4096;

// One stored SCRAM-SHA-256 credential (RFC 5802 section 3): what the server keeps instead of a password.
struct ScramVerifier {
    int iterations = 0;
    std::string salt;                          // raw bytes
    std::array<unsigned char, 32> stored_key{};  // H(ClientKey)
    std::array<unsigned char, 32> server_key{};  // HMAC(SaltedPassword, "Server Key")

    // "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64), as pg_authid.rolpassword
    // holds it and as `ALTER ROLE ... PASSWORD` accepts it verbatim.
    [[nodiscard]] std::string to_string() const;
    bool operator==(const ScramVerifier&) const = default;
};

struct VerifierParse {
    std::optional<ScramVerifier> verifier;
    std::string error;  // empty when verifier holds a value
};

// Parses PostgreSQL's text form; every malformed part gives a sentence naming it.
[[nodiscard]] VerifierParse parse_scram_verifier(std::string_view text);

// A new verifier for `password` with a fresh random 16-byte salt. Throws std::invalid_argument for an
// iteration count outside [min_new_scram_iterations, max_scram_iterations] or a password longer than
// max_password_length.
[[nodiscard]] ScramVerifier make_scram_verifier(std::string_view password, int iterations = default_scram_iterations);
// The same with a given salt (tests, RFC vectors); any iteration count from 1 to max_scram_iterations.
[[nodiscard]] ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt, int iterations);

// The password as SCRAM hashes it, the way PostgreSQL's pg_saslprep() and its callers do: an ASCII
// password as it is; otherwise RFC 4013 SASLprep (mapping, NFKC, prohibited and bidi checks, over
// ICU's stringprep profile), and when that fails (not UTF-8, a prohibited character) the raw bytes,
// as PostgreSQL and libpq fall back to them.
[[nodiscard]] std::string scram_normalize_password(std::string_view password);

}  // namespace pgrail::auth
