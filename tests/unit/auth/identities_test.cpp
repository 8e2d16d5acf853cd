// The identities file: a good file loads (many identities to one role, credentials from a file or the
// environment); bad files give file:line:column errors (tests/data/identities_errors.txt).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "pgrail/auth/identities.hpp"
#include "pgrail/auth/identities_writer.hpp"
#include "pgrail/config/yaml_reader.hpp"

using namespace pgrail;
using namespace pgrail::auth;

namespace {

struct ErrorCase {
    std::string title, expected, yaml;
    int line = 0;
};

std::vector<ErrorCase> read_error_cases(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in);
    std::vector<ErrorCase> cases;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.starts_with("== ")) {
            cases.push_back({line.substr(3), "", "", number});
        } else if (line.starts_with("!! ") && !cases.empty() && cases.back().expected.empty()) {
            cases.back().expected = line.substr(3);
        } else if (!cases.empty()) {
            cases.back().yaml += line + "\n";
        }
    }
    return cases;
}

// A scratch directory removed at the end of the test.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "pgrail-identities-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string write(const std::string& name, const std::string& text, mode_t mode) const {
        const auto file = (path / name).string();
        std::ofstream(file) << text;
        ::chmod(file.c_str(), mode);
        return file;
    }
};

const std::string verifier_a = make_scram_verifier("alpha", std::string(16, 'a'), 4096).to_string();
const std::string verifier_b = make_scram_verifier("bravo", std::string(16, 'b'), 4096).to_string();

}  // namespace

TEST_CASE("an identities file loads: many identities, one role, credentials from a file and the environment",
          "[auth][identities]") {
    TempDir dir;
    dir.write("agent.pw", "agent-db-password\n", 0600);
    ::setenv("PGRAIL_TEST_REPORTER_PW", "reporter-db-password", 1);
    const auto file = dir.write("identities.yaml", R"(# pgrail identities
identities:
  - {name: agent-7, role: agent, verifier: ")" + verifier_a + R"("}
  - name: agent-8
    role: agent
    verifier: ")" + verifier_b + R"("
  - {name: dashboards, role: reporter, verifier: ")" + verifier_b + R"("}
roles:
  agent: {password_file: agent.pw}
  reporter: {password_env: PGRAIL_TEST_REPORTER_PW}
)",
                                0600);
    const auto identities = load_identities_file(file);
    REQUIRE(identities->identities.size() == 3);
    CHECK(identities->source == file);
    const auto* seven = identities->find("agent-7");
    REQUIRE(seven != nullptr);
    CHECK(seven->role == "agent");
    CHECK(seven->verifier.to_string() == verifier_a);
    CHECK(identities->find("agent-8")->role == "agent");
    CHECK(identities->find("dashboards")->role == "reporter");
    CHECK(identities->find("agent") == nullptr);  // a role is not an identity
    CHECK(identities->find("nobody") == nullptr);
    const auto* agent = identities->credentials("agent");
    REQUIRE(agent != nullptr);
    CHECK(agent->password == "agent-db-password");  // relative to the identities file, newline dropped
    CHECK(agent->origin == "password_file " + (dir.path / "agent.pw").string());
    CHECK(identities->credentials("reporter")->password == "reporter-db-password");
    CHECK(identities->credentials("reporter")->origin == "password_env PGRAIL_TEST_REPORTER_PW");

    // Reload = load again: a rotated password and a removed identity are seen.
    dir.write("agent.pw", "rotated", 0600);
    dir.write("identities.yaml", "identities:\n  - {name: agent-8, role: agent, verifier: \"" + verifier_b +
                                     "\"}\nroles: {agent: {password_file: agent.pw}}\n",
              0600);
    const auto reloaded = load_identities_file(file);
    CHECK(reloaded->find("agent-7") == nullptr);
    CHECK(reloaded->credentials("agent")->password == "rotated");
    CHECK(identities->find("agent-7") != nullptr);  // the old snapshot is untouched
}

TEST_CASE("a password file others can read, or an empty or multi-line one, is refused", "[auth][identities]") {
    TempDir dir;
    const auto load = [&](const std::string& content, mode_t mode) {
        dir.write("role.pw", content, mode);
        return load_identities_string("identities: []\nroles:\n  agent: {password_file: " + (dir.path / "role.pw").string() + "}\n",
                                      "case");
    };
    CHECK_NOTHROW(load("pw", 0600));
    CHECK_NOTHROW(load("pw\r\n", 0640));  // group access is allowed (a root-owned file for pgrail's group)
    CHECK_THROWS_WITH(load("pw", 0644), Catch::StartsWith("case:3:26: the password file") &&
                                            Catch::Contains("is accessible to other users (mode 0644)"));
    CHECK_THROWS_WITH(load("pw", 0602), Catch::Contains("accessible to other users"));
    CHECK_THROWS_WITH(load("", 0600), Catch::Contains("holds an empty password"));
    CHECK_THROWS_WITH(load("\n", 0600), Catch::Contains("holds an empty password"));
    CHECK_THROWS_WITH(load("one\ntwo\n", 0600), Catch::Contains("holds more than one line"));
    CHECK_THROWS_WITH(load(std::string(5000, 'x'), 0600), Catch::Contains("longer than 4096 bytes"));
    CHECK_THROWS_WITH(load_identities_string("identities: []\nroles: {agent: {password_file: " + dir.path.string() + "}}\n", "case"),
                      Catch::Contains("is not a regular file"));
}

TEST_CASE("without reading credentials, roles' sources are checked but not read", "[auth][identities]") {
    const auto identities = load_identities_string(
        "identities:\n  - {name: a, role: agent, verifier: \"" + verifier_a +
            "\"}\nroles: {agent: {password_file: /nonexistent/agent.pw}, other: {password_env: PGRAIL_TEST_UNSET_PW}}\n",
        "case", {.read_credentials = false});
    CHECK(identities->credentials("agent")->password.empty());
    CHECK(identities->credentials("other")->origin == "password_env PGRAIL_TEST_UNSET_PW");
}

TEST_CASE("a missing identities file is a clear error", "[auth][identities]") {
    CHECK_THROWS_WITH(load_identities_file("/nonexistent/identities.yaml"), "/nonexistent/identities.yaml: cannot read file");
}

TEST_CASE("an identities file others can read or write is refused at load (helper 68)", "[auth][identities]") {
    const std::string dir = std::filesystem::temp_directory_path() / ("pgrail_identities_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = dir + "/identities.yaml";
    {
        std::ofstream out(path);
        out << "roles:\n  agent: {password_env: PGRAIL_TEST_ROLE_PW}\nidentities:\n"
            << "  - {name: agent-7, role: agent, verifier: \"" << verifier_a << "\"}\n";
    }
    ::setenv("PGRAIL_TEST_ROLE_PW", "role-password", 1);
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                           std::filesystem::perms::others_read);
    CHECK_THROWS_WITH(load_identities_file(path),
                      Catch::StartsWith(path + ":1:1: the identities file is accessible to other users or writable by "
                                               "its group (mode 0604)"));
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                           std::filesystem::perms::group_write);
    CHECK_THROWS_WITH(load_identities_file(path), Catch::Contains("(mode 0620)"));
    std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                           std::filesystem::perms::group_read);
    CHECK(load_identities_file(path)->identities.size() == 1);
    std::filesystem::remove_all(dir);
}

TEST_CASE("an unknown name is offered the iteration count most verifiers have, worked out at load",
          "[auth][identities]") {
    ::setenv("PGRAIL_TEST_ROLE_PW", "role-password", 1);
    const std::string roles = "roles:\n  agent: {password_env: PGRAIL_TEST_ROLE_PW}\n";
    CHECK(load_identities_string(roles + "identities: []\n", "none")->usual_iterations == default_scram_iterations);
    const auto v8192 = make_scram_verifier("x", 8192).to_string();
    const auto v4096 = make_scram_verifier("y", 4096).to_string();
    const auto loaded = load_identities_string(roles + "identities:\n  - {name: a, role: agent, verifier: \"" + v8192 +
                                                   "\"}\n  - {name: b, role: agent, verifier: \"" + v8192 +
                                                   "\"}\n  - {name: c, role: agent, verifier: \"" + v4096 + "\"}\n",
                                               "three");
    CHECK(loaded->usual_iterations == 8192);
}

TEST_CASE("bad identities files give file:line:column errors (identities_errors.txt)", "[auth][identities]") {
    const auto cases = read_error_cases(PGRAIL_TEST_DATA "/identities_errors.txt");
    CHECK(cases.size() >= 25);
    ::setenv("PGRAIL_TEST_ROLE_PW", "role-password", 1);
    ::unsetenv("PGRAIL_TEST_UNSET_PW");
    for (const auto& error_case : cases) {
        INFO("case \"" << error_case.title << "\" at identities_errors.txt:" << error_case.line);
        std::string message = "(no error)";
        try {
            (void)load_identities_string(error_case.yaml, "case");
        } catch (const config::ConfigError& e) {
            message = e.what();
        }
        INFO("got: " << message);
        CHECK(message.starts_with("case:" + error_case.expected));
    }
}

TEST_CASE("upsert_identity adds, replaces and keeps the rest; its output loads", "[auth][identities]") {
    const auto added = upsert_identity("", "new.yaml", "agent-7", "agent", verifier_a);
    CHECK_FALSE(added.replaced);
    CHECK_THAT(added.text, Catch::Contains("- {name: agent-7, role: agent, verifier: "));
    const std::string with_roles = added.text + "roles:\n  agent: {password_env: PGRAIL_TEST_ROLE_PW}  # a comment\n  reader: {password_file: reader.pw}\n";
    ::setenv("PGRAIL_TEST_ROLE_PW", "role-password", 1);
    const auto second = upsert_identity(with_roles, "f.yaml", "agent-8", "agent", verifier_b);
    const auto replaced = upsert_identity(second.text, "f.yaml", "agent-7", "reader", verifier_b);
    CHECK(replaced.replaced);
    CHECK_THAT(replaced.text, !Catch::Contains("a comment"));  // documented: comments are not kept
    const auto loaded = load_identities_string(replaced.text, "f.yaml", {.read_credentials = false});
    REQUIRE(loaded->identities.size() == 2);
    CHECK(loaded->identities[0].name == "agent-7");  // replaced in place
    CHECK(loaded->identities[0].role == "reader");
    CHECK(loaded->identities[0].verifier.to_string() == verifier_b);
    CHECK(loaded->identities[1].name == "agent-8");
    CHECK(loaded->credentials("agent")->origin == "password_env PGRAIL_TEST_ROLE_PW");
    // A file it does not understand is refused, never rewritten.
    CHECK_THROWS_WITH(upsert_identity("- a\n- b\n", "f.yaml", "x", "y", verifier_a),
                      Catch::StartsWith("f.yaml:1:1: the identities file must be a mapping"));
    CHECK_THROWS_WITH(upsert_identity("identities: {a: 1}\n", "f.yaml", "x", "y", verifier_a),
                      Catch::StartsWith("f.yaml:1:13: 'identities' must be a list"));
    CHECK_THROWS_WITH(upsert_identity("identities: [x]\n", "f.yaml", "x", "y", verifier_a),
                      Catch::StartsWith("f.yaml:1:14: an identity must be a mapping"));
    CHECK_THROWS_WITH(upsert_identity("identities: [\n", "f.yaml", "x", "y", verifier_a), Catch::StartsWith("f.yaml:2:"));
}
