// Driver of bench/unique_text_bench.sh: the agent's workload of ad hoc statements, every text new.
//
//   unique_text_bench latency    CONNINFO SIZE KIND COUNT   -> "median_us p90_us"        (one client)
//   unique_text_bench throughput CONNINFO SIZE KIND CLIENTS SECONDS -> "statements_per_s"
//   unique_text_bench analysis   SIZE KIND [POLICY_FILE]    -> "us_per_text us_per_kb"   (CPU, no I/O)
//   unique_text_bench sample     SIZE KIND                  -> one generated text
//
// KIND is read (SELECT with a long IN list, a CASE, a three-way join), commented (the same read
// with a comment line first, as agents often write it), or write (multi-row INSERT, and UPDATE ...
// SET v = CASE ... WHERE id IN (...), alternately), all allowed by policies/default.yaml. SIZE is the text's length in bytes (within a few bytes). Every text holds
// a fresh number in its identifiers (column aliases, CASE labels), so neither pgrail's text cache
// nor its shape cache (which ignores literals, not names) can answer it: each one is analysed.
#include <libpq-fe.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace {

// Unique across processes and runs of one pgrail: the time and pid, then a counter.
std::atomic<std::uint64_t> next_serial{0};
std::uint64_t base_serial() {
    static const std::uint64_t base =
        (static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
         (static_cast<std::uint64_t>(getpid()) << 40)) % 1000000000000ULL;
    return base;
}
std::string fresh_tag() { return std::to_string(base_serial()) + "_" + std::to_string(next_serial++); }

std::uint64_t mix(std::uint64_t x) {  // splitmix64: cheap, varied literal values
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Rows in bench_unique: ids 1..10000 (the script creates them).
constexpr std::uint64_t table_rows = 10000;

std::string read_text(std::size_t size, std::uint64_t seed) {
    const std::string tag = fresh_tag();
    std::uint64_t x = seed;
    if (size < 400) {  // too short for the join and the CASE: a lookup by a few keys
        std::string sql = "SELECT id, v AS v_" + tag + " FROM bench_unique WHERE id IN (";
        for (bool first = true; sql.size() + 8 < size || first; first = false) {
            x = mix(x);
            sql += (first ? "" : ", ") + std::to_string(1 + x % table_rows);
        }
        return sql + ")";
    }
    std::string sql = "SELECT t.id, t.k AS k_" + tag + ", u.v, w.n, CASE";
    std::string tail = " ELSE 'other' END AS label_" + tag +
                       " FROM bench_unique t JOIN bench_unique u ON u.id = t.k JOIN bench_unique w ON w.id = u.k"
                       " WHERE t.v <> 'none' AND t.id IN (";
    const std::string end = ") ORDER BY t.id LIMIT 50";
    // Half of the budget to the CASE, the rest to the IN list.
    for (int arm = 0; sql.size() + tail.size() + end.size() < size / 2 || arm == 0; ++arm) {
        x = mix(x);
        sql += " WHEN t.k = " + std::to_string(x % table_rows) + " THEN 'l" + std::to_string(arm) + "_" + tag + "'";
    }
    sql += tail;
    bool first = true;
    while (sql.size() + end.size() + 8 < size || first) {
        x = mix(x);
        if (!first) sql += ", ";
        sql += std::to_string(1 + x % table_rows);
        first = false;
    }
    return sql + end;
}

// UPDATE ids are those of one partition (id % 16 == part): concurrent clients never wait on one
// another's row locks, which would measure PostgreSQL's deadlock detector.
std::uint64_t row_of(std::uint64_t x, std::uint64_t part) { return 1 + (x % (table_rows / 16)) * 16 + part; }

std::string write_text(std::size_t size, std::uint64_t seed, bool insert, std::uint64_t part) {
    const std::string tag = fresh_tag();
    std::uint64_t x = seed;
    if (insert) {
        std::string sql = "INSERT INTO bench_unique_log (batch, k, v, n) VALUES ";
        const std::string end = " RETURNING batch AS batch_" + tag;
        bool first = true;
        while (sql.size() + end.size() + 40 < size || first) {
            x = mix(x);
            if (!first) sql += ", ";
            sql += "(" + std::to_string(x % 1000) + ", " + std::to_string(x % table_rows) + ", 'v" +
                   std::to_string(x % 99991) + "', " + std::to_string(x % 1000) + "." + std::to_string(x % 97) + ")";
            first = false;
        }
        return sql + end;
    }
    std::string sql = "UPDATE bench_unique SET n = n + 1, v = CASE";
    const std::string middle = " ELSE v END WHERE k >= 0 AND id IN (";
    const std::string end = ") RETURNING id AS id_" + tag;
    for (int arm = 0; sql.size() + middle.size() + end.size() < size / 2 || arm == 0; ++arm) {
        x = mix(x);
        sql += " WHEN id = " + std::to_string(row_of(x, part)) + " THEN 'u" + std::to_string(arm) + "_" + tag + "'";
    }
    sql += middle;
    bool first = true;
    while (sql.size() + end.size() + 8 < size || first) {
        x = mix(x);
        if (!first) sql += ", ";
        sql += std::to_string(row_of(x, part));
        first = false;
    }
    return sql + end;
}

// The index-th text of KIND for client `client`: writes alternate INSERT and UPDATE.
std::string text_of(const std::string& kind, std::size_t size, std::uint64_t index, std::uint64_t client = 0) {
    const std::uint64_t seed = mix(index ^ base_serial() ^ (client << 48));
    if (kind == "read") return read_text(size, seed);
    if (kind == "commented") {
        const std::string comment = "-- asked by the agent: which labels changed this week?\n";
        return comment + read_text(size > comment.size() ? size - comment.size() : 0, seed);
    }
    return write_text(size, seed, index % 2 == 0, client % 16);
}

double now_us() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<double>(now.tv_sec) * 1e6 + static_cast<double>(now.tv_nsec) / 1e3;
}

// The process's CPU time: long texts are parsed on the analyzer's big-stack workers.
double cpu_us() {
    timespec now{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) * 1e6 + static_cast<double>(now.tv_nsec) / 1e3;
}

PGconn* connect_or_die(const char* conninfo) {
    PGconn* conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        std::fprintf(stderr, "unique_text_bench: cannot connect: %s", PQerrorMessage(conn));
        std::exit(1);
    }
    return conn;
}

// Runs one text; any error ends the benchmark (a refusal would measure the wrong thing).
void run_or_die(PGconn* conn, const std::string& sql) {
    PGresult* result = PQexec(conn, sql.c_str());
    const ExecStatusType status = PQresultStatus(result);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        std::fprintf(stderr, "unique_text_bench: statement failed: %s\n  text: %.200s...\n",
                     PQresultErrorMessage(result), sql.c_str());
        std::exit(1);
    }
    PQclear(result);
}

double percentile(std::vector<double> values, double fraction) {
    std::sort(values.begin(), values.end());
    const auto index = static_cast<std::size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

int latency(const char* conninfo, std::size_t size, const std::string& kind, int count) {
    PGconn* conn = connect_or_die(conninfo);
    std::vector<double> samples;
    for (int index = 0; index < count; ++index) {
        const std::string sql = text_of(kind, size, static_cast<std::uint64_t>(index));  // generated off the clock
        const double start = now_us();
        run_or_die(conn, sql);
        samples.push_back(now_us() - start);
    }
    PQfinish(conn);
    std::printf("%.0f %.0f\n", percentile(samples, 0.5), percentile(samples, 0.9));
    return 0;
}

int throughput(const char* conninfo, std::size_t size, const std::string& kind, int clients, double seconds) {
    std::atomic<std::uint64_t> done{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    std::vector<PGconn*> conns;
    for (int client = 0; client < clients; ++client) conns.push_back(connect_or_die(conninfo));
    const double start = now_us();
    for (int client = 0; client < clients; ++client) {
        threads.emplace_back([&, client] {
            for (std::uint64_t index = 0; !stop.load(); ++index) {
                run_or_die(conns[static_cast<std::size_t>(client)],
                           text_of(kind, size, index, static_cast<std::uint64_t>(client)));
                done.fetch_add(1);
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (std::thread& thread : threads) thread.join();
    const double elapsed = (now_us() - start) / 1e6;
    for (PGconn* conn : conns) PQfinish(conn);
    std::printf("%.1f\n", static_cast<double>(done.load()) / elapsed);
    return 0;
}

// CPU time of pgrail's analysis (and, given a policy file, its decision as user agent) per new text.
int analysis(std::size_t size, const std::string& kind, const char* policy_file) {
    std::shared_ptr<const pgrail::policy::Policy> policy;
    if (policy_file != nullptr) policy = pgrail::policy::load_policy_file(policy_file);
    pgrail::policy::SessionInfo session{"agent", "app", "bench", "127.0.0.1", {}};
    constexpr int count = 200;
    std::vector<std::string> texts;
    std::size_t bytes = 0;
    for (int index = 0; index < count; ++index) {
        texts.push_back(text_of(kind, size, static_cast<std::uint64_t>(index)));
        bytes += texts.back().size();
    }
    // Analysed on a thread with an 8 MB stack (the default), as pgrail's I/O threads and analysis pool have.
    // sql::analyze() keeps no cache: the texts are analysed again until 0.5 s of CPU have passed.
    const auto analyse_all = [&] {
        for (const std::string& text : texts) {
            const auto result = pgrail::sql::analyze(text);
            if (result.error || result.statements.empty()) {
                std::fprintf(stderr, "unique_text_bench: analysis failed: %s\n",
                             result.error ? result.error->message.c_str() : "no statement");
                std::exit(1);
            }
            if (policy && pgrail::policy::evaluate_all(*policy, session, result).action !=
                              pgrail::policy::Decision::Action::allow) {
                std::fprintf(stderr, "unique_text_bench: the policy refuses: %.200s\n", text.c_str());
                std::exit(1);
            }
        }
    };
    double elapsed = 0;
    std::size_t analysed = 0;
    std::thread worker([&] {
        const double start = cpu_us();
        for (; analysed == 0 || cpu_us() - start < 500000.0; analysed += texts.size()) analyse_all();
        elapsed = cpu_us() - start;
    });
    worker.join();
    const double rounds = static_cast<double>(analysed / texts.size());
    std::printf("%.1f %.1f\n", elapsed / static_cast<double>(analysed),
                elapsed / rounds / (static_cast<double>(bytes) / 1024.0));
    return 0;
}

int usage() {
    std::fprintf(stderr,
                 "usage: unique_text_bench latency CONNINFO SIZE KIND COUNT\n"
                 "       unique_text_bench throughput CONNINFO SIZE KIND CLIENTS SECONDS\n"
                 "       unique_text_bench analysis SIZE KIND [POLICY_FILE]\n"
                 "       unique_text_bench sample SIZE KIND\n"
                 "KIND: read | commented | write; SIZE in bytes (64 to 1048576)\n");
    return 2;
}

std::size_t size_arg(const char* text) {
    const long value = std::strtol(text, nullptr, 10);
    if (value < 64 || value > (1L << 20)) std::exit(usage());
    return static_cast<std::size_t>(value);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string mode = argv[1];
    const auto kind_ok = [](const std::string& kind) {
        return kind == "read" || kind == "commented" || kind == "write";
    };
    if (mode == "latency" && argc == 6 && kind_ok(argv[4])) {
        return latency(argv[2], size_arg(argv[3]), argv[4], std::max(1, std::atoi(argv[5])));
    }
    if (mode == "throughput" && argc == 7 && kind_ok(argv[4])) {
        return throughput(argv[2], size_arg(argv[3]), argv[4], std::clamp(std::atoi(argv[5]), 1, 256),
                          std::max(0.5, std::atof(argv[6])));
    }
    if (mode == "analysis" && (argc == 4 || argc == 5) && kind_ok(argv[3])) {
        return analysis(size_arg(argv[2]), argv[3], argc == 5 ? argv[4] : nullptr);
    }
    if (mode == "sample" && argc == 4 && kind_ok(argv[3])) {
        std::printf("%s\n", text_of(argv[3], size_arg(argv[2]), 0).c_str());
        return 0;
    }
    return usage();
}
