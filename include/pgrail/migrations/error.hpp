// The error a migration operation ends with, shaped like a PostgreSQL ErrorResponse.
#pragma once

#include <stdexcept>
#include <string>

namespace pgrail::migrations {

// Thrown when an operation (apply, rollback, verify, status) cannot complete. Carries what
// the proxy needs for an ErrorResponse and what the CLI prints.
class MigrationError : public std::runtime_error {
public:
    MigrationError(std::string sqlstate, std::string message, std::string detail = {}, std::string hint = {})
        : std::runtime_error(message),
          sqlstate_(std::move(sqlstate)),
          detail_(std::move(detail)),
          hint_(std::move(hint)) {}

    [[nodiscard]] const std::string& sqlstate() const { return sqlstate_; }
    [[nodiscard]] std::string message() const { return what(); }
    [[nodiscard]] const std::string& detail() const { return detail_; }
    [[nodiscard]] const std::string& hint() const { return hint_; }
    // The message and detail quote the server's answer to a script run over the live data, whose
    // words may hold row values (a failing row, a duplicate key): a client that is not the
    // operator gets them redacted.
    [[nodiscard]] bool quotes_server() const { return quotes_server_; }
    MigrationError& quoting_server() {
        quotes_server_ = true;
        return *this;
    }
    // The message ends in the server's own words from byte `at` on (a script's failure: "... failed
    // at statement 2 of f.up.sql (...): <the server's message>").
    MigrationError& server_words_from(std::size_t at) {
        server_words_at_ = at;
        return *this;
    }
    [[nodiscard]] std::size_t server_words_at() const { return server_words_at_; }
    // What the audit keeps of the message: pgrail's words, without the server's (a RAISE of a
    // row's value, an unquoted number in a built-in message: no redaction can tell a value there).
    [[nodiscard]] std::string own_words() const {
        const std::string text = what();
        if (server_words_at_ >= text.size()) return text;
        return text.substr(0, server_words_at_) + "[the server's message, not kept here: it may quote data]";
    }

private:
    bool quotes_server_ = false;
    std::size_t server_words_at_ = std::string::npos;
    std::string sqlstate_;
    std::string detail_;
    std::string hint_;
};

}  // namespace pgrail::migrations
