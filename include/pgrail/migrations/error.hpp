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

private:
    bool quotes_server_ = false;
    std::string sqlstate_;
    std::string detail_;
    std::string hint_;
};

}  // namespace pgrail::migrations
