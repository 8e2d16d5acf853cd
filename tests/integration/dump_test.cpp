// pg_dump and pg_dumpall (Debian's, version 15) through pgrail under the default policy: the same
// output as straight from PostgreSQL, for the agent, the owner and the superuser.
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"
#include "seed_database.hpp"

namespace pgrail::test {
namespace {

constexpr const char* pg_bin = "/usr/lib/postgresql/15/bin/";

// Without pg_dump's `\restrict <random key>` brackets (15.14 and later), which differ per run.
std::string without_restrict_keys(const std::string& dump) {
    std::istringstream lines(dump);
    std::string out;
    for (std::string line; std::getline(lines, line);)
        if (!line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict ")) out += line + "\n";
    return out;
}

// A dump tool's output for `user` at `port` (password = role name), and its exit status.
std::pair<int, std::string> dump(const std::string& tool, const std::string& options, const std::string& user,
                                 int port) {
    return shell("PGPASSWORD=" + user + " " + pg_bin + tool + " " + options + " -h 127.0.0.1 -p " +
                 std::to_string(port) + " -U " + user + " 2>&1");
}

// Runs `tool options` as `user` directly and through pgrail: both succeed with the same output
// (but for `\restrict` keys). Returns what came through pgrail.
std::string same_through_pgrail(const std::string& tool, const std::string& options, const std::string& user,
                                int pgrail_port) {
    const auto direct = dump(tool, options, user, Cluster::get().pg_port);
    const auto through = dump(tool, options, user, pgrail_port);
    INFO(user << ": " << tool << " " << options << "\ndirectly:\n" << direct.second.substr(0, 2000)
              << "\nthrough pgrail:\n" << through.second.substr(0, 2000));
    REQUIRE(direct.first == 0);
    CHECK(through.first == 0);
    CHECK(without_restrict_keys(through.second) == without_restrict_keys(direct.second));
    return through.second;
}

}  // namespace

TEST_CASE("pg_dump and pg_dumpall --schema-only through pgrail give what they give directly", "[pg_dump]") {
    SeedDatabase db("dump_");
    PgrailProcess pgrail("policy: " + source_dir() + "/policies/default.yaml\nmigrations: {dir: " + source_dir() +
                         "/migrations}\n");
    for (const std::string& user : {std::string("agent"), std::string("app_owner")}) {
        // pg_dump sends `SELECT set_config(name, ..., false) FROM pg_settings WHERE name = ...` and
        // `LOCK TABLE ... IN ACCESS SHARE MODE`: both must read as what they do.
        // The whole dump (with COPY ... TO stdout) as the owner: the agent may not read the sequence.
        std::vector<std::string> runs = {"--schema-only " + db.name};
        if (user == "app_owner") runs.push_back(db.name);
        for (const auto& options : runs)
            CHECK(same_through_pgrail("pg_dump", options, user, pgrail.port()).find("CREATE TABLE public.profiles") !=
                  std::string::npos);
        // Every database of the cluster is the superuser's to dump; a role's own view of the cluster
        // is its globals (pg_dumpall of every database would stop at other tests' tables).
        (void)same_through_pgrail("pg_dumpall", "--globals-only --no-role-passwords -l " + db.name, user,
                                  pgrail.port());
    }
    // The superuser (rule "agents" too, as every role without a rule of its own) dumps every database.
    CHECK(same_through_pgrail("pg_dumpall", "--schema-only --no-role-passwords -l " + db.name, "postgres",
                              pgrail.port())
              .find("CREATE TABLE public.profiles") != std::string::npos);
}

}  // namespace pgrail::test
