// libpg_query's parse of a text, read from its C node tree into a JsonTree shaped exactly as its
// JSON output would be, without writing and re-reading that JSON (which cost half of the analysis
// of a new text: libpg_query formats the JSON field by field with printf).
#pragma once

#include "json_tree.hpp"
#include "pg_query_handle.hpp"

#include <optional>
#include <string>

namespace pgrail::sql::detail {

// One text parsed into `tree`. The tree is read from the C nodes when every node in it is of a
// type parse_tree_reader knows (generated from PostgreSQL 15's headers), else from libpg_query's
// JSON: both give the same tree (parse_tree_reader_test compares them over the corpora).
class ParsedText {
public:
    ParsedText(const char* text, JsonTree& tree);

    [[nodiscard]] bool ok() const { return ok_; }  // the text parsed, and the tree holds it
    // A syntax error: libpg_query's message and 1-based cursor (0 when none).
    [[nodiscard]] const std::optional<std::string>& error() const { return error_; }
    [[nodiscard]] int error_cursor() const { return error_cursor_; }

private:
    void take_error(const PgQueryError& error);

    std::optional<ParseHandle> json_;  // the fallback's JSON text, which the tree views
    std::optional<std::string> error_;
    int error_cursor_ = 0;
    bool ok_ = false;
};

// The tree of `text` read from libpg_query's C nodes only: false when the text does not parse or
// holds a node type the reader does not know (for tests).
bool read_parse_tree(const char* text, JsonTree& tree);

}  // namespace pgrail::sql::detail
