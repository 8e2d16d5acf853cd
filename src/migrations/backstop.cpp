// The database's own backstop: its SQL, install/status/uninstall, the runner's key and its
// authorization (docs/security.md, "The database's own backstop").
#include "pgrail/migrations/backstop.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "internal.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/quote.hpp"

namespace pgrail::migrations {

namespace {

// Tags that can change only the session's temporary relations. They pass ddl_command_start;
// the end triggers then refuse the command unless every object it created, altered or dropped
// is temporary (and inherits from nothing permanent). Every one of them is transactional, so a
// refusal at the end undoes it. Never here: CREATE/DROP INDEX (CONCURRENTLY commits before an
// end trigger could refuse), and whatever pgrail's policy does not allow for temporary objects.
// ALTER TABLE ... DETACH PARTITION CONCURRENTLY also commits early: an ALTER TABLE whose text
// says CONCURRENTLY is refused at the start (it cannot run inside a function, so the text is
// the client's own).
constexpr std::string_view backstop_sql = R"SQL(
CREATE TABLE IF NOT EXISTS pgrail_backstop.runner_key (key_sha256 bytea NOT NULL);
CREATE TABLE IF NOT EXISTS pgrail_backstop.runner_sessions (
    pid           int NOT NULL,
    backend_start timestamptz NOT NULL,
    authorized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pid, backend_start));
REVOKE ALL ON pgrail_backstop.runner_key, pgrail_backstop.runner_sessions FROM PUBLIC;

-- This backend is an authorized runner: a row with its pid AND its start time (a pid is reused,
-- the pair never is).
CREATE OR REPLACE FUNCTION pgrail_backstop.is_runner() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
    SELECT EXISTS (SELECT 1 FROM pgrail_backstop.runner_sessions s
                   JOIN pg_stat_get_activity(pg_backend_pid()) a
                     ON a.pid = s.pid AND a.backend_start = s.backend_start)
$f$;

-- The runner sends its key as a bound parameter, once per connection. A wrong key is a plain
-- false: no error, nothing to learn from.
CREATE OR REPLACE FUNCTION pgrail_backstop.authorize(key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF key IS NULL OR NOT EXISTS (SELECT 1 FROM pgrail_backstop.runner_key k
                                  WHERE k.key_sha256 = sha256(convert_to(key, 'UTF8'))) THEN
        RETURN false;
    END IF;
    DELETE FROM pgrail_backstop.runner_sessions s
     WHERE NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(s.pid) a WHERE a.backend_start = s.backend_start);
    INSERT INTO pgrail_backstop.runner_sessions (pid, backend_start)
    SELECT a.pid, a.backend_start FROM pg_stat_get_activity(pg_backend_pid()) a
    ON CONFLICT DO NOTHING;
    RETURN true;
END
$f$;

CREATE OR REPLACE FUNCTION pgrail_backstop.refuse(tag text, target text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = '42501',
        MESSAGE = 'pgrail backstop: schema changes go through pgrail''s migrations',
        DETAIL = format('%s%s refused by the database''s backstop: only pgrail''s migration runner changes '
                        'the schema and writes its ledger.', tag, coalesce(' on ' || target, '')),
        HINT = 'Propose the change through pgrail: SELECT * FROM pgrail.propose_migration(name, up_sql, down_sql); '
               'or register it as a migration (<version>_<name>.up.sql and .down.sql), which '
               'SELECT * FROM pgrail.migrate_up() or `pgrail migrate up` applies.';
END
$f$;

-- A temporary relation that inherits from nothing permanent (a temporary child of a permanent
-- table changes what the parent's queries read).
CREATE OR REPLACE FUNCTION pgrail_backstop.is_temporary_relation(relation oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$
    SELECT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = relation AND c.relpersistence = 't'
                   AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                                   WHERE i.inhrelid = c.oid AND p.relpersistence <> 't'))
$f$;

CREATE OR REPLACE FUNCTION pgrail_backstop.on_ddl_command_start() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    -- Data, not schema.
    IF tg_tag = 'REFRESH MATERIALIZED VIEW' THEN
        RETURN;
    END IF;
    IF pgrail_backstop.allows_temp()
       AND tg_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW', 'CREATE SEQUENCE',
                      'ALTER TABLE', 'ALTER VIEW', 'ALTER SEQUENCE', 'DROP TABLE', 'DROP VIEW', 'DROP SEQUENCE')
       AND NOT (tg_tag = 'ALTER TABLE' AND strpos(lower(coalesce(current_query(), '')), 'concurrently') > 0) THEN
        RETURN;  -- the end triggers let it stand only if it changed temporary relations alone
    END IF;
    IF pgrail_backstop.is_runner() THEN
        RETURN;
    END IF;
    PERFORM pgrail_backstop.refuse(tg_tag, NULL);
END
$f$;

CREATE OR REPLACE FUNCTION pgrail_backstop.on_ddl_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    changed record;
BEGIN
    IF tg_tag = 'REFRESH MATERIALIZED VIEW' THEN
        RETURN;
    END IF;
    FOR changed IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        CONTINUE WHEN changed.classid = 'pg_class'::regclass
                  AND pgrail_backstop.is_temporary_relation(changed.objid);
        IF pgrail_backstop.is_runner() THEN
            RETURN;
        END IF;
        PERFORM pgrail_backstop.refuse(tg_tag, coalesce(changed.object_identity, changed.object_type));
    END LOOP;
END
$f$;

CREATE OR REPLACE FUNCTION pgrail_backstop.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    dropped record;
BEGIN
    FOR dropped IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
        -- Objects without a schema of their own (a temporary view's rule, a trigger) report
        -- is_temporary false; their address starts with the session's temporary schema.
        CONTINUE WHEN dropped.is_temporary
                  OR (dropped.schema_name IS NULL AND dropped.address_names[1] = 'pg_temp');
        IF pgrail_backstop.is_runner() THEN
            RETURN;
        END IF;
        PERFORM pgrail_backstop.refuse(tg_tag, dropped.object_identity);
    END LOOP;
END
$f$;

-- Before a table is rewritten (ALTER TABLE ... TYPE): refused at once rather than after the copy.
CREATE OR REPLACE FUNCTION pgrail_backstop.on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF pgrail_backstop.is_temporary_relation(pg_event_trigger_table_rewrite_oid())
       OR pgrail_backstop.is_runner() THEN
        RETURN;
    END IF;
    PERFORM pgrail_backstop.refuse(tg_tag, pg_event_trigger_table_rewrite_oid()::regclass::text);
END
$f$;

-- pgrail's ledger (schema pgrail) is written by the runner alone: a forged row would make pgrail
-- believe a migration ran.
CREATE OR REPLACE FUNCTION pgrail_backstop.guard_ledger() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF NOT pgrail_backstop.is_runner() THEN
        PERFORM pgrail_backstop.refuse(tg_op, format('%I.%I', tg_table_schema, tg_table_name));
    END IF;
    RETURN NULL;
END
$f$;
)SQL";

// event -> the trigger's function (the trigger is backstop_trigger_prefix + event).
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> triggers = {{
    {"ddl_command_start", "on_ddl_command_start"},
    {"ddl_command_end", "on_ddl_command_end"},
    {"sql_drop", "on_sql_drop"},
    {"table_rewrite", "on_table_rewrite"},
}};

constexpr std::array<std::string_view, 4> ledger_tables = {"pgrail.schema_fingerprints", "pgrail.schema_migrations",
                                                            "pgrail.migration_events",
                                                            "pgrail.migration_proposals"};

std::string hex(const unsigned char* bytes, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < size; ++i) {
        out.push_back(digits[bytes[i] >> 4]);
        out.push_back(digits[bytes[i] & 0xf]);
    }
    return out;
}

// The key file's key, or a new one written there (O_EXCL, mode 0600) when it does not exist.
std::pair<std::string, bool> load_or_create_key(const std::filesystem::path& key_file) {
    std::error_code ec;
    if (std::filesystem::exists(key_file, ec)) return {read_backstop_key(key_file), false};
    std::array<unsigned char, 32> random{};
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1)
        throw MigrationError(sqlstate::system_error, "cannot generate the backstop's key: OpenSSL's RAND_bytes failed");
    const std::string key = hex(random.data(), random.size());
    const int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        throw MigrationError(sqlstate::io_error,
                             fmt::format("cannot create the key file {}: {}", key_file.string(), std::strerror(errno)));
    const std::string line = key + "\n";
    const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    if (!written) {
        std::filesystem::remove(key_file, ec);
        throw MigrationError(sqlstate::io_error,
                             fmt::format("cannot write the key file {}: {}", key_file.string(), std::strerror(saved)));
    }
    return {key, true};
}

}  // namespace

namespace detail {

std::string ledger_guard_sql(std::string_view table) {
    return fmt::format("CREATE OR REPLACE TRIGGER pgrail_backstop_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       "ON {} FOR EACH STATEMENT EXECUTE FUNCTION pgrail_backstop.guard_ledger()",
                       table);
}

namespace {

// The key travels as a bound parameter. An error while it is bound (a read-only default, a
// statement_timeout, a lock) would quote it back ("unnamed portal with parameters: $1 = '...'")
// wherever the session's log_parameter_max_length_on_error allows, and any role's or database's
// defaults may set that: it is set to 0 first, and a failure is told by its first line alone,
// never its DETAIL or CONTEXT.
bool send_key(pqxx::transaction_base& tx, const std::string& key) {
    try {
        tx.exec0("SET log_parameter_max_length_on_error = 0");
        return tx.exec_params1("SELECT pgrail_backstop.authorize($1)", key)[0].as<bool>();
    } catch (const pqxx::sql_error& error) {
        const auto state = sqlstate_of(error);
        throw MigrationError(state.empty() ? std::string(sqlstate::internal_error) : state,
                             "pgrail's backstop could not authorize the migration runner: " +
                                 split_pq_message(error.what()).first);
    }
}

}  // namespace

void authorize_runner(pqxx::transaction_base& tx, const std::string& key_file) {
    const std::string key = read_backstop_key(key_file);
    if (send_key(tx, key)) return;
    throw MigrationError(sqlstate::insufficient_privilege, "pgrail's backstop refused the migration runner's key",
                         fmt::format("this database's backstop (schema pgrail_backstop) was installed with another "
                                     "key than the one in {}",
                                     key_file),
                         "configure the key file that `pgrail backstop install --key-file` wrote for this database, "
                         "or run that install again with this file (its key then replaces the installed one)");
}

BackstopStatus read_backstop_status(pqxx::connection& conn, const std::optional<std::string>& key) {
    BackstopStatus status;
    try {
        pqxx::work tx(conn);
        status.installed = tx.exec1("SELECT to_regnamespace('pgrail_backstop') IS NOT NULL")[0].as<bool>();
        for (const auto& row : tx.exec("SELECT evtname, evtevent, evtenabled FROM pg_event_trigger "
                                       "WHERE evtname LIKE 'pgrail\\_backstop\\_%' ORDER BY evtname")) {
            const auto enabled = row[2].as<std::string>();
            status.triggers.push_back(
                {row[0].as<std::string>(), row[1].as<std::string>(), enabled.empty() ? 'D' : enabled[0]});
        }
        if (status.installed) {
            const auto row = tx.exec1("SELECT pgrail_backstop.version(), pgrail_backstop.allows_temp()");
            status.installed_version = row[0].as<std::string>();
            status.allows_temporary = row[1].as<bool>();
            // authorize() records this backend; the rollback takes that back.
            if (key) status.key_matches = send_key(tx, *key);
        }
        tx.abort();
    } catch (const std::exception& error) {
        status.error = error.what();
        while (!status.error.empty() && (status.error.back() == '\n' || status.error.back() == ' '))
            status.error.pop_back();
    }
    return status;
}

}  // namespace detail

const std::vector<std::string>& backstop_events() {
    static const std::vector<std::string> events = [] {
        std::vector<std::string> out;
        for (const auto& [event, function] : triggers) out.emplace_back(event);
        return out;
    }();
    return events;
}

std::optional<std::string> parse_backstop_key(std::string_view text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
    if (text.size() != 64) return std::nullopt;
    std::string key;
    for (const char c : text) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
        key.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return key;
}

std::string read_backstop_key(const std::filesystem::path& key_file) {
    std::error_code ec;
    if (!std::filesystem::exists(key_file, ec))
        throw MigrationError(sqlstate::undefined_file,
                             fmt::format("the backstop's key file {} does not exist", key_file.string()), "",
                             "`pgrail backstop install --key-file FILE` writes it");
    std::ifstream in(key_file, std::ios::binary);
    // A key file is 65 bytes; anything much longer is not one.
    std::array<char, 257> buffer{};
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    if (in.bad() || (!in && !in.eof()))
        throw MigrationError(sqlstate::io_error,
                             fmt::format("cannot read the backstop's key file {}", key_file.string()));
    const auto key = parse_backstop_key(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
    if (!key)
        throw MigrationError(sqlstate::invalid_parameter_value,
                             fmt::format("{} is not a backstop key file: expected 64 hex digits", key_file.string()));
    return *key;
}

BackstopInstallResult install_backstop(const BackstopInstallOptions& options) {
    if (options.key_file.empty())
        throw MigrationError(sqlstate::invalid_parameter_value, "install needs a key file (--key-file)");
    BackstopInstallResult result;
    auto conn = detail::connect(options.conninfo);
    try {
        pqxx::work tx(*conn);
        const auto who = tx.exec1("SELECT current_user::text, current_database()::text, "
                                  "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                                  "(SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'pgrail_backstop')");
        result.owner = who[0].as<std::string>();
        result.database = who[1].as<std::string>();
        if (!who[2].as<bool>())
            throw MigrationError(
                sqlstate::insufficient_privilege,
                fmt::format("pgrail backstop install needs a superuser, and {} is not one", result.owner),
                "event triggers can only be created by a superuser",
                "give --dsn a superuser's connection string (it is used for the install only)");
        result.reinstalled = !who[3].is_null();
        if (result.reinstalled && who[3].as<std::string>() != result.owner)
            throw MigrationError(sqlstate::duplicate_schema,
                                 fmt::format("schema pgrail_backstop exists and belongs to {}, not to {}",
                                             who[3].as<std::string>(), result.owner),
                                 "the backstop's schema must be the installing superuser's own: a schema made by "
                                 "someone else could hold functions the backstop would then trust",
                                 fmt::format("install as {}, or drop that schema after checking what it holds",
                                             who[3].as<std::string>()));
        // Our own event triggers would refuse this very install: they go first, and come back last.
        for (const auto& [event, function] : triggers)
            tx.exec0(fmt::format("DROP EVENT TRIGGER IF EXISTS {}{}", backstop_trigger_prefix, event));
        if (!result.reinstalled) tx.exec0("CREATE SCHEMA pgrail_backstop");
        tx.exec0("REVOKE ALL ON SCHEMA pgrail_backstop FROM PUBLIC");
        tx.exec0("GRANT USAGE ON SCHEMA pgrail_backstop TO PUBLIC");
        tx.exec0(fmt::format("CREATE OR REPLACE FUNCTION pgrail_backstop.version() RETURNS text LANGUAGE sql IMMUTABLE "
                             "SET search_path = pg_catalog, pg_temp AS $f$SELECT {}::text$f$",
                             sql::quote_literal(PGRAIL_VERSION)));
        tx.exec0(fmt::format("CREATE OR REPLACE FUNCTION pgrail_backstop.allows_temp() RETURNS boolean LANGUAGE sql "
                             "IMMUTABLE SET search_path = pg_catalog, pg_temp AS $f$SELECT {}$f$",
                             options.allow_temporary ? "true" : "false"));
        tx.exec(std::string(backstop_sql));
        tx.exec0("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgrail_backstop FROM PUBLIC");
        // Default privileges (ALTER DEFAULT PRIVILEGES) may have granted a role more, e.g. INSERT
        // on runner_sessions: nobody but the owner keeps anything.
        for (const auto& row : tx.exec(R"(
                SELECT format('REVOKE ALL ON TABLE %s FROM %I', c.oid::regclass, pg_get_userbyid(a.grantee))
                FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
                WHERE c.relnamespace = 'pgrail_backstop'::regnamespace AND a.grantee NOT IN (0, c.relowner)
                UNION
                SELECT format('REVOKE ALL ON FUNCTION %s FROM %I', p.oid::regprocedure, pg_get_userbyid(a.grantee))
                FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
                WHERE p.pronamespace = 'pgrail_backstop'::regnamespace AND a.grantee NOT IN (0, p.proowner))"))
            tx.exec0(row[0].as<std::string>());
        // authorize for the runner; version and allows_temp for status; guard_ledger because
        // CREATE TRIGGER needs EXECUTE (a trigger function cannot be called any other way).
        tx.exec0("GRANT EXECUTE ON FUNCTION pgrail_backstop.authorize(text), pgrail_backstop.version(), "
                 "pgrail_backstop.allows_temp(), pgrail_backstop.guard_ledger() TO PUBLIC");

        // Only the key's hash is stored; the key itself never reaches the database here.
        const auto [key, created] = load_or_create_key(options.key_file);
        result.key_created = created;
        tx.exec0("DELETE FROM pgrail_backstop.runner_key");
        tx.exec_params0("INSERT INTO pgrail_backstop.runner_key (key_sha256) VALUES (decode($1, 'hex'))",
                        sha256_hex(key));

        for (const auto table : ledger_tables) {
            if (tx.exec_params1("SELECT to_regclass($1) IS NULL", std::string(table))[0].as<bool>()) continue;
            tx.exec0(detail::ledger_guard_sql(table));
            result.ledger_guarded = true;
        }
        for (const auto& [event, function] : triggers)
            tx.exec0(fmt::format("CREATE EVENT TRIGGER {}{} ON {} EXECUTE FUNCTION pgrail_backstop.{}()",
                                 backstop_trigger_prefix, event, event, function));
        tx.commit();
    } catch (...) {
        detail::rethrow_database_error("cannot install pgrail's backstop");
    }
    return result;
}

bool uninstall_backstop(const std::string& conninfo) {
    auto conn = detail::connect(conninfo);
    try {
        pqxx::work tx(*conn);
        bool found = false;
        // Every pgrail_backstop_* event trigger, also one an older or newer pgrail made.
        for (const auto& row : tx.exec("SELECT quote_ident(evtname) FROM pg_event_trigger "
                                       "WHERE evtname LIKE 'pgrail\\_backstop\\_%'")) {
            tx.exec0("DROP EVENT TRIGGER " + row[0].as<std::string>());
            found = true;
        }
        if (tx.exec1("SELECT to_regnamespace('pgrail_backstop') IS NOT NULL")[0].as<bool>()) {
            // Triggers calling into the schema (the ledger's guard) go with it.
            for (const auto& row : tx.exec("SELECT quote_ident(t.tgname), t.tgrelid::regclass::text FROM pg_trigger t "
                                           "JOIN pg_proc p ON p.oid = t.tgfoid "
                                           "WHERE p.pronamespace = 'pgrail_backstop'::regnamespace"))
                tx.exec0(fmt::format("DROP TRIGGER {} ON {}", row[0].as<std::string>(), row[1].as<std::string>()));
            tx.exec0("DROP SCHEMA pgrail_backstop CASCADE");
            found = true;
        }
        tx.commit();
        return found;
    } catch (...) {
        detail::rethrow_database_error("cannot uninstall pgrail's backstop");
    }
}

BackstopStatus read_backstop_status(const std::string& conninfo, const std::optional<std::string>& key) {
    try {
        auto conn = detail::connect(conninfo);
        return detail::read_backstop_status(*conn, key);
    } catch (const std::exception& error) {
        BackstopStatus status;
        status.error = error.what();
        return status;
    }
}

bool BackstopStatus::version_matches() const { return installed && installed_version == PGRAIL_VERSION; }

std::vector<std::string> BackstopStatus::problems() const {
    std::vector<std::string> out;
    if (!error.empty()) {
        out.push_back("cannot read it: " + error);
        return out;
    }
    if (!installed) {
        out.emplace_back("not installed: DDL that gets past pgrail reaches the database (`pgrail backstop install`)");
        return out;
    }
    if (!version_matches())
        out.push_back(fmt::format("installed by pgrail {}, this is pgrail {}: run `pgrail backstop install` again",
                                  installed_version, PGRAIL_VERSION));
    for (const auto& event : backstop_events()) {
        const auto name = fmt::format("{}{}", backstop_trigger_prefix, event);
        const auto found = std::find_if(triggers.begin(), triggers.end(),
                                        [&](const BackstopTrigger& trigger) { return trigger.name == name; });
        if (found == triggers.end()) out.push_back(fmt::format("event trigger {} is missing", name));
        else if (found->enabled != 'O' && found->enabled != 'A')
            out.push_back(fmt::format("event trigger {} is {}", name,
                                      found->enabled == 'D' ? "disabled" : "enabled for replica sessions only"));
    }
    if (key_matches && !*key_matches) out.emplace_back("the key file does not match the installed key");
    return out;
}

bool BackstopStatus::healthy() const { return problems().empty(); }

std::string BackstopStatus::summary() const {
    const auto wrong = problems();
    if (wrong.empty())
        return fmt::format("installed by pgrail {} (this version), {} event triggers enabled, temporary objects {}{}",
                           installed_version, triggers.size(), allows_temporary ? "allowed" : "refused",
                           key_matches ? ", key matches" : "");
    std::string out = installed ? "NOT PROTECTING AS IT SHOULD: " : "";
    for (std::size_t i = 0; i < wrong.size(); ++i) out += (i ? "; " : "") + wrong[i];
    return out;
}

std::string without_backstop(const std::string& dump) {
    // pg_dump writes each object as an entry headed "--\n-- Name: ...; Type: ..." at a line's
    // start. With the schema excluded, what still names it calls into it: the event triggers and
    // the ledger's guard triggers.
    constexpr std::string_view header = "--\n-- Name: ";
    const std::string_view text = dump;
    const auto next_header = [&](std::size_t from) {
        for (auto at = text.find(header, from); at != std::string_view::npos; at = text.find(header, at + 1))
            if (at == 0 || text[at - 1] == '\n') return at;
        return text.size();
    };
    std::string out;
    out.reserve(dump.size());
    for (std::size_t start = 0; start < text.size();) {
        const auto end = next_header(start + 1);
        const auto entry = text.substr(start, end - start);
        const bool calls_backstop =
            entry.starts_with(header) && (entry.find("\"pgrail_backstop\".") != std::string_view::npos ||
                                          entry.find("pgrail_backstop.") != std::string_view::npos);
        if (!calls_backstop) out.append(entry);
        start = end;
    }
    return out;
}

std::string backstop_refusal_hint(std::string_view sqlstate, std::string_view message) {
    if (sqlstate != sqlstate::insufficient_privilege ||
        message.find(backstop_refusal_message) == std::string_view::npos)
        return {};
    return "This database has pgrail's backstop, and it did not recognise this runner: configure the key file that "
           "`pgrail backstop install --key-file FILE` wrote (migrations.backstop_key_file in pgrail's configuration, "
           "--backstop-key-file or $PGRAIL_BACKSTOP_KEY_FILE for `pgrail migrate`).";
}

}  // namespace pgrail::migrations
