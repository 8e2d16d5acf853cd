// The live sessions' records for pgrail.sessions(): written by each session, snapshotted by any thread.
#include "session_directory.hpp"

#include <algorithm>

#include <time.h>

#include "pgrail/sql/normalize.hpp"

namespace pgrail::proxy {

namespace {

// The wall clock at the kernel's tick (a few ms): read at every change of state, twice a
// transaction, where a precise clock read cost about 0.2 us on a virtual machine.
std::int64_t now_ns() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

}  // namespace

const char* to_string(SessionState state) {
    switch (state) {
        case SessionState::starting: return "starting";
        case SessionState::idle: return "idle";
        case SessionState::active: return "active";
        case SessionState::idle_in_transaction: return "idle in transaction";
        case SessionState::idle_in_transaction_aborted: return "idle in transaction (aborted)";
    }
    return "?";
}

SessionDirectory::Entry::Entry(const SessionContext& context)
    : context_(context),
      started_at_(std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(now_ns())))),
      state_since_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(started_at_.time_since_epoch()).count()) {}

void SessionDirectory::Entry::set_state(SessionState state) {
    if (state_.exchange(state, std::memory_order_relaxed) != state)
        state_since_ns_.store(now_ns(), std::memory_order_relaxed);
}

void SessionDirectory::Entry::on_statement(std::string_view sql, sql::Lexing lexing) {
    const auto kept = sql.substr(0, max_statement_bytes);
    const bool cut = sql.size() > max_statement_bytes;
    // (Only the session's thread writes these, so it reads them without the lock; a client that
    // sends one text again and again, prepared or not, takes no lock.)
    if (kept != statement_ || cut != statement_cut_ || lexing != lexing_) {
        std::lock_guard lock(statement_mutex_);
        statement_cut_ = cut;
        statement_.assign(kept);
        lexing_ = lexing;
    }
    set_state(SessionState::active);
}

void SessionDirectory::Entry::on_ready(char transaction_status) {
    set_state(transaction_status == 'T'   ? SessionState::idle_in_transaction
              : transaction_status == 'E' ? SessionState::idle_in_transaction_aborted
                                          : SessionState::idle);
}

SessionRow SessionDirectory::Entry::row() const {
    SessionRow row;
    row.session_id = context_.session_id;
    row.client_address = context_.client_address;
    row.user = context_.user;
    row.identity = context_.identity.empty() ? context_.user : context_.identity;
    row.database = context_.database;
    row.application_name = context_.application_name;
    row.state = state_.load(std::memory_order_relaxed);
    row.bytes_from_client = bytes_from_client_.load(std::memory_order_relaxed);
    row.bytes_from_server = bytes_from_server_.load(std::memory_order_relaxed);
    row.started_at = started_at_;
    row.state_since = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::nanoseconds(state_since_ns_.load(std::memory_order_relaxed))));
    std::string text;
    bool cut = false;
    sql::Lexing lexing;
    {
        std::lock_guard lock(statement_mutex_);
        text = statement_;
        cut = statement_cut_;
        lexing = lexing_;
    }
    // Never the text itself: only its normalised form, as the audit log names statements (an
    // empty one, for a text that does not scan, shows nothing of it).
    if (!text.empty()) {
        row.statement_fingerprint = sql::normalize(text, lexing);
        if (cut && !row.statement_fingerprint.empty()) row.statement_fingerprint += " ...";
    }
    return row;
}

SessionDirectory::SessionDirectory() : registry_(std::make_shared<Registry>()) {}

std::shared_ptr<SessionDirectory::Entry> SessionDirectory::add(const SessionContext& context) {
    const auto id = context.session_id;
    std::shared_ptr<Entry> entry(new Entry(context), [weak = std::weak_ptr<Registry>(registry_), id](Entry* gone) {
        if (const auto registry = weak.lock()) {
            std::lock_guard lock(registry->mutex);
            registry->entries.erase(id);
        }
        delete gone;
    });
    std::lock_guard lock(registry_->mutex);
    registry_->entries[id] = entry;
    return entry;
}

std::vector<SessionRow> SessionDirectory::rows() const {
    std::vector<std::shared_ptr<Entry>> live;
    {
        std::lock_guard lock(registry_->mutex);
        live.reserve(registry_->entries.size());
        for (const auto& [id, weak] : registry_->entries)
            if (auto entry = weak.lock()) live.push_back(std::move(entry));
    }
    // Rows are built outside the directory's lock: normalising may take a while.
    std::vector<SessionRow> out;
    out.reserve(live.size());
    for (const auto& entry : live) out.push_back(entry->row());
    live.clear();  // (a session that ended meanwhile unregisters here, under no lock of ours)
    std::sort(out.begin(), out.end(), [](const SessionRow& a, const SessionRow& b) { return a.session_id < b.session_id; });
    return out;
}

std::size_t SessionDirectory::size() const {
    std::lock_guard lock(registry_->mutex);
    return registry_->entries.size();
}

}  // namespace pgrail::proxy
