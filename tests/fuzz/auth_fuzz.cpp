// Fuzzes pgrail's own authentication: ScramServer against any client messages, ScramClient against
// any server messages, the verifier parser, SASLprep and the identities loader.
// Properties: no exchange succeeds without the password (the server's nonce and the verifier's keys
// are secret to the fuzzer); every failure names its reason; a parsed verifier round-trips through
// its text form; a bad identities file is refused only with config::ConfigError naming the file.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "pgrail/auth/identities.hpp"
#include "pgrail/auth/scram.hpp"
#include "pgrail/auth/scram_client.hpp"
#include "pgrail/auth/scram_server.hpp"
#include "pgrail/config/yaml_reader.hpp"

using namespace pgrail;

namespace {

const auth::ScramVerifier& verifier() {
    static const auto made = auth::make_scram_verifier("fuzz password", std::string(16, 'f'), 4096);
    return made;
}

const std::string& mock_secret() {
    static const auto secret = auth::new_mock_secret();
    return secret;
}

// ScramClient would run PBKDF2 for as many iterations as the server asks (up to 10 million): keep
// the fuzzer's inputs cheap enough to run thousands a second.
bool cheap_iterations(std::string_view message) {
    const auto at = message.find(",i=");
    if (at == std::string_view::npos) return true;
    std::size_t digits = 0;
    for (auto i = at + 3; i < message.size() && message[i] >= '0' && message[i] <= '9'; ++i) ++digits;
    return digits <= 4;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const auto flags = data[0];
    const auto text = fuzz::as_text(data + 1, size - 1);
    const auto nul = text.find('\0');
    const auto first = text.substr(0, nul);
    const auto second = nul == std::string_view::npos ? std::string_view() : text.substr(nul + 1);
    const std::string binding = (flags & 1) != 0 ? std::string(32, '\x42') : std::string();

    switch ((flags >> 4) & 3) {
        case 0: {  // the server side
            auto server = (flags & 2) != 0 ? auth::ScramServer::mock("fuzz", mock_secret(), binding)
                                           : auth::ScramServer::for_verifier(verifier(), binding);
            const auto mechanism = (flags & 4) != 0 ? auth::scram_sha_256_plus : auth::scram_sha_256;
            const auto step = server.client_first(mechanism, first);
            PGRAIL_FUZZ_CHECK(step.status != auth::ScramStep::Status::success);
            if (step.status == auth::ScramStep::Status::failure) {
                PGRAIL_FUZZ_CHECK(!step.error.empty() && step.message.empty());
                return 0;
            }
            PGRAIL_FUZZ_CHECK(step.message.starts_with("r="));
            const auto last = server.client_final(second);
            PGRAIL_FUZZ_CHECK(last.status == auth::ScramStep::Status::failure);
            PGRAIL_FUZZ_CHECK(!last.error.empty());
            return 0;
        }
        case 1: {  // the client side
            if (!cheap_iterations(first)) return 0;
            auth::ScramClient client("fuzz password", binding);
            const auto mechanism = client.choose_mechanism({auth::scram_sha_256_plus, auth::scram_sha_256});
            PGRAIL_FUZZ_CHECK(mechanism.has_value());
            (void)client.client_first("fuzznonce", "");
            const auto proof = client.server_first(first);
            if (!proof.ok) {
                PGRAIL_FUZZ_CHECK(!proof.error.empty());
                return 0;
            }
            PGRAIL_FUZZ_CHECK(proof.message.starts_with("c="));
            PGRAIL_FUZZ_CHECK(!client.server_final(second).ok);
            return 0;
        }
        case 2: {  // the verifier's text form, and SASLprep of the same bytes as a password
            const auto password = text.substr(0, auth::max_password_length);
            PGRAIL_FUZZ_CHECK(password.empty() == auth::scram_normalize_password(password).empty());
            const auto parsed = auth::parse_scram_verifier(text);
            if (!parsed.verifier) {
                PGRAIL_FUZZ_CHECK(!parsed.error.empty());
                return 0;
            }
            const auto again = auth::parse_scram_verifier(parsed.verifier->to_string());
            PGRAIL_FUZZ_CHECK(again.verifier && *again.verifier == *parsed.verifier);
            return 0;
        }
        default: {  // the identities file (without reading credentials: no files, no environment)
            try {
                const auto loaded = auth::load_identities_string(std::string(text), "fuzz.yaml", {.read_credentials = false});
                for (const auto& identity : loaded->identities) {
                    PGRAIL_FUZZ_CHECK(loaded->find(identity.name) == &identity);
                    PGRAIL_FUZZ_CHECK(loaded->credentials(identity.role) != nullptr);
                }
            } catch (const config::ConfigError& error) {
                PGRAIL_FUZZ_CHECK(std::string(error.what()).starts_with("fuzz.yaml"));
            }
            return 0;
        }
    }
}
