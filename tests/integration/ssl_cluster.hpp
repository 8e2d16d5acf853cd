// A PostgreSQL 15 with ssl = on for the TLS tests: the fixture's cluster when it runs with
// PGRAIL_CLUSTER_SSL=1, else one of the test run's own (PostgreSQL only, scripts/test-cluster.sh),
// stopped at exit. Its certificates (scripts/test-certs.sh) are in `tls`.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <catch2/catch.hpp>

namespace pgrail::test {

inline std::map<std::string, std::string> read_env_file(const std::filesystem::path& file) {
    std::map<std::string, std::string> env;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);)
        if (const auto eq = line.find('='); eq != std::string::npos) env[line.substr(0, eq)] = line.substr(eq + 1);
    return env;
}

struct SslCluster {
    std::string host;
    std::uint16_t port = 0;
    std::filesystem::path tls;

    static const SslCluster& get() {
        static const SslCluster cluster = [] {
            if (const char* dir = std::getenv("PGRAIL_CLUSTER_DIR")) {
                auto env = read_env_file(std::filesystem::path(dir) / "env");
                if (env["PGRAIL_CLUSTER_SSL"] == "1") return from(env);
            }
            static const auto own = std::filesystem::temp_directory_path() /
                                    ("pgrail-tls-leg-" + std::to_string(::getpid()));
            const std::string script = std::string(PGRAIL_SOURCE_DIR) + "/scripts/test-cluster.sh";
            const auto start = "PGRAIL_CLUSTER_SSL=1 PGRAIL_DIRECT=1 '" + script + "' start '" + own.string() + "' >/dev/null";
            REQUIRE(std::system(start.c_str()) == 0);
            std::atexit([] {
                const auto stop = "'" + std::string(PGRAIL_SOURCE_DIR) + "/scripts/test-cluster.sh' stop '" +
                                  own.string() + "' >/dev/null";
                (void)std::system(stop.c_str());
                std::filesystem::remove_all(own);
            });
            return from(read_env_file(own / "env"));
        }();
        return cluster;
    }

private:
    static SslCluster from(std::map<std::string, std::string> env) {
        SslCluster cluster;
        cluster.host = env["PG_HOST"];
        cluster.port = static_cast<std::uint16_t>(std::stoi(env["PG_PORT"]));
        cluster.tls = env["PGRAIL_TLS_DIR"];
        return cluster;
    }
};

}  // namespace pgrail::test
