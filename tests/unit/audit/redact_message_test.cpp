// What the audit keeps of a message that quotes a script's or a server's values.
#include <catch2/catch.hpp>

#include "pgrail/audit/redact_message.hpp"

using pgrail::audit::redact_message;

TEST_CASE("quoted text is replaced, the message's shape kept", "[redact_message]") {
    CHECK(redact_message(R"(invalid input syntax for type integer: "SECRETnum6")") ==
          R"(invalid input syntax for type integer: "?")");
    CHECK(redact_message(R"(pgrail: the proposal's up script does not parse: syntax error at or near "'SECRETtok1'" (line 1))") ==
          R"(pgrail: the proposal's up script does not parse: syntax error at or near "?" (line 1))");
    CHECK(redact_message("new row for relation \"t7\" violates check constraint \"t7_a_check\"\nDETAIL:  Failing row "
                         "contains (0).") == R"(new row for relation "?")");
    // A value holding the quote PostgreSQL put around it (review 9: 'a" SECRETq9 "b').
    CHECK(redact_message(R"(invalid input syntax for type integer: "a" SECRETq9 "b")") ==
          R"(invalid input syntax for type integer: "?")");
    CHECK(redact_message("at (line 1: ALTER TABLE p ADD COLUMN z text DEFAULT 'SECRET''s' CHECK (z <> E'x')): boom") ==
          "at (line 1: ALTER TABLE p ADD COLUMN z text DEFAULT '?')): boom");
    CHECK(redact_message("value \"\"\"quoted\"\" inside\" ok") == "value \"?\" ok");
    CHECK(redact_message("an open quote 'SECRET to the end") == "an open quote '?");
    CHECK(redact_message("no quotes at all") == "no quotes at all");
    CHECK(redact_message("") == "");
}
