// The live sessions' records: states as pg_stat_activity names them, bytes, a fingerprint that
// never shows a literal, rows gone with their session, and writers and readers on many threads.
#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "../../../src/proxy/session_directory.hpp"

using pgrail::proxy::SessionContext;
using pgrail::proxy::SessionDirectory;
using pgrail::proxy::SessionState;

namespace {

SessionContext context(std::uint64_t id, const std::string& user) {
    SessionContext out;
    out.session_id = id;
    out.user = user;
    out.database = "app";
    out.application_name = "psql";
    out.client_address = "127.0.0.1";
    return out;
}

}  // namespace

TEST_CASE("session directory: a session's row follows its state, bytes and statement", "[session_directory]") {
    SessionDirectory directory;
    auto entry = directory.add(context(7, "agent"));
    auto rows = directory.rows();
    REQUIRE(rows.size() == 1);
    CHECK(rows[0].session_id == 7);
    CHECK(rows[0].user == "agent");
    CHECK(rows[0].database == "app");
    CHECK(rows[0].state == SessionState::starting);
    CHECK(rows[0].statement_fingerprint.empty());

    entry->on_ready('I');
    CHECK(directory.rows()[0].state == SessionState::idle);
    entry->on_statement("SELECT * FROM profiles WHERE email = 'secret@example.com' AND id = 42", {});
    entry->add_bytes(true, 100);
    entry->add_bytes(false, 250);
    rows = directory.rows();
    CHECK(rows[0].state == SessionState::active);
    CHECK(rows[0].statement_fingerprint == "SELECT * FROM profiles WHERE email = $1 AND id = $2");
    CHECK(rows[0].bytes_from_client == 100);
    CHECK(rows[0].bytes_from_server == 250);
    CHECK(rows[0].state_since >= rows[0].started_at);
    entry->on_ready('T');
    CHECK(directory.rows()[0].state == SessionState::idle_in_transaction);
    entry->on_ready('E');
    CHECK(directory.rows()[0].state == SessionState::idle_in_transaction_aborted);
    CHECK(std::string(to_string(SessionState::idle_in_transaction_aborted)) == "idle in transaction (aborted)");
}

TEST_CASE("session directory: a text that does not scan shows nothing of itself", "[session_directory]") {
    SessionDirectory directory;
    auto entry = directory.add(context(1, "agent"));
    entry->on_statement("SELECT 'unterminated secret", {});
    CHECK(directory.rows()[0].statement_fingerprint.empty());
    // A long text is fingerprinted from its start; a literal cut in two does not scan.
    std::string text = "SELECT '" + std::string(SessionDirectory::max_statement_bytes, 'x') + "'";
    entry->on_statement(text, {});
    CHECK(directory.rows()[0].statement_fingerprint.empty());
    text = "SELECT 1" + std::string(SessionDirectory::max_statement_bytes, ' ') + ", 'secret'";
    entry->on_statement(text, {});
    const auto fingerprint = directory.rows()[0].statement_fingerprint;
    CHECK(fingerprint.find("secret") == std::string::npos);
    CHECK(fingerprint.ends_with(" ..."));
}

TEST_CASE("session directory: rows by session id, a session's row leaves with it", "[session_directory]") {
    SessionDirectory directory;
    auto second = directory.add(context(2, "b"));
    auto first = directory.add(context(1, "a"));
    auto rows = directory.rows();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].session_id == 1);
    CHECK(rows[1].session_id == 2);
    second.reset();
    CHECK(directory.size() == 1);
    REQUIRE(directory.rows().size() == 1);
    CHECK(directory.rows()[0].user == "a");
}

TEST_CASE("session directory: an entry may outlive its directory", "[session_directory]") {
    std::shared_ptr<SessionDirectory::Entry> entry;
    {
        SessionDirectory directory;
        entry = directory.add(context(3, "c"));
    }
    entry->on_ready('I');
    entry.reset();  // unregisters from nothing
}

TEST_CASE("session directory: sessions write while others read, from many threads", "[session_directory]") {
    SessionDirectory directory;
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (std::uint64_t id = 1; id <= 4; ++id) {
        writers.emplace_back([&, id] {
            for (int round = 0; round < 200; ++round) {
                auto entry = directory.add(context(id * 1000 + static_cast<std::uint64_t>(round), "w"));
                entry->on_statement("SELECT 1", {});
                entry->add_bytes(true, 1);
                entry->on_ready('I');
            }
        });
    }
    std::thread reader([&] {
        while (!stop) {
            for (const auto& row : directory.rows()) CHECK(row.user == "w");
        }
    });
    for (auto& writer : writers) writer.join();
    stop = true;
    reader.join();
    CHECK(directory.size() == 0);
}
