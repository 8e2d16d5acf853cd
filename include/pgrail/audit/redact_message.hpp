// Messages written to the audit log that quote what a script or a server saw (a migration's
// failure, a proposal that does not parse, a verification's result) carry values: an input
// that did not parse, a failing row, a constant near a syntax error. The audit keeps the
// message's shape and none of its quoted text.
#pragma once

#include <string>
#include <string_view>

namespace pgrail::audit {

// The first line of `message` (PostgreSQL's DETAIL, HINT and CONTEXT lines repeat values: a
// failing row, a key), with what stands between a quote ("..." or '...') and the line's last
// quote of that kind replaced by `?` (a quoted value may itself hold that quote). A quote left
// open hides the rest of the line.
[[nodiscard]] std::string redact_message(std::string_view message);

}  // namespace pgrail::audit
