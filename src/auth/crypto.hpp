// The few primitives SCRAM and md5 need, over OpenSSL's libcrypto (private to the auth module).
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace pgrail::auth::detail {

inline constexpr std::size_t sha256_size = 32;
using Digest = std::array<unsigned char, sha256_size>;

[[nodiscard]] std::string base64_encode(std::string_view bytes);
// Standard alphabet with padding, as SCRAM and pg_authid use it; nullopt for anything else
// (a wrong character, a bad length, misplaced padding, bits set in the padding).
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

[[nodiscard]] Digest sha256(std::string_view bytes);
[[nodiscard]] Digest hmac_sha256(std::string_view key, std::string_view message);
// RFC 5802's Hi(): PBKDF2 with HMAC-SHA-256 and one 32-byte block.
[[nodiscard]] Digest salted_password(std::string_view password, std::string_view salt, int iterations);
[[nodiscard]] std::string md5_hex(std::string_view bytes);

// Bytes from the CSPRNG (RAND_bytes); throws std::runtime_error if OpenSSL cannot give them,
// because an exchange with a predictable nonce or salt must not go ahead.
[[nodiscard]] std::string random_bytes(std::size_t count);

// Compares without branching on the contents, so the time taken says nothing of where they differ.
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

[[nodiscard]] inline std::string_view view(const Digest& digest) {
    return {reinterpret_cast<const char*>(digest.data()), digest.size()};
}

}  // namespace pgrail::auth::detail
