// Cost of SQL analysis (us per call), uncached and cached, for three typical texts.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "pgrail/sql/analysis_cache.hpp"
#include "pgrail/sql/analyzer.hpp"
#include "pgrail/sql/literal_shape.hpp"

namespace {

const std::string short_select = "SELECT id, name FROM users WHERE id = $1";

std::string migration() {
    return R"(-- 20260101_add_profiles.up.sql
SET lock_timeout = '5s';
CREATE TABLE app.profiles (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    display_name text NOT NULL DEFAULT '',
    timezone text NOT NULL DEFAULT 'UTC',
    locale text,
    avatar_url text,
    bio text CHECK (length(bio) < 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX CONCURRENTLY profiles_user_id_key ON app.profiles (user_id);
CREATE INDEX CONCURRENTLY profiles_created_at_idx ON app.profiles (created_at DESC);
ALTER TABLE app.users ADD COLUMN profile_id bigint;
ALTER TABLE app.users ADD CONSTRAINT users_profile_fk
    FOREIGN KEY (profile_id) REFERENCES app.profiles (id) NOT VALID;
ALTER TABLE app.users VALIDATE CONSTRAINT users_profile_fk;
CREATE FUNCTION app.touch_profile() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER profiles_touch BEFORE UPDATE ON app.profiles
    FOR EACH ROW EXECUTE FUNCTION app.touch_profile();
COMMENT ON TABLE app.profiles IS 'one profile per user';
GRANT SELECT, INSERT, UPDATE ON app.profiles TO app_rw;
GRANT SELECT ON app.profiles TO app_ro;
INSERT INTO app.profiles (user_id, display_name)
    SELECT id, coalesce(name, '') FROM app.users;
UPDATE app.users u SET profile_id = p.id FROM app.profiles p WHERE p.user_id = u.id;
CREATE VIEW app.user_profiles AS
    SELECT u.id, u.email, p.display_name, p.timezone
    FROM app.users u JOIN app.profiles p ON p.user_id = u.id;
)";
}

std::string analytical_query() {
    std::string sql = "WITH base AS (SELECT o.id, o.user_id, o.total, o.created_at, c.region FROM app.orders o "
                      "JOIN app.customers c ON c.id = o.user_id WHERE o.created_at >= now() - interval '90 days')";
    for (int index = 0; sql.size() < 4800; ++index) {
        const std::string n = std::to_string(index);
        sql += ", agg" + n + " AS (SELECT region, date_trunc('week', created_at) AS week, count(*) AS orders, "
               "sum(total) FILTER (WHERE total > " + n + ") AS revenue, avg(total) AS mean, "
               "percentile_cont(0.9) WITHIN GROUP (ORDER BY total) AS p90 FROM base "
               "WHERE region <> 'r" + n + "' GROUP BY 1, 2 HAVING count(*) > " + n + ")";
    }
    sql += " SELECT * FROM agg0 ORDER BY week DESC, revenue DESC NULLS LAST LIMIT 100";
    return sql;
}

// This thread's CPU time: on a shared machine wall time mostly measures the neighbours.
double cpu_microseconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) * 1e6 + static_cast<double>(now.tv_nsec) / 1e3;
}

template <class F>
double microseconds_per_call(F&& call) {
    // Calibrate to about 0.3 s of CPU per measurement.
    int iterations = 1;
    for (;;) {
        const double start = cpu_microseconds();
        for (int index = 0; index < iterations; ++index) call();
        const double elapsed = cpu_microseconds() - start;
        if (elapsed > 300000.0 || iterations >= (1 << 26)) return elapsed / iterations;
        iterations *= 2;
    }
}

}  // namespace

int main() {
    struct Input {
        const char* name;
        std::string text;
    };
    const Input inputs[] = {
        {"short SELECT", short_select},
        // pgbench's simple-protocol statements: every text differs, so every one misses the cache.
        {"pgbench SELECT", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"},
        {"pgbench UPDATE", "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 48213;"},
        {"pgbench INSERT", "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                           "VALUES (7, 1, 48213, -4321, CURRENT_TIMESTAMP);"},
        {"40-line migration", migration()},
        {"5 KB analytical query", analytical_query()},
        // The same with an agent's comment line first: comments take the scanner's split path.
        {"the same, a comment", "-- weekly revenue by region, last 90 days\n" + analytical_query()},
    };
    std::printf("CPU time per call\n%-24s %8s %8s %14s %12s %10s\n", "input", "bytes", "stmts", "uncached (us)",
                "cached (us)", "shape (us)");
    for (const Input& input : inputs) {
        std::size_t statements = 0;
        const double uncached = microseconds_per_call([&] {
            statements = pgrail::sql::analyze(input.text).statements.size();
        });
        pgrail::sql::AnalysisCache cache;
        (void)cache.analyze(input.text);
        const double cached = microseconds_per_call([&] {
            const auto analysis = cache.analyze(input.text);
            if (analysis->statements.empty()) std::abort();
        });
        // What a new text of a known shape costs before the policy sees it: its shape key.
        const double shape = microseconds_per_call([&] {
            if (pgrail::sql::literal_shape(input.text).value_or("x").empty()) std::abort();
        });
        std::printf("%-24s %8zu %8zu %14.2f %12.3f %10.3f\n", input.name, input.text.size(), statements, uncached,
                    cached, shape);
    }
    return 0;
}
