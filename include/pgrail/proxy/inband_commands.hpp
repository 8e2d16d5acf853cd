// pgrail's in-band commands (SELECT * FROM pgrail.status() ...), run for a session.
#pragma once

#include <string>
#include <vector>

#include "pgrail/protocol/backend.hpp"
#include "pgrail/proxy/statement_gate.hpp"

namespace pgrail::proxy {

struct InbandOutcome {
    bool ok = false;
    std::string result_sql;        // ok: a query whose result set is the command's answer
    protocol::ErrorMessage error;  // !ok: the error to answer with
};

class InbandCommands {
public:
    virtual ~InbandCommands() = default;
    // Blocking (it talks to the database): the proxy calls it off its I/O threads.
    [[nodiscard]] virtual InbandOutcome run(const SessionContext& session, const std::string& command,
                                            const std::vector<std::string>& arguments) = 0;
};

}  // namespace pgrail::proxy
