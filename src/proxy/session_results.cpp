// A session's results under the rule's ResultGuard: masked columns and max_rows.
//
// Part of the session's protocol core (session_protocol.hpp), free of I/O. Nothing here runs for
// a session whose rule has no guard: a result is looked at only while `guarding_` (asked at each
// Query and Execute) or a watched result says so.
//
// Simple protocol: each RowDescription is read whole and gives the result's plan; its DataRows
// are read whole only when the plan masks a column (or once max_rows is reached, to drop them).
// Extended protocol: an Execute's rows come with no RowDescription, so pgrail sends its own
// Describe(Portal) right before the client's Execute and hides the answer (RowDescription or
// NoData) from the client, using it as the plan: it carries the portal's result formats.
//
// Memory: one row at a time. A row pgrail must read whole (masked or dropped) longer than
// max_result_row ends the session (FATAL 54000), as holding it is what a bound forbids.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "pgrail/protocol/frame.hpp"
#include "pgrail/protocol/sqlstate.hpp"
#include "session_protocol.hpp"

namespace pgrail::proxy {

namespace {

constexpr std::size_t max_inspected_end = 64 * 1024;  // an ErrorResponse pgrail reads whole

}  // namespace

void SessionProtocol::refresh_guard() {
    guard_ = gate_->result_guard(context_);
    guarding_ = guard_ && guard_->active();
}

void SessionProtocol::describe_before_execute(std::string_view frame, Outbound& out) {
    // A malformed Execute goes on as it came: the server refuses it, and runs nothing.
    if (const auto portal = execute_portal(frame.substr(protocol::header_size))) {
        std::string describe;
        protocol::encode_describe(describe, 'P', *portal);
        out.inject(std::move(describe));
        DescribeAnswer answer;
        answer.mine = true;
        answer.execute = executes_sent_;
        open_batch().describes.push_back(answer);
    }
    out.forward(frame);
}

void SessionProtocol::on_result_header(char tag) {
    using namespace protocol::backend_tag;
    result_frame_ = ResultFrame::pass;
    // A row of the watched result: counted, then dropped past max_rows or masked.
    const auto row = [this] {
        const auto& limits = result_.guard->max_rows;
        ++result_.rows;
        if (limits.limit > 0 && result_.rows > limits.limit) {
            ++result_.dropped;
            result_frame_ = ResultFrame::drop;
            // max_rows deny: the server is asked to cancel the statement, once, and only when it
            // is the last thing the session has sent (a later statement must not be canceled).
            if (limits.action == policy::MaxRowsAction::deny && result_.dropped == 1 && upstream_key_ &&
                batches_.size() == 2 && result_.execute == executes_sent_) {
                result_.cancel_sent = true;
                events_.cancel_statement();
            }
        } else if (result_.plan && result_.plan->masks()) {
            result_frame_ = ResultFrame::mask;
        }
    };
    switch (tag) {
        case row_description:
        case no_data:
            // (on_server_header found the Describe it answers: answering_.)
            if (answering_ && answering_->mine) {
                result_frame_ = tag == row_description ? ResultFrame::hide_plan : ResultFrame::hide;
            } else if (!answering_ && tag == row_description && guarding_) {
                result_frame_ = ResultFrame::plan;  // a simple-protocol result begins
            }
            break;
        case data_row:
            if (result_.guard && !result_.copy) row();
            break;
        case copy_data:
            if (result_.guard && result_.copy) row();
            break;
        case copy_out_response:
            if (guarding_) {
                auto guard = gate_->result_guard(context_);
                if (guard && guard->limits()) {
                    begin_result(std::move(guard), std::nullopt, true);
                } else {
                    result_ = {};
                }
            }
            break;
        case command_complete:
        case portal_suspended:
        case empty_query_response:
        case copy_done:
            if (!result_.guard) break;
            if (result_.copy && tag != copy_done) break;  // COPY's result ends at its CopyDone
            if (result_.dropped > 0) {
                result_frame_ = ResultFrame::end;
            } else {
                result_ = {};
            }
            break;
        case error_response:
            if (!result_.guard) break;
            if (result_.dropped > 0) {
                result_frame_ = result_.cancel_sent ? ResultFrame::error : ResultFrame::end;
            } else {
                result_ = {};
            }
            break;
        default:
            break;
    }
}

void SessionProtocol::flush_rows(Outbound& out) {
    if (row_batch_.empty()) return;
    out.inject(std::move(row_batch_));
    row_batch_ = std::string();  // holds nothing between results (idle sessions stay small)
}

bool SessionProtocol::result_inspects(std::size_t total_size) {
    switch (result_frame_) {
        case ResultFrame::pass:
            return false;
        case ResultFrame::mask:
        case ResultFrame::drop:
            if (total_size > max_result_row_ && !result_row_too_long_) {
                result_row_too_long_ = true;
                spdlog::error("session {}: a row of {} bytes in a result under rule {} is longer than pgrail holds "
                              "({} bytes): ending the session",
                              context_.session_id, total_size, result_.guard->rule, max_result_row_);
                end(sqlstate::program_limit_exceeded,
                    fmt::format("pgrail: a row of {} bytes in a masked or limited result is longer than pgrail holds "
                                "in memory ({} bytes)",
                                total_size, max_result_row_));
            }
            return true;
        case ResultFrame::end:
        case ResultFrame::error:
            if (total_size <= max_inspected_end) return true;
            // A long ErrorResponse streams through (as any long one): the cut goes unannounced.
            result_frame_ = ResultFrame::pass;
            result_ = {};
            return false;
        default:
            return true;
    }
}

void SessionProtocol::begin_result(std::shared_ptr<const ResultGuard> guard, std::optional<ResultPlan> plan,
                                   bool copy) {
    if (!(plan && plan->masks()) && !guard->limits()) {
        result_ = {};  // nothing to do to this one
        return;
    }
    if (plan && !plan->backstop_columns.empty()) {
        // The analysis let through a statement that reads a column the rule refuses: the values
        // are NULL all the same; the log and the audit say that the analysis missed a shape.
        spdlog::warn("session {}: result carries column(s) {} that rule {} refuses: masked as NULL (backstop)",
                     context_.session_id, fmt::join(plan->backstop_columns, ", "), guard->rule);
        ResultEvent event;
        event.kind = ResultEvent::Kind::masked_backstop;
        event.rule = guard->rule;
        event.columns = plan->backstop_columns;
        events_.audit_result(std::move(event));
    }
    result_ = WatchedResult{};
    result_.guard = std::move(guard);
    result_.plan = std::move(plan);
    result_.copy = copy;
    result_.execute = answering_ && answering_->mine ? answering_->execute : executes_sent_;
}

std::optional<ServerStep> SessionProtocol::on_result_frame(std::string_view frame, Outbound& out) {
    switch (result_frame_) {
        case ResultFrame::plan:
        case ResultFrame::hide_plan: {
            // Asked again here: the guard follows reloads and catalog refreshes.
            auto guard = gate_->result_guard(context_);
            const bool hide = result_frame_ == ResultFrame::hide_plan;
            if (!guard || !guard->active()) {
                result_ = {};
                return hide ? std::optional(ServerStep::done) : std::nullopt;
            }
            auto plan = plan_result(frame.substr(protocol::header_size), *guard);
            if (!plan) {
                spdlog::error("session {}: malformed RowDescription from the server", context_.session_id);
                end(sqlstate::protocol_violation,
                    "pgrail: invalid message from the database server: malformed RowDescription");
                return ServerStep::stop;
            }
            begin_result(std::move(guard), std::move(plan), false);
            return hide ? std::optional(ServerStep::done) : std::nullopt;
        }
        case ResultFrame::hide:
            result_ = {};  // pgrail's Describe found no rows to come (a COPY's start its own result)
            return ServerStep::done;
        case ResultFrame::mask: {
            // Into the batch (flush_rows), rewritten or as it came.
            if (row_batch_.capacity() < standard_buffer_size) row_batch_.reserve(standard_buffer_size);
            switch (mask_data_row(frame, *result_.plan, row_batch_)) {
                case RowRewrite::untouched:
                    row_batch_ += frame;
                    return ServerStep::done;
                case RowRewrite::rewritten:
                    return ServerStep::done;
                case RowRewrite::malformed:
                    break;
            }
            flush_rows(out);
            spdlog::error("session {}: malformed DataRow from the server", context_.session_id);
            end(sqlstate::protocol_violation, "pgrail: invalid message from the database server: malformed DataRow");
            return ServerStep::stop;
        }
        case ResultFrame::drop:
            return ServerStep::done;
        case ResultFrame::end:
        case ResultFrame::error:
            // Deny whose cancel won the race: the result ends in the server's cancel error.
            cut_refused_ = result_frame_ == ResultFrame::error &&
                           frame.front() == protocol::backend_tag::error_response &&
                           error_sqlstate(frame.substr(protocol::header_size)) == sqlstate::query_canceled;
            return ServerStep::cut;
        case ResultFrame::pass:
            break;
    }
    return std::nullopt;
}

// The end of a result max_rows cut, once the shell has written its audit line (`audited`). Deny
// whose cancel won the race: the server's cancel error becomes pgrail's refusal; otherwise (no
// cancel sent, or the result ended first) a notice goes before the result's end, whose tag stays
// the server's.
ResultEvent SessionProtocol::cut_event() const {
    ResultEvent event;
    event.kind = cut_refused_ ? ResultEvent::Kind::refused : ResultEvent::Kind::truncated;
    event.rule = result_.guard->rule;
    event.limit = result_.guard->max_rows.limit;
    event.rows_sent = event.limit;
    return event;
}

void SessionProtocol::finish_cut(char tag, std::string_view frame, bool audited, Outbound& out) {
    const auto guard = result_.guard;
    const auto limit = guard->max_rows.limit;
    const auto dropped = result_.dropped;
    result_ = {};
    if (!audited)
        spdlog::error("session {}: the audit line of a result cut by max_rows of rule {} could not be written",
                      context_.session_id, guard->rule);
    spdlog::info("session {}: result {} by max_rows of rule {} after {} rows ({} not sent)", context_.session_id,
                 cut_refused_ ? "refused" : "cut", guard->rule, limit, dropped);
    std::string message;
    if (cut_refused_) {
        protocol::encode_error_response(message, refused_error(guard->rule, limit));
        out.inject(std::move(message));
        return;
    }
    encode_notice(message, truncated_notice(guard->rule, limit, dropped));
    out.inject(std::move(message));
    if (!rewrite_server_frame(tag, frame, out)) out.forward(frame);
}

}  // namespace pgrail::proxy
