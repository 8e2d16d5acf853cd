// Who is connected now: one record per live session, updated by its own thread, read by any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

// The session's state as pg_stat_activity names it.
enum class SessionState : std::uint8_t { starting, idle, active, idle_in_transaction, idle_in_transaction_aborted };
[[nodiscard]] const char* to_string(SessionState state);

// One session's row of pgrail.sessions(), as a snapshot.
struct SessionRow {
    std::uint64_t session_id = 0;
    std::string client_address;
    std::string user;
    std::string identity;  // who logged in (auth.mode pgrail: the identity's name; else user)
    std::string database;
    std::string application_name;
    SessionState state = SessionState::starting;
    // The last statement text's normalised form (sql::normalize: literals as $n); empty when none
    // was sent yet or the text cannot be normalised (then nothing of it is shown).
    std::string statement_fingerprint;
    std::uint64_t bytes_from_client = 0;
    std::uint64_t bytes_from_server = 0;
    std::chrono::system_clock::time_point started_at;
    std::chrono::system_clock::time_point state_since;
};

class SessionDirectory {
public:
    // Texts are kept up to this many bytes for their fingerprint; a longer one is fingerprinted
    // from its start (the cut ends inside a token or a literal at worst: a cut literal does not
    // scan, and then nothing of the text is shown).
    static constexpr std::size_t max_statement_bytes = 4096;

    // A live session's record. Written only by the session's own thread (relaxed atomics, and a
    // small mutex for the statement text), read by snapshots from any thread.
    class Entry {
    public:
        explicit Entry(const SessionContext& context);
        void add_bytes(bool from_client, std::uint64_t n) {
            // One writer (the session's thread): a load and a store, no locked read-modify-write.
            auto& counter = from_client ? bytes_from_client_ : bytes_from_server_;
            counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
        }
        // A Query or Parse the gate decided on: the session is active with this text. Copies at
        // most max_statement_bytes; normalisation waits for a snapshot (the hot path never pays it).
        void on_statement(std::string_view sql, sql::Lexing lexing);
        // ReadyForQuery's transaction status: 'I' idle, 'T' in a transaction, 'E' a failed one.
        void on_ready(char transaction_status);
        [[nodiscard]] SessionRow row() const;

    private:
        void set_state(SessionState state);
        const SessionContext context_;
        const std::chrono::system_clock::time_point started_at_;  // read as state_since_ns_ is
        std::atomic<std::uint64_t> bytes_from_client_{0};
        std::atomic<std::uint64_t> bytes_from_server_{0};
        std::atomic<SessionState> state_{SessionState::starting};
        std::atomic<std::int64_t> state_since_ns_;  // CLOCK_REALTIME_COARSE, since the epoch
        mutable std::mutex statement_mutex_;
        std::string statement_;        // under statement_mutex_: the text's first bytes
        bool statement_cut_ = false;   // under statement_mutex_
        sql::Lexing lexing_;           // under statement_mutex_: how the server lexed it
    };

    SessionDirectory();
    // Registers a session; its record leaves the directory when the last owner lets it go.
    [[nodiscard]] std::shared_ptr<Entry> add(const SessionContext& context);
    // Every live session's row, by session id. Normalises each statement text: call it off the
    // I/O threads (a pgrail.sessions() call runs on the blocking pool).
    [[nodiscard]] std::vector<SessionRow> rows() const;
    [[nodiscard]] std::size_t size() const;

private:
    struct Registry {
        mutable std::mutex mutex;
        std::unordered_map<std::uint64_t, std::weak_ptr<Entry>> entries;
    };
    // Shared with each entry's deleter: an entry outliving the directory unregisters from nothing.
    std::shared_ptr<Registry> registry_;
};

}  // namespace pgrail::proxy
