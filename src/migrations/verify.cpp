// The rollback proof: up, down, compare schema dumps, up again, in a scratch database.
#include <libpq-fe.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "internal.hpp"
#include "pgrail/audit/redact_message.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/quote.hpp"
#include "pgrail/migrations/conninfo.hpp"
#include "pgrail/migrations/schema_diff.hpp"
#include "verify_measure.hpp"

extern char** environ;

namespace pgrail::migrations {

namespace detail {

std::string bounded_detail(std::string text) {
    constexpr std::size_t max_detail_bytes = 16 * 1024;
    if (text.size() <= max_detail_bytes) return text;
    std::size_t cut = max_detail_bytes;
    for (int back = 0; back < 3 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80; ++back) --cut;
    const std::size_t dropped = text.size() - cut;
    text.resize(cut);
    return text + fmt::format(" ... ({} bytes more)", dropped);
}

}  // namespace detail

namespace {

using detail::elapsed_ms;

// `conninfo` (key/value or URI) with its database replaced, as key/value text.
std::string with_database(const std::string& conninfo, const std::string& database) {
    auto options = parse_conninfo(conninfo);
    std::erase_if(options, [](const auto& option) { return option.keyword == "dbname"; });
    options.push_back({"dbname", database, ""});
    return conninfo_text(options);
}

std::string pg_dump_path(const RunnerOptions& options) {
    if (!options.pg_dump.empty()) return options.pg_dump;
    if (const char* env = std::getenv("PGRAIL_PG_DUMP"); env != nullptr && *env != '\0') return env;
    if (std::filesystem::exists("/usr/lib/postgresql/15/bin/pg_dump")) return "/usr/lib/postgresql/15/bin/pg_dump";
    return "pg_dump";
}

// The most of a schema dump pgrail holds (several are compared per proof).
constexpr std::size_t max_dump_bytes = std::size_t{256} << 20;

// Runs pg_dump --schema-only against `conninfo`, passing the connection through libpq's
// environment variables so that no password appears on a command line. `deadline`: a proposal's
// proof's end, which its every dump shares (`what` names this one in the error).
std::string schema_dump(const RunnerOptions& options, const std::string& conninfo,
                        std::optional<std::chrono::steady_clock::time_point> deadline, std::string_view what) {
    std::vector<std::string> env;
    for (char** entry = environ; *entry != nullptr; ++entry)
        if (std::strncmp(*entry, "PG", 2) != 0) env.emplace_back(*entry);
    for (const auto& option : parse_conninfo(conninfo))
        if (!option.envvar.empty()) env.push_back(option.envvar + "=" + option.value);
    std::vector<char*> envp;
    for (auto& entry : env) envp.push_back(entry.data());
    envp.push_back(nullptr);

    const std::string program = pg_dump_path(options);
    // The backstop is pgrail's, not the application's (and its key table is not the runner's to
    // read): never part of a dump compared or loaded.
    std::vector<std::string> args = {program, "--schema-only", "--no-password", "--quote-all-identifiers",
                                     "--exclude-schema=" + std::string(backstop_schema)};
    // A proposal's proof holds a turn: a table locked exclusively by someone makes it fail, never wait.
    if (options.proof_bounds && options.proof_bounds->total.count() > 0)
        args.push_back(fmt::format("--lock-wait-timeout={}", options.proof_bounds->total.count()));
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);

    std::array<int, 2> out_pipe{};
    std::array<int, 2> err_pipe{};
    // Close-on-exec: a dump spawned meanwhile by another thread must not hold this one's pipes open.
    if (::pipe2(out_pipe.data(), O_CLOEXEC) != 0 || ::pipe2(err_pipe.data(), O_CLOEXEC) != 0)
        throw MigrationError(sqlstate::system_error,
                             fmt::format("cannot create a pipe for pg_dump: {}", std::strerror(errno)));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
    for (const int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) posix_spawn_file_actions_addclose(&actions, fd);
    // A process group of its own: a wrapper's children end with it when a bound stops the dump.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    pid_t pid = 0;
    const int spawned = ::posix_spawnp(&pid, program.c_str(), &actions, &attributes, argv.data(), envp.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (spawned != 0) {
        ::close(out_pipe[0]);
        ::close(err_pipe[0]);
        throw MigrationError(sqlstate::system_error, fmt::format("cannot run {}: {}", program, std::strerror(spawned)),
                             "", "install the PostgreSQL client tools or set PGRAIL_PG_DUMP");
    }
    std::string out;
    std::string err;
    std::array<pollfd, 2> fds{pollfd{out_pipe[0], POLLIN, 0}, pollfd{err_pipe[0], POLLIN, 0}};
    std::array<char, 65536> buffer{};
    int open_fds = 2;
    // Bounded like the proof it serves (a proposal's: its time; any: max_dump_bytes held), so that
    // no schema, however an unread script made it, holds pgrail's memory or a proof's turn.
    std::string too_much;
    while (open_fds > 0 && too_much.empty()) {
        int wait_ms = -1;
        if (deadline) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                too_much = "did not end within the proof's time";
                break;
            }
            wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 60000));
        }
        const int ready = ::poll(fds.data(), fds.size(), wait_ms);
        if (ready < 0) {
            if (errno == EINTR) continue;
            too_much = fmt::format("could not be read ({})", std::strerror(errno));
            break;
        }
        if (out.size() + err.size() > max_dump_bytes) {
            too_much = fmt::format("wrote more than {} bytes", max_dump_bytes);
            break;
        }
        for (std::size_t k = 0; k < fds.size(); ++k) {
            if (fds[k].fd < 0 || fds[k].revents == 0) continue;
            const ssize_t n = ::read(fds[k].fd, buffer.data(), buffer.size());
            if (n > 0) {
                (k == 0 ? out : err).append(buffer.data(), static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[k].fd);
                fds[k].fd = -1;
                --open_fds;
            }
        }
    }
    if (!too_much.empty()) {
        ::kill(-pid, SIGKILL);
        for (auto& fd : fds)
            if (fd.fd >= 0) ::close(fd.fd);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!too_much.empty())
        throw MigrationError(sqlstate::program_limit_exceeded,
                             fmt::format("pg_dump --schema-only of {} {}: stopped", what, too_much));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (!err.empty() && err.back() == '\n') err.pop_back();
        throw MigrationError(sqlstate::system_error, fmt::format("pg_dump --schema-only failed: {}", err));
    }
    return out;
}

// pg_dump (15.14 and later) brackets its output with psql's \restrict / \unrestrict
// meta-commands; the server does not know them, and nothing else in a schema dump is psql's.
std::string without_psql_restrict(const std::string& dump) {
    std::string out;
    out.reserve(dump.size());
    std::size_t pos = 0;
    while (pos < dump.size()) {
        auto eol = dump.find('\n', pos);
        eol = eol == std::string::npos ? dump.size() : eol + 1;
        const std::string_view line(dump.data() + pos, eol - pos);
        if (!line.starts_with("\\restrict ") && !line.starts_with("\\unrestrict ")) out.append(line);
        pos = eol;
    }
    return out;
}

// A scratch database that is dropped whatever happens.
class ScratchDatabase {
public:
    explicit ScratchDatabase(const std::string& server_conninfo) : server_conninfo_(server_conninfo) {
        std::random_device random;
        name_ = fmt::format("pgrail_verify_{:08x}{:08x}", random(), random());
        auto conn = detail::connect(server_conninfo_);
        try {
            pqxx::nontransaction tx(*conn);
            // Only its owner (the migrator) may connect: a new database lets PUBLIC connect, and
            // another role's session there, even one connected before a REVOKE, could plant code
            // that the scripts then run as the migrator. Created closed to everyone, closed to
            // PUBLIC, then opened.
            const auto name = sql::quote_identifier(name_);
            tx.exec0(fmt::format("CREATE DATABASE {} TEMPLATE template0 ALLOW_CONNECTIONS false", name));
            tx.exec0(fmt::format("REVOKE ALL ON DATABASE {} FROM PUBLIC", name));
            tx.exec0(fmt::format("ALTER DATABASE {} ALLOW_CONNECTIONS true", name));
        } catch (...) {
            detail::rethrow_database_error("cannot create the scratch database for verify");
        }
        conninfo_ = with_database(server_conninfo_, name_);
    }
    ~ScratchDatabase() {
        try {
            auto conn = detail::connect(server_conninfo_);
            pqxx::nontransaction tx(*conn);
            tx.exec0(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", sql::quote_identifier(name_)));
        } catch (...) {
            // Best effort: the name says what it is, an operator can drop a leftover.
        }
    }
    ScratchDatabase(const ScratchDatabase&) = delete;
    ScratchDatabase& operator=(const ScratchDatabase&) = delete;

    [[nodiscard]] const std::string& conninfo() const { return conninfo_; }

private:
    std::string server_conninfo_;
    std::string name_;
    std::string conninfo_;
};

// The scripts resolve unqualified names in the scratch copy as the runner's sessions do on the
// target: a search_path the target's database or role defaults give (ALTER DATABASE ... SET
// search_path) is not in the schema dump, and without it a name could mean another object there.
// The schemas as the target resolved them ("$user" is the runner's there, whoever the scratch
// copy's role is). pgrail's own queries on the scratch copy name pg_catalog (scratch_escape).
void copy_search_path(pqxx::connection& target, pqxx::connection& scratch) {
    try {
        pqxx::nontransaction read(target);
        const auto path = read.exec1("SELECT pg_catalog.array_to_string(pg_catalog.array_agg("
                                     "pg_catalog.quote_ident(s.name) ORDER BY s.n), ', ') "
                                     "FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY "
                                     "AS s(name, n)")[0]
                              .as<std::string>("");
        pqxx::nontransaction write(scratch);
        (void)write.exec_params1("SELECT pg_catalog.set_config('search_path', $1, false)", path);
    } catch (...) {
        detail::rethrow_database_error("cannot give the scratch database the target's search_path");
    }
}

// `before_commit` runs inside a transactional script's transaction after its last statement
// (after a no-transaction script, in a transaction of its own).
void run_in_scratch(pqxx::connection& conn, const detail::Timeouts& timeouts, const AbandonFlag& abandoned,
                    const Migration& migration, Direction direction,
                    const std::function<void(pqxx::transaction_base&)>& before_commit =
                        [](pqxx::transaction_base&) {}) {
    const Script& script = direction == Direction::up ? migration.up : migration.down;
    const auto failure = detail::run_script(conn, script, timeouts, before_commit,
                                            abandoned);  // a proposer that left stops its proof
    if (failure) throw detail::script_error(migration, direction, script, *failure);
}

struct MeasuredUp {
    std::int64_t ms = 0;
    bool locks_measured = false;
    std::vector<TableLock> locks;
};

// Runs up with what verify measures: its time, and the locks it holds on the tables of `before`
// just before it commits (a transactional script; a no-transaction one has no such moment); then
// `inspect` (RunnerOptions::inspect_up), when given.
MeasuredUp measured_up(pqxx::connection& conn, const detail::Timeouts& timeouts, const AbandonFlag& abandoned,
                       const Migration& migration, const detail::TableFiles& before,
                       const std::function<void(pqxx::transaction_base&, const Migration&)>& inspect = {}) {
    MeasuredUp out;
    const auto started = std::chrono::steady_clock::now();
    run_in_scratch(conn, timeouts, abandoned, migration, Direction::up, [&](pqxx::transaction_base& tx) {
        if (!migration.up.no_transaction) out.locks = detail::held_locks(tx, before);
        if (inspect) inspect(tx, migration);
    });
    out.ms = elapsed_ms(started);
    out.locks_measured = !migration.up.no_transaction;
    return out;
}

}  // namespace

std::vector<VerifyResult> Runner::verify(const std::optional<std::string>& version_text) {
    // Authorized: it records the outcomes in the ledger (and may create it).
    auto target_conn = detail::connect(options_.conninfo, options_.backstop_key_file);
    std::string actor = options_.actor;
    LedgerState ledger;
    try {
        if (actor.empty()) {
            pqxx::nontransaction tx(*target_conn);
            actor = tx.exec1("SELECT session_user::text")[0].as<std::string>();
        }
        ledger = detail::read_ledger(*target_conn);
    } catch (...) {
        detail::rethrow_database_error("cannot read the migration ledger");
    }
    const auto status = compute_status(*registry_, ledger);
    // The target's schema is not what its ledger says: a scratch copy of it proves nothing.
    detail::check_no_partial(status);
    if (has_drift(status))
        throw MigrationError(sqlstate::object_not_in_prerequisite_state,
                             "cannot verify: applied migrations drifted from their files", "",
                             "resolve the drift first (docs/migrations.md)");

    // Bring the scratch copy to the state just before the first migration to verify.
    std::vector<const Migration*> prepare_up;
    std::vector<const Migration*> prepare_down;
    std::vector<const Migration*> targets;
    if (version_text) {
        const auto version = canonical_version(*version_text);
        if (!version)
            throw MigrationError(sqlstate::invalid_parameter_value,
                                 fmt::format("invalid migration version \"{}\"", *version_text));
        const auto entry = std::find_if(status.begin(), status.end(), [&](const StatusEntry& e) {
            return e.version == *version && e.migration != nullptr;
        });
        if (entry == status.end())
            throw MigrationError(sqlstate::invalid_parameter_value,
                                 fmt::format("no registered migration with version {}", *version));
        targets.push_back(entry->migration);
        if (entry->state == State::pending) {
            for (const auto& e : status)
                if (e.state == State::pending && version_less(*e.version, *version)) prepare_up.push_back(e.migration);
        } else {
            for (auto it = ledger.applied.rbegin(); it != ledger.applied.rend(); ++it) {
                prepare_down.push_back(registry_->find(it->version));
                if (it->version == *version) break;
            }
        }
    } else {
        for (const auto& e : status)
            if (e.state == State::pending) targets.push_back(e.migration);
    }
    if (targets.empty()) return {};

    std::vector<VerifyResult> results;
    // A proposal's proof: its dumps, like its scripts, end by the proof's time.
    std::optional<std::chrono::steady_clock::time_point> proof_deadline;
    if (options_.proof_bounds && options_.proof_bounds->total.count() > 0)
        proof_deadline = std::chrono::steady_clock::now() + options_.proof_bounds->total;
    {
        ScratchDatabase scratch(options_.scratch_conninfo.empty() ? options_.conninfo : options_.scratch_conninfo);
        const std::string original = schema_dump(options_, options_.conninfo, proof_deadline, "the live schema");
        VerifySample sample;
        {
            // Its own connection: the dump's set_config('search_path', '', false) must not stay.
            auto restore = detail::connect(scratch.conninfo());
            try {
                pqxx::nontransaction tx(*restore);
                tx.exec(without_backstop(without_psql_restrict(original)));
            } catch (...) {
                detail::rethrow_database_error("cannot load the schema dump into the scratch database");
            }
        }
        // Opt-in: the live rows meet the migration (the copy is of the live schema, before any
        // migration is brought forward or back below).
        sample = detail::copy_sample(options_, scratch.conninfo());
        auto conn = detail::connect(scratch.conninfo());
        copy_search_path(*target_conn, *conn);
        const detail::Timeouts runner_timeouts{options_.lock_timeout, options_.statement_timeout};
        for (const Migration* migration : prepare_down)
            run_in_scratch(*conn, runner_timeouts, options_.abandoned, *migration, Direction::down);
        for (const Migration* migration : prepare_up)
            run_in_scratch(*conn, runner_timeouts, options_.abandoned, *migration, Direction::up);
        if (options_.scratch_call_names) {
            std::optional<std::string> escape;
            try {
                escape = detail::scratch_escape(*conn, *options_.scratch_call_names);
            } catch (...) {
                detail::rethrow_database_error("cannot read the scratch database's catalog");
            }
            if (escape)
                throw MigrationError(
                    sqlstate::insufficient_privilege,
                    fmt::format("pgrail does not run these scripts before a person approves them: {}", *escape));
        }
        // A verified migration's scripts run under the runner's timeouts; an agent's proposal's
        // under the proof's bounds too (its size growth counted from here, its time from now).
        const auto script_timeouts = [&](pqxx::connection& scratch_conn) {
            detail::Timeouts timeouts{options_.lock_timeout, options_.statement_timeout};
            if (!options_.proof_bounds) return timeouts;
            const auto& bounds = *options_.proof_bounds;
            if (bounds.statement_timeout.count() > 0)
                timeouts.statement_timeout = std::min(timeouts.statement_timeout, bounds.statement_timeout);
            if (bounds.total.count() > 0) timeouts.deadline = std::chrono::steady_clock::now() + bounds.total;
            if (bounds.max_growth_bytes > 0) {
                pqxx::nontransaction tx(scratch_conn);
                timeouts.max_database_bytes =
                    tx.exec1("SELECT pg_catalog.pg_database_size(pg_catalog.current_database())")[0]
                        .as<std::uint64_t>() +
                    bounds.max_growth_bytes;
            }
            timeouts.discard_rows = true;
            return timeouts;
        };
        for (const Migration* migration : targets) {
            const auto started = std::chrono::steady_clock::now();
            VerifyResult result{migration->version, migration->name, migration->checksum, false, "", 0, {}, sample};
            auto& measurement = result.measurement;
            try {
                const auto dump = [&] {
                    return normalize_dump(schema_dump(options_, scratch.conninfo(), proof_deadline, "the scratch copy"));
                };
                const std::string before = dump();
                const auto files_before = detail::table_files(*conn);
                const detail::Timeouts timeouts = script_timeouts(*conn);
                auto up = measured_up(*conn, timeouts, options_.abandoned, *migration, files_before,
                                      options_.inspect_up);
                measurement.up_ms = up.ms;
                measurement.locks_measured = up.locks_measured;
                measurement.locks = std::move(up.locks);
                const auto files_after_up = detail::table_files(*conn);
                measurement.rewrites = detail::rewritten(files_before, files_after_up);
                const std::string after_up = dump();
                const auto down_started = std::chrono::steady_clock::now();
                run_in_scratch(*conn, timeouts, options_.abandoned, *migration, Direction::down);
                measurement.down_ms = elapsed_ms(down_started);
                measurement.down_rewrites = detail::rewritten(files_after_up, detail::table_files(*conn));
                const std::string after_down = dump();
                std::string diff = unified_diff(before, after_down, "schema before up", "schema after up + down");
                if (diff.empty()) {
                    measurement.reup_ms = measured_up(*conn, timeouts, options_.abandoned, *migration, {}).ms;
                    diff = unified_diff(after_up, dump(), "schema after up", "schema after up + down + up");
                }
                result.passed = diff.empty();
                result.detail = diff.empty() ? "" : "the rollback does not restore the schema:\n" + diff;
            } catch (const MigrationError& error) {
                result.detail = error.message() + (error.detail().empty() ? "" : "\n" + error.detail());
            } catch (const pqxx::failure&) {
                // Reading the catalog between scripts (table_files) failed.
                try {
                    detail::rethrow_database_error("cannot measure the migration in the scratch database");
                } catch (const MigrationError& error) {
                    result.detail = error.message();
                }
            }
            result.detail = detail::bounded_detail(std::move(result.detail));
            result.duration_ms = elapsed_ms(started);
            results.push_back(result);
            if (!result.passed) break;  // later migrations would start from an unknown state
        }
    }

    // Record the outcomes in the target's ledger.
    try {
        detail::AdvisoryLock lock(*target_conn, options_.lock_wait);
        detail::ensure_ledger(*target_conn);
        pqxx::work tx(*target_conn);
        // The failure first (a diff or an error, read by people), then what was measured.
        for (const auto& result : results) {
            const std::string measured = measurement_text(result);
            const std::string text =
                result.detail.empty() ? measured : result.detail + "\nin the scratch copy: " + measured;
            detail::insert_event(tx, result.version, result.name, result.checksum, "verified", result.passed, actor,
                                 result.duration_ms, text);
        }
        tx.commit();
    } catch (...) {
        detail::rethrow_database_error("cannot record the verify result");
    }
    for (const auto& result : results) {
        if (!options_.audit) break;
        nlohmann::json record = {{"type", "migration"},          {"event", "verified"},
                                 {"version", result.version},    {"name", result.name},
                                 {"checksum", result.checksum},  {"duration_ms", result.duration_ms},
                                 {"user", actor},                {"outcome", result.passed ? "ok" : "failed"}};
        if (!result.passed) record["detail"] = audit::redact_message(result.detail);
        record["measured"] = measurement_json(result);
        if (!options_.audit(record))
            throw MigrationError(sqlstate::io_error, "the audit record of a verify could not be written");
    }
    return results;
}

}  // namespace pgrail::migrations
