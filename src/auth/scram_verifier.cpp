// SCRAM-SHA-256 verifiers: PostgreSQL's text form, parsing, making, and the SASLprep step.
#include "pgrail/auth/scram.hpp"

#include <algorithm>
#include <charconv>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>
#include <unicode/usprep.h>
#include <unicode/ustring.h>

#include "crypto.hpp"

namespace pgrail::auth {

namespace {

using detail::base64_decode;
using detail::base64_encode;

std::string_view bytes_view(const std::array<unsigned char, 32>& key) {
    return {reinterpret_cast<const char*>(key.data()), key.size()};
}

VerifierParse bad(std::string message) { return {std::nullopt, std::move(message)}; }

// One of the two 32-byte keys, base64.
bool read_key(std::string_view text, std::array<unsigned char, 32>& key) {
    const auto bytes = base64_decode(text);
    if (!bytes || bytes->size() != key.size()) return false;
    std::copy(bytes->begin(), bytes->end(), key.begin());
    return true;
}

struct UsprepCloser {
    void operator()(UStringPrepProfile* profile) const { usprep_close(profile); }
};

// RFC 4013 through ICU; nullopt when SASLprep refuses the string.
std::optional<std::string> saslprep(std::string_view password) {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<UStringPrepProfile, UsprepCloser> profile(usprep_openByType(USPREP_RFC4013_SASLPREP, &status));
    if (U_FAILURE(status)) return std::nullopt;
    // UTF-8 -> UTF-16 (strict: invalid UTF-8 is an error, not replaced).
    int32_t length16 = 0;
    status = U_ZERO_ERROR;
    u_strFromUTF8(nullptr, 0, &length16, password.data(), static_cast<int32_t>(password.size()), &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) return std::nullopt;
    std::u16string input(static_cast<std::size_t>(length16), u'\0');
    status = U_ZERO_ERROR;
    u_strFromUTF8(input.data(), length16, nullptr, password.data(), static_cast<int32_t>(password.size()), &status);
    if (U_FAILURE(status)) return std::nullopt;
    // Stringprep's mapping can grow the text (NFKC of U+FDFA is 18 characters): when the first
    // guess is short, ICU says how long the result is and the second call fits it.
    std::u16string prepared(input.size() * 2 + 16, u'\0');
    int32_t prepared_length = 0;
    for (int attempt = 0; attempt < 2; ++attempt) {
        status = U_ZERO_ERROR;
        prepared_length = usprep_prepare(profile.get(), input.data(), length16, prepared.data(),
                                         static_cast<int32_t>(prepared.size()), USPREP_DEFAULT, nullptr, &status);
        if (status != U_BUFFER_OVERFLOW_ERROR) break;
        prepared.assign(static_cast<std::size_t>(prepared_length), u'\0');
    }
    if (U_FAILURE(status)) return std::nullopt;
    int32_t length8 = 0;
    status = U_ZERO_ERROR;
    u_strToUTF8(nullptr, 0, &length8, prepared.data(), prepared_length, &status);
    if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) return std::nullopt;
    std::string out(static_cast<std::size_t>(length8), '\0');
    status = U_ZERO_ERROR;
    u_strToUTF8(out.data(), length8, nullptr, prepared.data(), prepared_length, &status);
    if (U_FAILURE(status)) return std::nullopt;
    // PostgreSQL: a password that maps to nothing is prohibited, and the raw bytes are used.
    if (out.empty()) return std::nullopt;
    return out;
}

}  // namespace

std::string ScramVerifier::to_string() const {
    return fmt::format("SCRAM-SHA-256${}:{}${}:{}", iterations, base64_encode(salt), base64_encode(bytes_view(stored_key)),
                       base64_encode(bytes_view(server_key)));
}

VerifierParse parse_scram_verifier(std::string_view text) {
    constexpr std::string_view prefix = "SCRAM-SHA-256$";
    if (text.size() > 4096) return bad("the SCRAM verifier is too long");
    if (!text.starts_with(prefix))
        return bad("a SCRAM verifier begins with 'SCRAM-SHA-256$' (the form PostgreSQL stores in pg_authid)");
    text.remove_prefix(prefix.size());
    const auto dollar = text.find('$');
    if (dollar == std::string_view::npos)
        return bad("the SCRAM verifier has no '$' between <iterations>:<salt> and <StoredKey>:<ServerKey>");
    const auto salt_part = text.substr(0, dollar);
    const auto key_part = text.substr(dollar + 1);
    const auto colon = salt_part.find(':');
    if (colon == std::string_view::npos) return bad("the SCRAM verifier has no ':' between iterations and salt");
    const auto iterations_text = salt_part.substr(0, colon);
    ScramVerifier verifier;
    const auto* end = iterations_text.data() + iterations_text.size();
    const auto [ptr, ec] = std::from_chars(iterations_text.data(), end, verifier.iterations);
    if (iterations_text.empty() || ec != std::errc() || ptr != end || verifier.iterations < 1 ||
        verifier.iterations > max_scram_iterations)
        return bad(fmt::format("the SCRAM verifier's iteration count must be a number from 1 to {} (got '{}')",
                               max_scram_iterations, iterations_text));
    const auto salt = base64_decode(salt_part.substr(colon + 1));
    if (!salt || salt->empty() || salt->size() > max_scram_salt_length)
        return bad("the SCRAM verifier's salt is not valid base64 of 1 to 1024 bytes");
    verifier.salt = *salt;
    const auto key_colon = key_part.find(':');
    if (key_colon == std::string_view::npos)
        return bad("the SCRAM verifier has no ':' between StoredKey and ServerKey");
    if (!read_key(key_part.substr(0, key_colon), verifier.stored_key))
        return bad("the SCRAM verifier's StoredKey is not base64 of 32 bytes");
    if (!read_key(key_part.substr(key_colon + 1), verifier.server_key))
        return bad("the SCRAM verifier's ServerKey is not base64 of 32 bytes");
    return {verifier, ""};
}

ScramVerifier make_scram_verifier(std::string_view password, int iterations) {
    if (iterations < min_new_scram_iterations || iterations > max_scram_iterations)
        throw std::invalid_argument(fmt::format("the iteration count must be from {} to {} (got {})",
                                                min_new_scram_iterations, max_scram_iterations, iterations));
    return make_scram_verifier(password, detail::random_bytes(scram_salt_length), iterations);
}

ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt, int iterations) {
    if (iterations < 1 || iterations > max_scram_iterations)
        throw std::invalid_argument(fmt::format("the iteration count must be from 1 to {} (got {})",
                                                max_scram_iterations, iterations));
    if (password.size() > max_password_length)
        throw std::invalid_argument(fmt::format("the password is longer than {} bytes", max_password_length));
    if (salt.empty() || salt.size() > max_scram_salt_length)
        throw std::invalid_argument("the salt must be 1 to 1024 bytes");
    const auto salted = detail::salted_password(scram_normalize_password(password), salt, iterations);
    const auto client_key = detail::hmac_sha256(detail::view(salted), "Client Key");
    ScramVerifier verifier;
    verifier.iterations = iterations;
    verifier.salt = std::string(salt);
    verifier.stored_key = detail::sha256(detail::view(client_key));
    verifier.server_key = detail::hmac_sha256(detail::view(salted), "Server Key");
    return verifier;
}

std::string scram_normalize_password(std::string_view password) {
    const bool ascii = std::all_of(password.begin(), password.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) return std::string(password);
    if (auto prepared = saslprep(password)) return *std::move(prepared);
    return std::string(password);
}

}  // namespace pgrail::auth
