// What a migration did in verify's scratch copy: tables rewritten, locks taken, time per script.
#include "verify_measure.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "pgrail/migrations/backstop.hpp"
#include "pgrail/sql/quote.hpp"

namespace pgrail::migrations {

namespace detail {

namespace {

// The application's relations: pgrail's ledger and backstop, catalogs and TOAST are not.
std::string application_schemas_condition() {
    return fmt::format("n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgrail', {}) "
                       "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'",
                       sql::quote_literal(backstop_schema));
}

// pg_locks' modes from the weakest to the strongest (PostgreSQL's lock conflict table).
constexpr std::array<std::string_view, 8> lock_modes = {
    "AccessShareLock", "RowShareLock",          "RowExclusiveLock", "ShareUpdateExclusiveLock",
    "ShareLock",       "ShareRowExclusiveLock", "ExclusiveLock",    "AccessExclusiveLock"};

std::size_t lock_strength(std::string_view mode) {
    const auto it = std::find(lock_modes.begin(), lock_modes.end(), mode);
    return it == lock_modes.end() ? 0 : static_cast<std::size_t>(it - lock_modes.begin());
}

// "ShareRowExclusiveLock" -> "SHARE ROW EXCLUSIVE", as LOCK TABLE and the documentation spell it.
std::string sql_lock_mode(std::string_view mode) {
    if (mode.ends_with("Lock")) mode.remove_suffix(4);
    std::string out;
    for (const char c : mode) {
        if (c >= 'A' && c <= 'Z' && !out.empty()) out.push_back(' ');
        out.push_back(static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
    }
    return out;
}

}  // namespace

TableFiles table_files(pqxx::connection& conn) {
    TableFiles out;
    pqxx::nontransaction tx(conn);
    // (Here and below pg_catalog is spelled out: the scripts measured ran in this session, and a
    // temporary table of theirs named pg_class or pg_locks comes first in an unqualified name.)
    const auto rows = tx.exec(
        "SELECT c.oid::bigint, CASE WHEN n.nspname = 'public' THEN c.relname::pg_catalog.text "
        "ELSE n.nspname || '.' || c.relname END, pg_catalog.pg_relation_filenode(c.oid)::bigint "
        "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'm') AND " +
        application_schemas_condition());
    for (const auto& row : rows)
        out[row[0].as<std::int64_t>()] = {row[1].as<std::string>(), row[2].is_null() ? 0 : row[2].as<std::int64_t>()};
    return out;
}

std::vector<std::string> rewritten(const TableFiles& before, const TableFiles& after) {
    std::vector<std::string> out;
    for (const auto& [oid, file] : before) {
        const auto it = after.find(oid);
        if (it != after.end() && it->second.relfilenode != file.relfilenode) out.push_back(it->second.name);
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<TableLock> held_locks(pqxx::transaction_base& tx, const TableFiles& existing) {
    const auto rows = tx.exec(
        "SELECT relation::bigint, mode FROM pg_catalog.pg_locks WHERE pid = pg_catalog.pg_backend_pid() "
        "AND locktype = 'relation' AND granted AND database = (SELECT oid FROM pg_catalog.pg_database "
        "WHERE datname = pg_catalog.current_database())");
    std::map<std::string, std::string> strongest;
    for (const auto& row : rows) {
        const auto it = existing.find(row[0].as<std::int64_t>());
        if (it == existing.end()) continue;
        const auto mode = row[1].as<std::string>();
        auto& held = strongest[it->second.name];
        if (held.empty() || lock_strength(mode) > lock_strength(held)) held = mode;
    }
    std::vector<TableLock> out;
    for (const auto& [table, mode] : strongest) out.push_back({table, sql_lock_mode(mode)});
    return out;
}

}  // namespace detail

namespace {

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
    return out;
}

nlohmann::json ms_or_null(std::int64_t ms) { return ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(ms); }

}  // namespace

std::string rewrites_text(const VerifyResult& result) {
    const auto& m = result.measurement;
    if (m.up_ms < 0) return "not measured: up did not finish";
    std::string out = m.rewrites.empty() ? "no table rewritten" : "rewrites " + joined(m.rewrites);
    if (!m.down_rewrites.empty()) out += "; down rewrites " + joined(m.down_rewrites);
    return out;
}

std::string locks_text(const VerifyResult& result) {
    const auto& m = result.measurement;
    if (!m.locks_measured)
        return m.up_ms < 0 ? "not measured: up did not finish" : "not measured: no-transaction script";
    if (m.locks.empty()) return "none on existing tables";
    std::string out;
    for (const auto& lock : m.locks) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", lock.table, lock.mode);
    return out;
}

std::string sample_text(const VerifySample& sample) {
    if (sample.rows_per_table <= 0) return "schema only";
    std::string out = fmt::format("{} row{} in {} table{} (at most {} per table)", sample.rows,
                                  sample.rows == 1 ? "" : "s", sample.tables, sample.tables == 1 ? "" : "s",
                                  sample.rows_per_table);
    for (const auto& note : sample.notes) out += "; " + note;
    return out;
}

std::string measurement_text(const VerifyResult& result) {
    const auto& m = result.measurement;
    if (m.up_ms < 0) return "up did not finish: nothing measured; sample: " + sample_text(result.sample);
    std::string times;
    for (const auto& [label, ms] : {std::pair<const char*, std::int64_t>{"up", m.up_ms}, {"down", m.down_ms},
                                    {"up again", m.reup_ms}})
        if (ms >= 0) times += fmt::format("{}{} {} ms", times.empty() ? "" : ", ", label, ms);
    return fmt::format("{}; locks: {}; {}; sample: {}", rewrites_text(result), locks_text(result), times,
                       sample_text(result.sample));
}

nlohmann::json measurement_json(const VerifyResult& result) {
    const auto& m = result.measurement;
    nlohmann::json locks = nullptr;
    if (m.locks_measured) {
        locks = nlohmann::json::object();
        for (const auto& lock : m.locks) locks[lock.table] = lock.mode;
    }
    return {{"rewrites", m.up_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(m.rewrites)},
            {"down_rewrites", m.down_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(m.down_rewrites)},
            {"locks", locks},
            {"up_ms", ms_or_null(m.up_ms)},
            {"down_ms", ms_or_null(m.down_ms)},
            {"reup_ms", ms_or_null(m.reup_ms)},
            {"sample",
             {{"rows_per_table", result.sample.rows_per_table},
              {"rows", result.sample.rows},
              {"tables", result.sample.tables},
              {"notes", result.sample.notes}}}};
}

}  // namespace pgrail::migrations
