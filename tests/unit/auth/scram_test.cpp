// SCRAM-SHA-256: RFC 7677's vector, verifier text form, ScramServer's checks, ScramClient against ScramServer.
#include <catch2/catch.hpp>

#include "pgrail/auth/scram.hpp"
#include "pgrail/auth/scram_client.hpp"
#include "pgrail/auth/scram_server.hpp"

using namespace pgrail::auth;

namespace {

// RFC 7677 section 3 (user "user", password "pencil").
constexpr std::string_view rfc_client_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// The same credential as pg_authid would store it (computed independently with Python's hashlib).
constexpr std::string_view rfc_verifier = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                                          "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                                          "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

ScramVerifier rfc() {
    auto parsed = parse_scram_verifier(rfc_verifier);
    REQUIRE(parsed.verifier);
    return *parsed.verifier;
}

// A whole exchange between pgrail's client and server; returns the server's last step.
ScramStep exchange(ScramClient& client, ScramServer& server, bool* client_verified = nullptr) {
    const auto mechanism = client.choose_mechanism(server.mechanisms());
    REQUIRE(mechanism);
    auto first = server.client_first(*mechanism, client.client_first());
    if (first.status != ScramStep::Status::next) return first;
    const auto final_message = client.server_first(first.message);
    REQUIRE(final_message.ok);
    auto last = server.client_final(final_message.message);
    if (last.status == ScramStep::Status::success && client_verified != nullptr)
        *client_verified = client.server_final(last.message).ok;
    return last;
}

}  // namespace

TEST_CASE("RFC 7677's vector: the verifier pgrail makes is PostgreSQL's text form", "[auth][scram]") {
    const auto verifier = rfc();
    CHECK(verifier.iterations == 4096);
    CHECK(verifier.salt.size() == 16);
    CHECK(make_scram_verifier("pencil", verifier.salt, 4096) == verifier);
    CHECK(verifier.to_string() == rfc_verifier);
}

TEST_CASE("RFC 7677's vector: ScramServer answers exactly as the RFC", "[auth][scram]") {
    auto server = ScramServer::for_verifier(rfc());
    const auto first = server.client_first("SCRAM-SHA-256", rfc_client_first, rfc_server_nonce);
    REQUIRE(first.status == ScramStep::Status::next);
    CHECK(first.message == rfc_server_first);
    const auto last = server.client_final(rfc_client_final);
    REQUIRE(last.status == ScramStep::Status::success);
    CHECK(last.message == rfc_server_final);
}

TEST_CASE("RFC 7677's vector: ScramClient sends the RFC's proof and verifies the server", "[auth][scram]") {
    // Twice: the second login takes the derived keys from the process-wide cache.
    for (int round = 0; round < 2; ++round) {
        ScramClient client("pencil");
        CHECK(client.choose_mechanism({"SCRAM-SHA-256"}) == std::optional<std::string_view>("SCRAM-SHA-256"));
        CHECK(client.client_first(rfc_client_nonce, "user") == rfc_client_first);
        const auto final_message = client.server_first(rfc_server_first);
        REQUIRE(final_message.ok);
        CHECK(final_message.message == rfc_client_final);
        CHECK(client.server_final(rfc_server_final).ok);
    }
    // Another password with the same salt and count is not served from the cache.
    ScramClient other("pencils");
    REQUIRE(other.choose_mechanism({"SCRAM-SHA-256"}));
    (void)other.client_first(rfc_client_nonce, "user");
    const auto other_final = other.server_first(rfc_server_first);
    REQUIRE(other_final.ok);
    CHECK(other_final.message != rfc_client_final);
    CHECK_FALSE(other.server_final(rfc_server_final).ok);
}

TEST_CASE("a made verifier has a fresh salt and 4096 iterations, and round-trips", "[auth][scram]") {
    const auto a = make_scram_verifier("secret");
    const auto b = make_scram_verifier("secret");
    CHECK(a.iterations == default_scram_iterations);
    CHECK(a.salt.size() == scram_salt_length);
    CHECK(a.salt != b.salt);
    CHECK(a.stored_key != b.stored_key);
    const auto parsed = parse_scram_verifier(a.to_string());
    REQUIRE(parsed.verifier);
    CHECK(*parsed.verifier == a);
    CHECK(make_scram_verifier("secret", 10000).iterations == 10000);
    CHECK_THROWS_WITH(make_scram_verifier("secret", 1000), Catch::Contains("iteration count must be from 4096"));
    CHECK_THROWS_WITH(make_scram_verifier(std::string(5000, 'x')), Catch::Contains("longer than 4096 bytes"));
}

TEST_CASE("every malformed part of a verifier is a clear error", "[auth][scram]") {
    const std::string keys = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "begins with 'SCRAM-SHA-256$'"},
        {"md5abcdef0123456789abcdef0123456789", "begins with 'SCRAM-SHA-256$'"},
        {"scram-sha-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "begins with 'SCRAM-SHA-256$'"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==", "no '$' between"},
        {"SCRAM-SHA-256$4096W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "no ':' between iterations and salt"},
        {"SCRAM-SHA-256$:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "iteration count must be a number"},
        {"SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "iteration count must be a number"},
        {"SCRAM-SHA-256$-5:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "iteration count must be a number"},
        {"SCRAM-SHA-256$4096x:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "iteration count must be a number"},
        {"SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys, "iteration count must be a number"},
        {"SCRAM-SHA-256$4096:$" + keys, "salt is not valid base64"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" + keys, "salt is not valid base64"},
        {"SCRAM-SHA-256$4096:W22Z*J0SNY7soEsUEjb6gQ==$" + keys, "salt is not valid base64"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
         "no ':' between StoredKey and ServerKey"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
         "StoredKey is not base64 of 32 bytes"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPL",
         "ServerKey is not base64 of 32 bytes"},
        {"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys + "$", "ServerKey is not base64 of 32 bytes"},
        {std::string(5000, 'S'), "too long"},
    };
    for (const auto& [text, expected] : cases) {
        INFO(text);
        const auto parsed = parse_scram_verifier(text);
        CHECK_FALSE(parsed.verifier);
        CHECK_THAT(parsed.error, Catch::Contains(expected));
    }
}

TEST_CASE("passwords are SASLprep'd as PostgreSQL does, falling back to the raw bytes", "[auth][scram]") {
    CHECK(scram_normalize_password("pencil") == "pencil");
    CHECK(scram_normalize_password("a\tb\x01") == "a\tb\x01");  // ASCII: as is, control characters too
    CHECK(scram_normalize_password("I\xC2\xADX") == "IX");          // RFC 4013: soft hyphen maps to nothing
    CHECK(scram_normalize_password("\xC2\xAA") == "a");             // NFKC
    CHECK(scram_normalize_password("\xE2\x85\xA8") == "IX");        // NFKC of ROMAN NUMERAL NINE
    CHECK(scram_normalize_password("a\xC2\xA0" "b") == "a b");      // non-ASCII space -> space
    CHECK(scram_normalize_password("\xC3\xA9t\xC3\xA9") == "\xC3\xA9t\xC3\xA9");  // already NFKC
    // A result far longer than the input (NFKC of U+FDFA is 18 characters), ten times over.
    std::string ligatures, expanded;
    for (int i = 0; i < 10; ++i) {
        ligatures += "\xEF\xB7\xBA";
        expanded += "\xD8\xB5\xD9\x84\xD9\x89 \xD8\xA7\xD9\x84\xD9\x84\xD9\x87 \xD8\xB9\xD9\x84\xD9\x8A\xD9\x87 "
                    "\xD9\x88\xD8\xB3\xD9\x84\xD9\x85";
    }
    CHECK(scram_normalize_password(ligatures) == expanded);
    // Failures keep the raw bytes, as pg_saslprep's callers do.
    CHECK(scram_normalize_password("\xff\xfe") == "\xff\xfe");                      // not UTF-8
    CHECK(scram_normalize_password("a\xC2\x80" "b") == "a\xC2\x80" "b");            // prohibited (control)
    CHECK(scram_normalize_password("\xD8\xA7" "1") == "\xD8\xA7" "1");              // bidi rule
    // The verifier uses the prepared form: both spellings are the same password.
    const std::string salt(16, 's');
    CHECK(make_scram_verifier("I\xC2\xADX", salt, 4096) == make_scram_verifier("IX", salt, 4096));
}

TEST_CASE("ScramClient logs in against ScramServer, with and without channel binding", "[auth][scram]") {
    const auto verifier = make_scram_verifier("s3cret pass", std::string(16, 'x'), 4096);
    SECTION("plain SCRAM-SHA-256") {
        ScramClient client("s3cret pass");
        auto server = ScramServer::for_verifier(verifier);
        CHECK(server.mechanisms() == std::vector<std::string_view>{"SCRAM-SHA-256"});
        bool verified = false;
        const auto last = exchange(client, server, &verified);
        CHECK(last.status == ScramStep::Status::success);
        CHECK(verified);
    }
    SECTION("SCRAM-SHA-256-PLUS with matching tls-server-end-point data") {
        const std::string binding(32, '\x42');
        ScramClient client("s3cret pass", binding);
        auto server = ScramServer::for_verifier(verifier, binding);
        CHECK(server.mechanisms() == std::vector<std::string_view>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
        bool verified = false;
        CHECK(exchange(client, server, &verified).status == ScramStep::Status::success);
        CHECK(verified);
    }
    SECTION("-PLUS with different channel-binding data (a man in the middle) is refused") {
        ScramClient client("s3cret pass", std::string(32, '\x41'));
        auto server = ScramServer::for_verifier(verifier, std::string(32, '\x42'));
        const auto last = exchange(client, server);
        CHECK(last.status == ScramStep::Status::failure);
        CHECK(last.failure == ScramFailure::protocol_violation);
        CHECK(last.error == "SCRAM channel binding check failed");
    }
    SECTION("a client that could bind but was not offered -PLUS says y, and a server without TLS accepts it") {
        ScramClient client("s3cret pass", std::string(32, '\x41'));
        auto server = ScramServer::for_verifier(verifier);
        CHECK(exchange(client, server).status == ScramStep::Status::success);
    }
    SECTION("a wrong password fails as an authentication failure") {
        ScramClient client("wrong");
        auto server = ScramServer::for_verifier(verifier);
        const auto last = exchange(client, server);
        CHECK(last.status == ScramStep::Status::failure);
        CHECK(last.failure == ScramFailure::authentication_failed);
        CHECK(last.message.empty());
    }
    SECTION("the client refuses a server that does not know the verifier") {
        ScramClient client("s3cret pass");
        auto impostor = ScramServer::for_verifier(make_scram_verifier("other", std::string(16, 'x'), 4096));
        REQUIRE(client.choose_mechanism(impostor.mechanisms()));
        const auto first = impostor.client_first("SCRAM-SHA-256", client.client_first());
        const auto final_message = client.server_first(first.message);
        REQUIRE(final_message.ok);
        // The impostor cannot sign; a forged "v=" of the right shape is refused.
        CHECK_FALSE(client.server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").ok);
        CHECK_THAT(client.error(), Catch::Contains("incorrect server signature"));
    }
    SECTION("channel_binding=require refuses a server that offers no -PLUS") {
        ScramClient client("s3cret pass", std::string(32, '\x41'), true);
        CHECK_FALSE(client.choose_mechanism({"SCRAM-SHA-256"}));
        CHECK_THAT(client.error(), Catch::Contains("channel binding is required"));
    }
}

TEST_CASE("an unknown identity gets a mock exchange that looks real and always fails", "[auth][scram]") {
    const auto secret = new_mock_secret();
    auto mock = ScramServer::mock("nobody", secret);
    ScramClient client("anything");
    REQUIRE(client.choose_mechanism(mock.mechanisms()));
    const auto first = mock.client_first("SCRAM-SHA-256", client.client_first());
    REQUIRE(first.status == ScramStep::Status::next);
    CHECK_THAT(first.message, Catch::Contains(",i=4096"));
    // The salt is stable for a name (a changing salt would reveal the name is unknown).
    auto again = ScramServer::mock("nobody", secret);
    const auto first_again = again.client_first("SCRAM-SHA-256", "n,,n=,r=abc");
    const auto salt_of = [](const std::string& message) {
        const auto s = message.find(",s=");
        return message.substr(s, message.find(",i=") - s);
    };
    CHECK(salt_of(first.message) == salt_of(first_again.message));
    // It offers the iteration count it is given (what the real identities have).
    auto counted = ScramServer::mock("nobody", secret, {}, 10000);
    CHECK_THAT(counted.client_first("SCRAM-SHA-256", "n,,n=,r=abc").message, Catch::Contains(",i=10000"));
    auto other = ScramServer::mock("somebody", secret);
    CHECK(salt_of(other.client_first("SCRAM-SHA-256", "n,,n=,r=abc").message) != salt_of(first.message));
    const auto final_message = client.server_first(first.message);
    REQUIRE(final_message.ok);
    const auto last = mock.client_final(final_message.message);
    CHECK(last.status == ScramStep::Status::failure);
    CHECK(last.failure == ScramFailure::authentication_failed);
}

TEST_CASE("ScramServer checks the GS2 header and messages as PostgreSQL does", "[auth][scram]") {
    const auto verifier = rfc();
    const std::string binding(32, '\x42');
    struct Case {
        std::string mechanism;
        std::string binding;
        std::string message;
        ScramFailure failure;
        std::string error;
    };
    const std::vector<Case> cases = {
        {"SCRAM-SHA-1", "", "n,,n=,r=abc", ScramFailure::protocol_violation, "client selected an invalid SASL authentication mechanism"},
        {"SCRAM-SHA-256-PLUS", "", "p=tls-server-end-point,,n=,r=abc", ScramFailure::protocol_violation,
         "client selected an invalid SASL authentication mechanism"},
        {"SCRAM-SHA-256", "", "", ScramFailure::protocol_violation, "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", std::string("n,,n=,r=a\0b", 11), ScramFailure::protocol_violation,
         "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", "n,,n=,r=" + std::string(5000, 'a'), ScramFailure::protocol_violation,
         "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", "x,,n=,r=abc", ScramFailure::protocol_violation, "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", "n;,n=,r=abc", ScramFailure::protocol_violation, "malformed SCRAM message"},
        // -PLUS offered, client says y: a downgrade.
        {"SCRAM-SHA-256", binding, "y,,n=,r=abc", ScramFailure::protocol_violation,
         "SCRAM channel binding negotiation error"},
        // Chose -PLUS but sent no binding / chose plain but sent p=.
        {"SCRAM-SHA-256-PLUS", binding, "n,,n=,r=abc", ScramFailure::protocol_violation, "malformed SCRAM message"},
        {"SCRAM-SHA-256", binding, "p=tls-server-end-point,,n=,r=abc", ScramFailure::protocol_violation,
         "malformed SCRAM message"},
        {"SCRAM-SHA-256-PLUS", binding, "p=tls-unique,,n=,r=abc", ScramFailure::protocol_violation,
         "unsupported SCRAM channel-binding type \"tls-unique\""},
        {"SCRAM-SHA-256", "", "n,a=admin,n=,r=abc", ScramFailure::feature_not_supported,
         "client uses authorization identity, but it is not supported"},
        {"SCRAM-SHA-256", "", "n,,m=ext,n=,r=abc", ScramFailure::feature_not_supported,
         "client requires an unsupported SCRAM extension"},
        {"SCRAM-SHA-256", "", "n,,r=abc", ScramFailure::protocol_violation, "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", "n,,n=,x=abc", ScramFailure::protocol_violation, "malformed SCRAM message"},
        {"SCRAM-SHA-256", "", "n,,n=,r=", ScramFailure::protocol_violation, "non-printable characters in SCRAM nonce"},
        {"SCRAM-SHA-256", "", "n,,n=,r=a\x01" "b", ScramFailure::protocol_violation,
         "non-printable characters in SCRAM nonce"},
        {"SCRAM-SHA-256", "", "n,,n=,r=abc,1=x", ScramFailure::protocol_violation, "malformed SCRAM message"},
    };
    for (const auto& c : cases) {
        INFO(c.mechanism << " / " << c.message.substr(0, 60));
        auto server = ScramServer::for_verifier(verifier, c.binding);
        const auto step = server.client_first(c.mechanism, c.message);
        CHECK(step.status == ScramStep::Status::failure);
        CHECK(step.failure == c.failure);
        CHECK(step.error == c.error);
        CHECK(step.message.empty());
    }
    // Extensions after the nonce are ignored, as PostgreSQL ignores them.
    auto server = ScramServer::for_verifier(verifier);
    CHECK(server.client_first("SCRAM-SHA-256", "n,,n=someone,r=abc,x=ext").status == ScramStep::Status::next);
}

TEST_CASE("ScramServer checks the client-final-message as PostgreSQL does", "[auth][scram]") {
    const auto start = [](std::string_view header = "n,,") {
        auto server = ScramServer::for_verifier(rfc());
        const auto step = server.client_first("SCRAM-SHA-256", std::string(header) + "n=user,r=rOprNGfwEbeRWgbNEkqO",
                                              rfc_server_nonce);
        REQUIRE(step.status == ScramStep::Status::next);
        return server;
    };
    const std::string nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"c=eSws,r=" + nonce + "," + proof, "unexpected SCRAM channel-binding attribute in client-final-message"},
        {"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" + nonce + "," + proof,
         "unexpected SCRAM channel-binding attribute in client-final-message"},
        {"r=" + nonce + "," + proof, "malformed SCRAM message"},
        {"c=biws,r=" + nonce + "X," + proof, "invalid SCRAM response"},
        {"c=biws,r=" + nonce + ",p=AAAA", "malformed SCRAM message"},
        {"c=biws,r=" + nonce + ",p=not base64!", "malformed SCRAM message"},
        {"c=biws,r=" + nonce + "," + proof + ",x=1", "malformed SCRAM message"},
        {"c=biws,r=" + nonce + "," + proof + ",", "malformed SCRAM message"},
        {"c=biws,r=" + nonce, "malformed SCRAM message"},
    };
    for (const auto& [message, error] : cases) {
        INFO(message);
        auto server = start();
        const auto step = server.client_final(message);
        CHECK(step.status == ScramStep::Status::failure);
        CHECK(step.failure == ScramFailure::protocol_violation);
        CHECK(step.error == error);
    }
    // A wrong proof of the right shape is an authentication failure, not a protocol error.
    auto server = start();
    const auto wrong = server.client_final("c=biws,r=" + nonce + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    CHECK(wrong.failure == ScramFailure::authentication_failed);
    // Extensions before the proof are skipped (and, being in the signed text, would break the proof).
    auto extended = start();
    CHECK(extended.client_final("c=biws,r=" + nonce + ",x=1," + proof).failure == ScramFailure::authentication_failed);
    // A client that said y (no -PLUS offered) must send c=eSws.
    auto said_y = start("y,,");
    CHECK(said_y.client_final("c=biws,r=" + nonce + "," + proof).error ==
          "unexpected SCRAM channel-binding attribute in client-final-message");
    // Out of order.
    auto fresh = ScramServer::for_verifier(rfc());
    CHECK(fresh.client_final(std::string(rfc_client_final)).failure == ScramFailure::protocol_violation);
    auto done = start();
    CHECK(done.client_final(std::string(rfc_client_final)).status == ScramStep::Status::success);
    CHECK(done.client_final(std::string(rfc_client_final)).status == ScramStep::Status::failure);
}

TEST_CASE("ScramClient refuses malformed server messages", "[auth][scram]") {
    const auto started = [] {
        ScramClient client("pencil");
        REQUIRE(client.choose_mechanism({"SCRAM-SHA-256"}));
        (void)client.client_first(rfc_client_nonce, "user");
        return client;
    };
    for (const std::string message :
         {"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
          "r=rOprNGfwEbeRWgbNEkqOxyz,s=***,i=4096", "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
          "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",
          "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1", "m=ext,r=x", ""}) {
        INFO(message);
        auto client = started();
        CHECK_FALSE(client.server_first(message).ok);
    }
    auto client = started();
    REQUIRE(client.server_first(rfc_server_first).ok);
    CHECK_FALSE(client.server_final("e=invalid-proof").ok);
    CHECK_THAT(client.error(), Catch::Contains("invalid-proof"));
    CHECK_FALSE(client.choose_mechanism({"SCRAM-SHA-256"}));  // already chosen
    ScramClient none("x");
    CHECK_FALSE(none.choose_mechanism({"SCRAM-SHA-1"}));
}

TEST_CASE("md5 and cleartext password responses", "[auth][password]") {
    // md5(md5("pencil" + "user") + salt), checked with Python's hashlib.
    CHECK(md5_password_response("user", "pencil", {0x01, 0x02, 0x03, 0x04}) == "md54376eb6913b38f9aaff38dc7cf19ca76");
    CHECK(cleartext_password_response("pencil") == std::optional<std::string>("pencil"));
    CHECK_FALSE(cleartext_password_response(std::string("a\0b", 3)));
}
