// The rules every in-band command run follows, whichever session sends it (inband_commands.hpp).
#include "pgrail/proxy/inband_commands.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "pgrail/protocol/sqlstate.hpp"
#include "pgrail/sql/analyzer.hpp"

namespace pgrail::proxy {

const InbandCall* changing_call(const std::vector<InbandCall>& calls) {
    const auto found = std::find_if(calls.begin(), calls.end(),
                                    [](const InbandCall& call) { return sql::runs_migration(call.command); });
    return found == calls.end() ? nullptr : &*found;
}

const InbandCall* recording_call(const std::vector<InbandCall>& calls) {
    const auto found = std::find_if(calls.begin(), calls.end(),
                                    [](const InbandCall& call) { return sql::leaves_a_record(call.command); });
    return found == calls.end() ? nullptr : &*found;
}

protocol::ErrorMessage failed_transaction_error() {
    return {"ERROR", sqlstate::in_failed_sql_transaction,
            "current transaction is aborted, commands ignored until end of transaction block", {}, {}};
}

InbandAnswers run_calls(InbandCommands& commands, const SessionContext& session, const std::vector<InbandCall>& calls,
                        const AbandonedFlag& abandoned) {
    std::vector<std::size_t> order(calls.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_partition(order.begin(), order.end(),
                          [&calls](std::size_t index) { return !sql::runs_migration(calls[index].command); });
    InbandAnswers answers;
    answers.tables.resize(calls.size());
    for (const std::size_t index : order) {
        // A client that left wants none of the rest (a command already running stops on the flag).
        if (abandoned && abandoned->load()) {
            answers.error = protocol::ErrorMessage{"ERROR", sqlstate::query_canceled,
                                                   "pgrail: the client left; the remaining pgrail commands were not run",
                                                   {}, {}};
            break;
        }
        auto outcome = commands.run(session, calls[index].command, calls[index].arguments, abandoned);
        if (!outcome.ok) {
            answers.error = std::move(outcome.error);
            break;
        }
        answers.tables[index] = std::move(outcome.table);
    }
    return answers;
}

protocol::ErrorMessage outside_transaction_error(const InbandCall& call, bool in_pipeline) {
    const std::string name = fmt::format("pgrail.{}", sql::name_of(call.command));
    return protocol::ErrorMessage{
        "ERROR", sqlstate::active_sql_transaction,
        in_pipeline ? fmt::format("pgrail: {} cannot be executed within a pipeline; send it on its own, outside the "
                                  "pipeline",
                                  name)
                    : fmt::format("pgrail: {} cannot run inside a transaction block; send it on its own after COMMIT "
                                  "or ROLLBACK (a tool that wraps every query in a transaction cannot: ask an "
                                  "operator to run it)",
                                  name),
        "pgrail runs its commands on a connection of its own, never in the session's transaction: a ROLLBACK "
        "would not undo it.",
        fmt::format("Send SELECT * FROM {}(...) outside a transaction block (after COMMIT or ROLLBACK), as a "
                    "statement of its own (in the extended protocol: followed by Sync).",
                    name)};
}

}  // namespace pgrail::proxy
