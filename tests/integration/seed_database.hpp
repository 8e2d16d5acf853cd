// A database of a test's own, owned by app_owner, holding the seed scenario's profiles table
// (examples/seed.sql), which the agent may read and write; dropped again at the end.
#pragma once

#include <random>
#include <string>

#include <catch2/catch.hpp>

#include "cluster.hpp"
#include "pgrail_process.hpp"

namespace pgrail::test {

struct SeedDatabase {
    std::string name;
    explicit SeedDatabase(const std::string& prefix = "seed_") {
        std::random_device random;
        name = prefix + std::to_string(random() % 1000000000);
        auto conn = admin();
        REQUIRE(run(conn.get(), "CREATE DATABASE " + name + " OWNER app_owner").at(0).status == "PGRES_COMMAND_OK");
        Conn owner(PQconnectdb(conninfo_for("app_owner").c_str()));
        REQUIRE(PQstatus(owner.get()) == CONNECTION_OK);
        REQUIRE(run(owner.get(), read_file(source_dir() + "/examples/seed.sql")).back().status == "PGRES_COMMAND_OK");
        (void)run(owner.get(), "GRANT SELECT, INSERT, UPDATE, DELETE ON profiles TO agent");
    }
    ~SeedDatabase() {
        auto conn = admin();
        (void)run(conn.get(), "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
    }
    SeedDatabase(const SeedDatabase&) = delete;
    SeedDatabase& operator=(const SeedDatabase&) = delete;

    // Straight to PostgreSQL.
    [[nodiscard]] std::string conninfo_for(const std::string& user) const {
        return "host=127.0.0.1 port=" + std::to_string(Cluster::get().pg_port) + " dbname=" + name + " user=" + user +
               " password=" + user;
    }
    // Through `pgrail` to this database (the password is the role's name); fails the test unless usable.
    [[nodiscard]] Conn connect_through(const PgrailProcess& pgrail, const std::string& user) const {
        Conn conn(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(pgrail.port()) + " dbname=" + name +
                               " user=" + user + " password=" + user)
                                  .c_str()));
        REQUIRE(PQstatus(conn.get()) == CONNECTION_OK);
        return conn;
    }
    // How many timezone columns profiles has (0 before the seed migration, 1 after).
    [[nodiscard]] std::string timezone_columns() const {
        Conn conn(PQconnectdb(conninfo_for("app_owner").c_str()));
        return scalar(conn.get(), "SELECT count(*) FROM information_schema.columns WHERE table_name = 'profiles' "
                                  "AND column_name = 'timezone'");
    }
};

}  // namespace pgrail::test
