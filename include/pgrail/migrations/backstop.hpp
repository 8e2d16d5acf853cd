// The database's own backstop: event triggers that refuse schema changes from any backend that
// is not pgrail's migration runner (docs/security.md). Install, status and uninstall, the
// runner's key, and what a schema dump must leave out of a scratch copy.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgrail::migrations {

// The schema that holds the backstop (its tables and functions).
inline constexpr std::string_view backstop_schema = "pgrail_backstop";
// The primary message of every refusal by the backstop (SQLSTATE 42501).
inline constexpr std::string_view backstop_refusal_message =
    "pgrail backstop: schema changes go through pgrail's migrations";
// Its event triggers, each on the event its name ends with.
inline constexpr std::string_view backstop_trigger_prefix = "pgrail_backstop_";

struct BackstopInstallOptions {
    std::string conninfo;             // a superuser's, used once
    std::filesystem::path key_file;   // reused when it exists, else created (mode 0600)
    bool allow_temporary = true;      // --no-temp: temporary tables, views, sequences refused too
};

struct BackstopInstallResult {
    std::string database;
    std::string owner;            // the installing superuser, owner of schema pgrail_backstop
    bool key_created = false;     // false: the key file existed and its key was kept
    bool reinstalled = false;     // the schema was there before (an upgrade or a repeat)
    bool ledger_guarded = false;  // pgrail's ledger existed and got its write guard
};

// Creates (or replaces) the backstop in one transaction. Throws MigrationError: not a
// superuser (42501), a schema pgrail_backstop not made by this role (42P06), a bad key file.
BackstopInstallResult install_backstop(const BackstopInstallOptions& options);

// Drops the event triggers, the ledger's write guard and schema pgrail_backstop, in one
// transaction; nothing of the backstop is left. A database without it is left as it is.
// Returns whether there was anything to drop.
bool uninstall_backstop(const std::string& conninfo);

struct BackstopTrigger {
    std::string name;
    std::string event;
    char enabled = 'D';  // pg_event_trigger.evtenabled: O (fires), D (disabled), R, A
};

struct BackstopStatus {
    bool installed = false;
    std::string installed_version;         // pgrail_backstop.version()
    bool allows_temporary = false;         // pgrail_backstop.allows_temp()
    std::vector<BackstopTrigger> triggers; // pgrail_backstop_* event triggers present
    std::optional<bool> key_matches;       // when a key was given to check
    std::string error;                     // the status could not be read: why

    // Installed by this pgrail's version, every event trigger present and firing (the key,
    // when checked, matching).
    [[nodiscard]] bool healthy() const;
    [[nodiscard]] bool version_matches() const;
    // What is wrong, one item each (empty when healthy).
    [[nodiscard]] std::vector<std::string> problems() const;
    // One line for status outputs: "installed by pgrail 0.1.0 (this version), ..." or why not.
    [[nodiscard]] std::string summary() const;
};

// The event triggers a complete backstop has, by event.
[[nodiscard]] const std::vector<std::string>& backstop_events();

// Reads the backstop's state; never throws (a failure is in `error`). With `key`, checks it
// against the stored hash (by authorize() in a transaction that is rolled back).
[[nodiscard]] BackstopStatus read_backstop_status(const std::string& conninfo,
                                                  const std::optional<std::string>& key = std::nullopt);

// The runner's key: 64 lower-case hex digits (32 random bytes) in a file of its own. Throws
// MigrationError (58P01 missing, 22023 malformed, 58030 unreadable) naming the file.
[[nodiscard]] std::string read_backstop_key(const std::filesystem::path& key_file);
// Checks that `text` is a key as install writes it (64 hex digits, surrounding whitespace allowed).
[[nodiscard]] std::optional<std::string> parse_backstop_key(std::string_view text);

// A schema dump (pg_dump --schema-only --exclude-schema=pgrail_backstop) without the entries
// that still call into the backstop (its event triggers, the ledger's guard triggers): what a
// scratch database for verify is loaded with. The scratch copy is pgrail's own and short-lived;
// the backstop there would only stand in the runner's way.
[[nodiscard]] std::string without_backstop(const std::string& dump);

// For the runner's error when the database refused it: the backstop is installed and this
// runner has no key (or the wrong one). Empty unless `message` is the backstop's refusal.
[[nodiscard]] std::string backstop_refusal_hint(std::string_view sqlstate, std::string_view message);

}  // namespace pgrail::migrations
