// The session's protocol core over byte strings, without sockets: what the server and the client
// receive for what the other side sent, in every phase (session_protocol.hpp).
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "../../../src/proxy/session_protocol.hpp"
#include "pgrail/protocol/bytes.hpp"

using namespace pgrail;
using namespace pgrail::proxy;

namespace {

const std::string marker = "pgrail_refused_test_";

std::string be32(std::uint32_t value) {
    return {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
            static_cast<char>(value)};
}
std::string be16(std::uint16_t value) { return {static_cast<char>(value >> 8), static_cast<char>(value)}; }
std::string frame(char tag, const std::string& body = {}) {
    return tag + be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}
std::string cstr(std::string_view text) { return std::string(text) + '\0'; }

// Client messages.
std::string query(std::string_view sql) { return frame('Q', cstr(sql)); }
std::string parse(std::string_view name, std::string_view sql) { return frame('P', cstr(name) + cstr(sql) + be16(0)); }
std::string bind(std::string_view statement) { return frame('B', cstr("") + cstr(statement) + be16(0) + be16(0) + be16(0)); }
std::string execute() { return frame('E', cstr("") + be32(0)); }
std::string describe(char kind, std::string_view name) { return frame('D', kind + cstr(name)); }
std::string sync_message() { return frame('S'); }
std::string copy_data(std::string_view row) { return frame('d', std::string(row)); }
std::string copy_done() { return frame('c'); }
std::string terminate() { return frame('X'); }

// Server messages.
std::string ready(char status = 'I') { return frame('Z', std::string(1, status)); }
std::string auth_ok() { return frame('R', be32(0)); }
std::string auth_sasl(const std::vector<std::string>& mechanisms) {
    std::string body = be32(10);
    for (const auto& mechanism : mechanisms) body += cstr(mechanism);
    return frame('R', body + '\0');
}
std::string backend_key(std::int32_t pid, std::int32_t secret) {
    return frame('K', be32(static_cast<std::uint32_t>(pid)) + be32(static_cast<std::uint32_t>(secret)));
}
std::string error(std::string_view severity, std::string_view code, std::string_view message) {
    return frame('E', 'S' + cstr(severity) + 'V' + cstr(severity) + 'C' + cstr(code) + 'M' + cstr(message) + '\0');
}
std::string complete(std::string_view tag) { return frame('C', cstr(tag)); }
std::string parse_complete() { return frame('1'); }
std::string bind_complete() { return frame('2'); }
std::string no_data() { return frame('n'); }
std::string data_row(std::string_view value) {
    return frame('D', be16(1) + be32(static_cast<std::uint32_t>(value.size())) + std::string(value));
}
std::string copy_in_response() { return frame('G', std::string(1, '\0') + be16(0)); }
std::string copy_out_response() { return frame('H', std::string(1, '\0') + be16(0)); }
std::string parameter_description(const std::vector<std::uint32_t>& types) {
    std::string body = be16(static_cast<std::uint16_t>(types.size()));
    for (const auto type : types) body += be32(type);
    return frame('t', body);
}

// The field `code` of the ErrorResponse `bytes` begin with, or "".
std::string error_field_of(const std::string& bytes, char code) {
    const std::size_t at = 0;
    if (bytes.empty() || bytes[at] != 'E') return {};
    const auto length = protocol::read_u32(bytes.data() + at + 1);
    const auto fields = protocol::parse_error_fields(std::string_view(bytes).substr(at + 5, length - 4));
    return fields ? std::string(protocol::error_field(*fields, code)) : std::string();
}

// A session's core with both legs as byte strings. Statements whose text begins with DROP are
// refused by the stand-in gate; the rest are forwarded; SET client_encoding may change the
// encoding, and EXECUTE runs a prepared statement.
class Harness : public SessionEvents {
public:
    Harness() : core_(*this, std::make_shared<ForwardAllGate>(), registry_, marker) { core_.start(); }

    // What the server receives for the client's `bytes` (whole frames).
    std::string client(const std::string& bytes) { return pump(from_client_, bytes, true); }
    // What the client receives for the server's `bytes`.
    std::string server(const std::string& bytes) { return pump(from_server_, bytes, false); }
    // Logs in: the server's usual answers to the startup packet.
    void log_in() {
        REQUIRE(server(auth_ok() + backend_key(4242, 77) + ready()).size() > 0);
        REQUIRE(core_.logged_in());
    }

    SessionProtocol& core() { return core_; }
    CancelRegistry& registry() { return registry_; }
    int logins = 0;
    int cancels = 0;
    bool stopped = false;  // the server's pump would stop after a frame (the session ends)
    std::vector<bool> login_turns;

private:
    bool logged_in() override {
        ++logins;
        return true;
    }
    void server_answered() override {}
    void login_turn(bool server) override { login_turns.push_back(server); }
    void cancel_statement() override { ++cancels; }
    void audit_result(ResultEvent) override {}

    std::string pump(FrameReader& in, const std::string& bytes, bool from_client) {
        REQUIRE(in.buffer.prepare(in.buffer.pending().size() + bytes.size()));
        std::memcpy(in.buffer.write_position(), bytes.data(), bytes.size());
        in.buffer.commit(bytes.size());
        Outbound out;
        while (true) {
            NextFrame next;
            if (from_client) {
                next = next_frame(
                    in, out, 1u << 20, [this](char tag, std::size_t size) { return core_.client_inspects(tag, size); },
                    [this](char tag) { core_.on_client_header(tag); }, [this] { return core_.holding_client(); });
                // As the shell: a held client waits (the rest stays buffered) once the marker is sent.
                if (next.kind == NextFrame::Kind::held) {
                    if (!core_.settle_marker_due()) break;
                    core_.send_settle_marker(out);
                    continue;
                }
            } else {
                next = next_frame(
                    in, out, 1u << 20, [this](char tag, std::size_t size) { return core_.server_inspects(tag, size); },
                    [this, &out](char tag) { core_.on_server_header(tag, out); });
            }
            REQUIRE(next.kind != NextFrame::Kind::invalid);
            if (next.kind == NextFrame::Kind::need_more) break;
            if (from_client) {
                const auto step = core_.on_client_frame(next.header.header.tag, next.frame, out);
                if (step.kind == ClientStep::Kind::check_statement || step.kind == ClientStep::Kind::check_function_call) {
                    GateVerdict verdict;
                    verdict.changes_encoding = step.statement.sql.starts_with("SET client_encoding");
                    verdict.executes_prepared = step.statement.sql.starts_with("EXECUTE");
                    // The migrator route: a statement "ALTER TABLE registered..." is a registered
                    // migration's; "CREATE TEMP TABLE x" makes a temporary relation.
                    std::size_t index = 0;
                    for (std::string_view rest = step.statement.sql; !rest.empty(); ++index) {
                        const auto end = std::min(rest.find("; "), rest.size());
                        if (rest.substr(0, end).starts_with("ALTER TABLE registered"))
                            verdict.migrator_statements.push_back(
                                {index, "7", migrations::Direction::up, std::string(rest.substr(0, end)), "ALTER TABLE"});
                        if (rest.substr(0, end).starts_with("CREATE TEMP TABLE x")) verdict.temporary_relations = {"x"};
                        rest.remove_prefix(std::min(end + 2, rest.size()));
                    }
                    if (step.statement.sql.starts_with("DROP")) {
                        verdict.kind = GateVerdict::Kind::refuse;
                        verdict.error = {"ERROR", "42501", "pgrail: rule agents refused DROP", "no migration", "propose one"};
                    }
                    core_.apply(verdict, step.statement, out);
                }
            } else {
                const auto step = core_.on_server_frame(next.header.header.tag, next.frame, out);
                REQUIRE(step != ServerStep::cut);
                stopped = stopped || step == ServerStep::stop;
            }
            in.consume_frame(next.frame.size());
        }
        core_.flush_rows(out);
        std::string bytes_out;
        for (const auto& piece : out.pieces()) bytes_out.append(static_cast<const char*>(piece.data()), piece.size());
        return bytes_out;
    }

    CancelRegistry registry_;
    SessionProtocol core_;
    FrameReader from_client_{nullptr};
    FrameReader from_server_{nullptr};
};

// What pgrail sends the server to settle a failed COPY's Syncs: a Sync, a Close of a statement
// no one has (the refusal marker's name), a Sync.
std::string settle_marker() { return sync_message() + frame('C', "S" + cstr(marker)) + sync_message(); }

// The stand-in error the server answers a refused statement with (its id is the refusal's).
std::string stand_in_error(int id) {
    return error("ERROR", "22P02", "invalid input syntax for type integer: \"pgrail: no migration; " + marker +
                                       std::to_string(id) + "\"");
}

}  // namespace

TEST_CASE("session core: the login's phases, its turns and the first ReadyForQuery") {
    Harness h;
    CHECK(h.core().phase() == Phase::authenticating);
    CHECK(h.client(frame('p', cstr("secret"))) == frame('p', cstr("secret")));  // passes as it came
    CHECK(h.login_turns == std::vector<bool>{true});
    CHECK(h.server(frame('R', be32(3))) == frame('R', be32(3)));  // cleartext password asked: the client's turn
    CHECK(h.login_turns == std::vector<bool>{true, false});
    CHECK_FALSE(h.core().logged_in());
    h.log_in();
    CHECK(h.logins == 1);
    CHECK(h.core().phase() == Phase::ready);
    CHECK(h.core().at_rest());
}

TEST_CASE("session core: the SASL mechanisms without -PLUS, and untouched when there is none") {
    Harness h;
    const auto rewritten = h.server(auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
    CHECK(rewritten == auth_sasl({"SCRAM-SHA-256"}));
    const auto plain = auth_sasl({"SCRAM-SHA-256"});
    CHECK(h.server(plain) == plain);
}

TEST_CASE("session core: a client that would bind the channel, not offered -PLUS, hears how to log in") {
    const auto initial_response = [](const std::string& client_first) {
        return frame('p', cstr("SCRAM-SHA-256") + be32(static_cast<std::uint32_t>(client_first.size())) + client_first);
    };
    SECTION("-PLUS taken out of the offer, then \"y\": the session ends with pgrail's advice, nothing forwarded") {
        Harness h;
        (void)h.server(auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
        CHECK(h.client(initial_response("y,,n=,r=abcdef")).empty());
        REQUIRE(h.core().ending());
        CHECK(h.core().ending()->sqlstate == "08P01");
        CHECK(h.core().ending()->message.find("channel_binding=disable") != std::string::npos);
    }
    SECTION("\"y\" with an authzid is refused alike; \"p=\", -PLUS itself, or no data at all: forwarded") {
        {
            Harness h;
            (void)h.server(auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
            CHECK(h.client(initial_response("y,a=agent,n=,r=abcdef")).empty());
            CHECK(h.core().ending());
        }
        const std::vector<std::string> forwarded = {
            frame('p', cstr("SCRAM-SHA-256-PLUS") + be32(35) + "p=tls-server-end-point,,n=,r=abcdef"),
            frame('p', cstr("SCRAM-SHA-256-PLUS") + be32(14) + "y,,n=,r=abcdef"),
            frame('p', cstr("SCRAM-SHA-256") + be32(0xffffffffU)),
            frame('p', std::string("SCRAM-SHA-256"))};
        for (const auto& message : forwarded) {
            Harness h;
            (void)h.server(auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
            CHECK(h.client(message) == message);
            CHECK_FALSE(h.core().ending());
        }
    }
    SECTION("\"n\" (no binding), or \"y\" when the server offered no -PLUS (no TLS there): forwarded") {
        for (const char* flag : {"n", "y"}) {
            Harness h;
            const bool plus_offered = std::string(flag) == "n";
            (void)h.server(auth_sasl(plus_offered ? std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}
                                                  : std::vector<std::string>{"SCRAM-SHA-256"}));
            const auto message = initial_response(std::string(flag) + ",,n=,r=abcdef");
            CHECK(h.client(message) == message);
            CHECK_FALSE(h.core().ending());
        }
    }
}

TEST_CASE("session core: backend keys are pgrail's own, and route cancels to the server's") {
    Harness h;
    const auto key_of = [](const std::string& sent) {
        REQUIRE(sent.size() == 13);
        const auto key = protocol::parse_backend_key_data(std::string_view(sent).substr(5));
        REQUIRE(key);
        return *key;
    };
    const auto key = key_of(h.server(backend_key(4242, 77)));
    CHECK_FALSE((key.pid == 4242 && key.secret == 77));  // the client never sees the server's key
    const auto upstream = h.registry().find(key);
    REQUIRE(upstream);
    CHECK(upstream->pid == 4242);
    CHECK(upstream->secret == 77);
    CHECK(h.core().upstream_key()->pid == 4242);
    // A second BackendKeyData replaces the first registration.
    const auto again = key_of(h.server(backend_key(5000, 1)));
    CHECK_FALSE(h.registry().find(key));
    CHECK(h.registry().find(again)->pid == 5000);
}

TEST_CASE("session core: a refusal in simple protocol runs what came before and rewrites the stand-in's error") {
    Harness h;
    h.log_in();
    const auto sent = h.client(query("DROP TABLE users"));
    CHECK(sent.find(marker + "1") != std::string::npos);
    CHECK(sent.find("DROP") == std::string::npos);  // the refused text never reaches the server
    CHECK(h.core().statement_running());
    const auto answer = h.server(stand_in_error(1) + ready());
    CHECK(error_field_of(answer, 'C') == "42501");
    CHECK(error_field_of(answer, 'M') == "pgrail: rule agents refused DROP");
    CHECK(error_field_of(answer, 'H') == "propose one");
    CHECK(answer.ends_with(ready()));
    CHECK_FALSE(h.core().statement_running());
    // Its batch is answered: the same id later is the server's own error, forwarded as it came.
    const auto late = stand_in_error(1);
    h.client(query("SELECT 1"));
    CHECK(h.server(late + ready()) == late + ready());
}

TEST_CASE("session core: a pipeline with a refusal in the middle") {
    Harness h;
    h.log_in();
    const auto pipeline = parse("a", "SELECT 1") + bind("a") + execute() + parse("b", "DROP TABLE users") + bind("b") +
                          execute() + sync_message() + parse("c", "SELECT 2") + bind("c") + execute() + sync_message();
    const auto sent = h.client(pipeline);
    // The first and third statements as they came; the second's Parse carries the stand-in.
    CHECK(sent.starts_with(parse("a", "SELECT 1") + bind("a") + execute()));
    CHECK(sent.find(marker + "1") != std::string::npos);
    CHECK(sent.ends_with(parse("c", "SELECT 2") + bind("c") + execute() + sync_message()));
    CHECK(h.core().requested() == 3);  // the login's, and one per Sync
    CHECK(h.core().executed_since_sync() == false);
    // The server runs the first, fails the stand-in, skips to the Sync, and runs the third.
    const auto first = parse_complete() + bind_complete() + data_row("1") + complete("SELECT 1");
    const auto answer = h.server(first + stand_in_error(1) + ready());
    CHECK(answer.starts_with(first));
    CHECK(error_field_of(answer.substr(first.size()), 'C') == "42501");
    CHECK(h.core().answered() == 2);
    const auto third = parse_complete() + bind_complete() + data_row("2") + complete("SELECT 1") + ready();
    CHECK(h.server(third) == third);
    CHECK(h.core().at_rest());
}

TEST_CASE("session core: texts read behind a change of client_encoding, until its answer") {
    Harness h;
    h.log_in();
    const auto pending = [&h] { return h.core().context().lexing.encoding_pending; };
    SECTION("simple protocol: from the Query to its ReadyForQuery, over a pipelined one") {
        h.client(query("SET client_encoding TO 'LATIN1'") + query("SELECT 1"));
        CHECK(pending());
        h.server(complete("SET") + ready());
        CHECK_FALSE(pending());
        h.server(data_row("1") + complete("SELECT 1") + ready());
        CHECK_FALSE(pending());
        // Two in flight: the first answer leaves the second's change pending.
        h.client(query("SET client_encoding TO 'LATIN1'") + query("SET client_encoding TO 'UTF8'"));
        h.server(complete("SET") + ready());
        CHECK(pending());
        h.server(complete("SET") + ready());
        CHECK_FALSE(pending());
    }
    SECTION("extended protocol: the change runs at each Bind of its statement, not at its Parse") {
        h.client(parse("enc", "SET client_encoding TO 'LATIN1'") + sync_message());
        CHECK_FALSE(pending());
        h.server(parse_complete() + ready());
        h.client(bind("enc") + execute() + sync_message());
        CHECK(pending());
        h.server(bind_complete() + complete("SET") + ready());
        CHECK_FALSE(pending());
        h.client(bind("other") + execute() + sync_message());
        CHECK_FALSE(pending());
        h.server(bind_complete() + complete("SELECT 1") + ready());
        // A SQL EXECUTE may run it too.
        h.client(query("EXECUTE enc"));
        CHECK(pending());
        h.server(complete("SET") + ready());
        CHECK_FALSE(pending());
        // Prepared again as something else in a batch with an error before it: the server skipped
        // that Parse and keeps the statement (review 92), so its Binds still expect the change.
        h.client(parse("", "SELECT 1/0") + bind("") + execute() + parse("enc", "SELECT 1") + sync_message());
        h.server(parse_complete() + error("ERROR", "22012", "division by zero") + ready());
        h.client(bind("enc") + execute() + sync_message());
        CHECK(pending());
        h.server(bind_complete() + complete("SET") + ready());
        // In a batch the server does all of: its Bind there is the new statement's, and after the
        // answer the name is forgotten (review 94: a driver's unnamed statement re-prepared).
        h.client(parse("enc", "SELECT 1") + bind("enc") + execute() + sync_message());
        CHECK_FALSE(pending());
        h.server(parse_complete() + bind_complete() + complete("SELECT 1") + ready());
        h.client(bind("enc") + execute() + sync_message());
        CHECK_FALSE(pending());
        h.server(bind_complete() + complete("SELECT 1") + ready());
        CHECK_FALSE(h.core().client_inspects('B', 20));  // nothing followed any more
    }
    SECTION("a Close forgets the statement once done; past 64 followed names, every Bind expects a change") {
        const std::string close_statement = frame('C', "S" + cstr("enc"));
        h.client(parse("enc", "SET client_encoding TO 'LATIN1'") + sync_message());
        h.server(parse_complete() + ready());
        // A Close the server skipped (an error before it) leaves the statement.
        h.client(parse("", "SELECT 1/0") + bind("") + execute() + close_statement + sync_message());
        h.server(parse_complete() + error("ERROR", "22012", "division by zero") + ready());
        h.client(bind("enc") + execute() + sync_message());
        CHECK(pending());
        h.server(bind_complete() + complete("SET") + ready());
        // One it did forgets it.
        h.client(close_statement + sync_message());
        h.server(frame('3') + ready());
        h.client(bind("enc") + execute() + sync_message());
        CHECK_FALSE(pending());
        h.server(error("ERROR", "26000", "prepared statement \"enc\" does not exist") + ready());
        for (int i = 0; i < 64; ++i) h.client(parse("s" + std::to_string(i), "SET client_encoding TO 'UTF8'"));
        h.client(bind("other") + execute() + sync_message());  // (the server: no such statement)
        CHECK_FALSE(pending());
        h.server(error("ERROR", "26000", "prepared statement \"other\" does not exist") + ready());
        h.client(parse("s64", "SET client_encoding TO 'UTF8'") + bind("other") + execute() + sync_message());
        CHECK(pending());
    }
    SECTION("a portal of such a statement expects a change at each Execute, in later batches too") {
        const auto bind_portal = [](std::string_view portal, std::string_view statement) {
            return frame('B', cstr(portal) + cstr(statement) + be16(0) + be16(0) + be16(0));
        };
        const auto execute_portal = [](std::string_view portal) { return frame('E', cstr(portal) + be32(1)); };
        h.client(query("BEGIN"));
        h.server(complete("BEGIN") + ready('T'));
        // (The harness's gate takes texts starting "SET client_encoding" to change it; the server's
        // answers are those of a SELECT set_config(...) FROM generate_series(1, 2).)
        h.client(parse("enc", "SET client_encoding TO 'LATIN1'") +
                 bind_portal("p", "enc") + execute_portal("p") + sync_message());
        CHECK(pending());
        h.server(parse_complete() + bind_complete() + data_row("UTF8") + frame('s') + ready('T'));
        // Answered inside the block: not final (its end may undo it), so still read as unknown.
        CHECK(pending());
        CHECK_FALSE(h.core().encoding_change_on_its_way());
        // The portal runs on: its next row may change the encoding.
        h.client(execute_portal("p") + sync_message());
        CHECK(pending());
        h.server(data_row("LATIN1") + frame('s') + ready('T'));
        CHECK_FALSE(h.core().encoding_change_on_its_way());
        // Another portal does not; nor does "p" once bound again from another statement, or closed.
        h.client(parse("plain", "SELECT 1") + bind_portal("q", "plain") + execute_portal("q") + sync_message());
        CHECK_FALSE(h.core().encoding_change_on_its_way());
        h.server(parse_complete() + bind_complete() + data_row("1") + frame('s') + ready('T'));
        h.client(bind_portal("p", "plain") + execute_portal("p") + sync_message());
        CHECK_FALSE(h.core().encoding_change_on_its_way());
        h.server(bind_complete() + data_row("1") + frame('s') + ready('T'));
        h.client(bind_portal("r", "enc") + sync_message());
        CHECK(h.core().encoding_change_on_its_way());
        h.server(bind_complete() + ready('T'));
        h.client(frame('C', "P" + cstr("r")) + execute_portal("r") + sync_message());
        CHECK_FALSE(h.core().encoding_change_on_its_way());
        h.server(frame('3') + error("ERROR", "34000", "portal \"r\" does not exist") + ready('E'));
        CHECK(pending());
        // The block's end settles it: the value the server reports at its ReadyForQuery is final.
        h.client(query("ROLLBACK"));
        h.server(complete("ROLLBACK") + ready('I'));
        CHECK_FALSE(pending());
    }
}

// An extended-protocol COPY FROM STDIN sent as libpq's PQexecParams sends it (Parse, Bind, Execute
// and Sync at once), and the server's start of the copy.
static void start_copy(Harness& h, std::string_view sql = "COPY t FROM STDIN") {
    h.client(parse("", sql) + bind("") + execute() + sync_message());
    h.server(parse_complete() + bind_complete() + copy_in_response());
}

// A started copy that fails on the server (`failure`), and the client's CopyDone and Sync: held,
// and the settle marker sent in their place.
static void fail_copy_and_settle(Harness& h, const std::string& failure) {
    start_copy(h);
    h.server(failure);
    CHECK(h.client(copy_done() + sync_message()) == settle_marker());
}

TEST_CASE("session core: COPY FROM STDIN and the Syncs around it") {
    SECTION("extended protocol: the Sync before the data is ignored by the server") {
        Harness h;
        h.log_in();
        h.client(parse("", "COPY t FROM STDIN") + bind("") + execute() + sync_message());
        CHECK(h.core().requested() == 2);
        h.server(parse_complete() + bind_complete() + copy_in_response());
        CHECK(h.core().phase() == Phase::copy_in);
        h.client(copy_data("1\n") + copy_data("2\n"));
        CHECK(h.core().requested() == 1);  // that Sync earns nothing
        h.client(copy_done() + sync_message());
        CHECK(h.core().phase() == Phase::ready);
        CHECK(h.core().requested() == 1);  // the Sync behind CopyDone waits for the copy's outcome
        h.server(complete("COPY 2"));
        h.client("");
        CHECK(h.core().requested() == 2);
        h.server(ready());
        CHECK(h.core().answered() == 2);
        CHECK(h.core().at_rest());
    }
    SECTION("extended protocol: the copy's outcome comes before the Sync behind its CopyDone") {
        Harness h;
        h.log_in();
        start_copy(h);
        // CopyDone goes with a Flush of pgrail's; the Sync behind waits for the outcome.
        CHECK(h.client(copy_data("1\n") + copy_done() + sync_message()) == copy_data("1\n") + copy_done() + frame('H'));
        CHECK(h.core().holding_client());
        CHECK(h.server(complete("COPY 1")) == complete("COPY 1"));
        CHECK_FALSE(h.core().holding_client());
        CHECK(h.client("") == sync_message());
        h.server(ready());
        CHECK(h.core().at_rest());
    }
    SECTION("extended protocol: a copy that failed after reading the Sync behind it: the server skips to the next") {
        Harness h;
        h.log_in();
        start_copy(h);
        h.client(copy_data("x\n"));
        const auto failure = error("ERROR", "22P02", "invalid input syntax for type integer: \"x\"");
        CHECK(h.server(failure) == failure);
        CHECK_FALSE(h.stopped);
        CHECK(h.core().settle_marker_due());
        // The client's next frames wait behind pgrail's Sync and empty Query.
        CHECK(h.client(copy_data("2\n") + copy_done() + sync_message()) == settle_marker());
        // The server skipped to pgrail's Sync: its answer and the marker's are the client's to miss.
        CHECK(h.server(ready('I') + frame('3') + ready('I')).empty());
        CHECK_FALSE(h.core().holding_client());
        // PostgreSQL would skip to the client's next Sync, pgrail's ended the skip: what the
        // client sends until its Sync is dropped (the server would have skipped it), the Sync
        // goes on and earns its answer.
        CHECK(h.client("") == sync_message());
        CHECK(h.server(ready('I')) == ready('I'));
        CHECK(h.core().at_rest());
        // A statement sent between CopyDone and Sync is skipped, as PostgreSQL skips it.
        start_copy(h);
        h.server(error("ERROR", "22P02", "invalid input syntax"));
        CHECK(h.client(copy_done() + parse("", "UPDATE t SET v = 1") + bind("") + execute() + sync_message()) ==
              settle_marker());
        CHECK(h.server(ready('I') + frame('3') + ready('I')).empty());
        CHECK(h.client("") == sync_message());
        CHECK(h.server(ready('I')) == ready('I'));
        CHECK(h.core().at_rest());
    }
    SECTION("extended protocol: nothing but Syncs may follow the COPY's Execute when the copy starts") {
        Harness h;
        h.log_in();
        // The server reads the Describe as copy data (the copy then fails): pgrail could not
        // pair its answer; the session ends.
        h.client(parse("", "COPY t FROM STDIN") + bind("") + execute() + frame('D', "P" + cstr("")) + sync_message());
        h.server(parse_complete() + bind_complete() + copy_in_response());
        REQUIRE(h.core().ending().has_value());
        CHECK(h.core().ending()->sqlstate == "08P01");
    }
    SECTION("extended protocol: the marker's Close answered by an error settles too") {
        Harness h;
        h.log_in();
        fail_copy_and_settle(h, error("ERROR", "57014", "canceling statement due to user request"));
        CHECK(h.server(ready('I') + error("ERROR", "57014", "canceling statement due to user request") + ready('I'))
                  .empty());
        CHECK_FALSE(h.core().holding_client());
        CHECK(h.client("") == sync_message());
        CHECK(h.server(ready('I')) == ready('I'));
        CHECK(h.core().at_rest());
    }
    SECTION("extended protocol: a copy that failed before reading anything (FREEZE): the Sync behind is answered") {
        Harness h;
        h.log_in();
        start_copy(h, "COPY t FROM STDIN (FREEZE)");
        const auto failure = error("ERROR", "55000", "cannot perform COPY FREEZE");
        CHECK(h.server(failure) == failure);
        // The server answers the client's Sync at once: held until pgrail knows it is the client's.
        CHECK(h.server(ready('I')).empty());
        CHECK(h.client(copy_data("1\n") + copy_done() + sync_message()) == settle_marker());
        CHECK(h.server(ready('I') + frame('3') + ready('I')) == ready('I'));
        // The server ended the copy's batch at that Sync: what follows is a batch of its own (the
        // server ignores the stragglers, and runs what comes before the client's next Sync).
        CHECK(h.client("") == copy_data("1\n") + copy_done() + sync_message());
        CHECK(h.server(ready('I')) == ready('I'));
        CHECK(h.core().at_rest());
        // A statement after it is answered as its own.
        h.client(query("SELECT 1"));
        h.server(complete("SELECT 1") + ready('I'));
        CHECK(h.core().at_rest());
    }
    SECTION("extended protocol: a FATAL while settling reaches the client") {
        Harness h;
        h.log_in();
        fail_copy_and_settle(h, error("ERROR", "22P02", "invalid input syntax"));
        const auto fatal = error("FATAL", "57P01", "terminating connection due to administrator command");
        CHECK(h.server(ready('I') + fatal) == fatal);
        CHECK(h.core().server_sent_fatal());
    }
    SECTION("extended protocol: a settled batch that changed client_encoding is forgotten") {
        Harness h;
        h.log_in();
        h.client(parse("", "SET client_encoding = 'UTF8'") + bind("") + execute() +
                 parse("", "COPY t FROM STDIN (FREEZE)") + bind("") + execute() + sync_message());
        CHECK(h.core().context().lexing.encoding_pending);
        h.server(parse_complete() + bind_complete() + complete("SET") + parse_complete() + bind_complete() +
                 copy_in_response());
        h.server(error("ERROR", "55000", "cannot perform COPY FREEZE") + ready('I'));
        CHECK(h.client(copy_done() + sync_message()) == settle_marker());
        CHECK(h.server(ready('I') + frame('3') + ready('I')) == ready('I'));
        CHECK_FALSE(h.core().context().lexing.encoding_pending);
    }
    SECTION("extended protocol: the marker's answer before its Sync's: the session ends") {
        Harness h;
        h.log_in();
        fail_copy_and_settle(h, error("ERROR", "22P02", "invalid input syntax"));
        h.server(frame('3'));
        CHECK(h.stopped);
        REQUIRE(h.core().ending().has_value());
        CHECK(h.core().ending()->sqlstate == "08P01");
    }
    SECTION("extended protocol: more answers than Syncs while settling: the session ends") {
        Harness h;
        h.log_in();
        start_copy(h);
        h.server(error("ERROR", "57014", "canceling statement due to user request"));
        h.client(copy_done());
        h.server(ready('I') + ready('I'));
        CHECK_FALSE(h.stopped);
        h.server(ready('I'));
        CHECK(h.stopped);
        REQUIRE(h.core().ending().has_value());
        CHECK(h.core().ending()->sqlstate == "08P01");
    }
    SECTION("extended protocol: an error during a copy with no Sync behind it is the session's to go on") {
        Harness h;
        h.log_in();
        h.client(parse("", "COPY t FROM STDIN") + bind("") + execute() + frame('H'));
        h.server(parse_complete() + bind_complete() + copy_in_response());
        h.client(copy_data("x\n"));
        const auto failure = error("ERROR", "22P02", "invalid input syntax for type integer: \"x\"");
        CHECK(h.server(failure) == failure);
        CHECK_FALSE(h.stopped);
        CHECK_FALSE(h.core().at_rest());  // the client is still in its copy
        h.client(copy_done() + sync_message());
        h.server(ready());
        CHECK(h.core().at_rest());
    }
    SECTION("simple protocol, and a CopyFail") {
        Harness h;
        h.log_in();
        h.client(query("COPY t FROM STDIN"));
        h.server(copy_in_response());
        CHECK(h.core().phase() == Phase::copy_in);
        h.client(copy_data("1\n") + frame('f', cstr("client gave up")));
        CHECK(h.core().phase() == Phase::ready);
        h.server(error("ERROR", "57014", "COPY from stdin failed: client gave up") + ready());
        CHECK(h.core().answered() == 2);
        CHECK(h.core().at_rest());
    }
    SECTION("COPY TO STDOUT: copy_out until the server's CopyDone") {
        Harness h;
        h.log_in();
        h.client(query("COPY t TO STDOUT"));
        h.server(copy_out_response() + copy_data("1\n"));
        CHECK(h.core().phase() == Phase::copy_out);
        h.server(copy_done() + complete("COPY 1") + ready());
        CHECK(h.core().phase() == Phase::ready);
        CHECK(h.core().at_rest());
    }
}

// Found by review: PostgreSQL fails a Flush with a body and then skips every message to the next
// Sync, a Query's too, which pgrail counted as owed an answer: one batch behind for good, results
// then paired with the wrong statements (masking and max_rows with them).
TEST_CASE("session core: a Flush with a body ends the session") {
    Harness h;
    h.log_in();
    h.client(frame('H', "x") + query("SELECT 1") + sync_message());
    REQUIRE(h.core().ending().has_value());
    CHECK(h.core().ending()->sqlstate == "08P01");
    // A Flush as it should be passes as it came.
    Harness plain;
    plain.log_in();
    CHECK(plain.client(frame('H')) == frame('H'));
    CHECK_FALSE(plain.core().ending().has_value());
}

// Defence in depth: whatever message the server reads otherwise than pgrail, a batch answered
// while a Describe of it is still unanswered (and no error skipped it) means the counts differ.
TEST_CASE("session core: a batch answered before its Describes ends the session") {
    Harness h;
    h.log_in();
    h.client(parse("s", "SELECT 1") + describe('S', "s") + sync_message());
    h.server(parse_complete() + ready());
    CHECK(h.stopped);
    REQUIRE(h.core().ending().has_value());
    CHECK(h.core().ending()->sqlstate == "08P01");
    // An error that made the server skip the Describe: in step.
    Harness failed;
    failed.log_in();
    failed.client(parse("s", "SELECT nothing") + describe('S', "s") + sync_message());
    failed.server(error("ERROR", "42703", "column \"nothing\" does not exist") + ready());
    CHECK_FALSE(failed.stopped);
    CHECK_FALSE(failed.core().ending().has_value());
    CHECK(failed.core().at_rest());
}

TEST_CASE("session core: a server FATAL in every phase goes to the client as it came") {
    const auto fatal = error("FATAL", "57P01", "terminating connection due to administrator command");
    SECTION("authenticating") {
        Harness h;
        CHECK(h.server(fatal) == fatal);
        CHECK(h.core().server_sent_fatal());
    }
    SECTION("ready") {
        Harness h;
        h.log_in();
        CHECK(h.server(fatal) == fatal);
        CHECK(h.core().server_sent_fatal());
    }
    SECTION("copy in") {
        Harness h;
        h.log_in();
        h.client(query("COPY t FROM STDIN"));
        h.server(copy_in_response());
        CHECK(h.server(fatal) == fatal);
        CHECK(h.core().server_sent_fatal());
    }
    SECTION("copy out") {
        Harness h;
        h.log_in();
        h.client(query("COPY t TO STDOUT"));
        h.server(copy_out_response() + copy_data("1\n"));
        CHECK(h.server(fatal) == fatal);
        CHECK(h.core().server_sent_fatal());
        CHECK(h.core().phase() == Phase::ready);
    }
    SECTION("an ERROR is not a FATAL") {
        Harness h;
        h.log_in();
        h.server(error("ERROR", "42P01", "relation \"x\" does not exist"));
        CHECK_FALSE(h.core().server_sent_fatal());
    }
}

TEST_CASE("session core: Terminate in every phase goes to the server") {
    SECTION("authenticating") {
        Harness h;
        CHECK(h.client(terminate()) == terminate());
        CHECK(h.core().client_terminated());
    }
    SECTION("ready") {
        Harness h;
        h.log_in();
        CHECK(h.client(terminate()) == terminate());
        CHECK(h.core().client_terminated());
    }
    SECTION("copy in") {
        Harness h;
        h.log_in();
        h.client(query("COPY t FROM STDIN"));
        h.server(copy_in_response());
        CHECK(h.client(copy_data("1\n") + terminate()) == copy_data("1\n") + terminate());
        CHECK(h.core().client_terminated());
    }
}

TEST_CASE("session core: the end of a session is said once, the first reason wins") {
    Harness h;
    h.log_in();
    h.core().end("08P01", "invalid message");
    h.core().end("57P01", "shutting down");
    REQUIRE(h.core().ending());
    CHECK(h.core().ending()->sqlstate == "08P01");
    CHECK(h.core().phase() == Phase::ending);
    CHECK_FALSE(h.core().at_rest());
    // A malformed Query ends it too.
    Harness other;
    other.log_in();
    Outbound out;
    const auto bad = frame('Q', "no terminator");
    other.core().on_client_header('Q');
    CHECK(other.core().on_client_frame('Q', bad, out).kind == ClientStep::Kind::end);
    CHECK(other.core().ending()->sqlstate == "08P01");
}

TEST_CASE("session core: a statement that reads pgrail commands hides its parameters and runs at Bind") {
    Harness h;
    h.log_in();
    Outbound out;
    const auto parse_frame = parse("s", "SELECT * FROM pgrail.status()");
    h.core().on_client_header('P');
    const auto step = h.core().on_client_frame('P', parse_frame, out);
    REQUIRE(step.kind == ClientStep::Kind::check_statement);
    GateVerdict verdict;
    verdict.kind = GateVerdict::Kind::intercept;
    InbandCall call;
    call.command = pgrail::sql::PgrailCommand::status;
    call.offset = std::string_view("SELECT * FROM ").size();
    call.length = std::string_view("pgrail.status()").size();
    verdict.calls.push_back(call);
    h.core().apply(verdict, step.statement, out);
    REQUIRE_FALSE(h.core().defer(verdict, step.statement, out));
    // A Describe of it: the server's ParameterDescription has pgrail's json parameter, the
    // client's has none.
    h.client(describe('S', "s") + sync_message());
    const auto answer = h.server(parse_complete() + parameter_description({114}) + no_data() + ready());
    CHECK(answer == parse_complete() + parameter_description({}) + no_data() + ready());
    // Its Bind is the shell's to run.
    Outbound bind_out;
    h.core().on_client_header('B');
    const auto bound = h.core().on_client_frame('B', bind("s"), bind_out);
    CHECK(bound.kind == ClientStep::Kind::bind_deferred);
    CHECK(bound.deferred.calls.size() == 1);
    // A Bind that gives a parameter the statement does not take is the core's to refuse, as
    // PostgreSQL refuses it: nothing runs, and the server fails a stand-in Parse of pgrail's own.
    h.core().on_client_header('B');
    const auto extra = frame('B', cstr("") + cstr("s") + be16(0) + be16(1) + be32(1) + "x" + be16(0));
    const auto refused = h.core().on_client_frame('B', extra, bind_out);
    CHECK(refused.kind == ClientStep::Kind::done);
    CHECK_FALSE(h.client(sync_message()).empty());
    const auto refusal = h.server(stand_in_error(1) + ready());
    CHECK(error_field_of(refusal, 'C') == "08P01");
    CHECK(error_field_of(refusal, 'M') == "bind message supplies 1 parameters, but prepared statement \"s\" requires 0");
}

// A Bind of one parameter, `value` (nullopt: NULL) in `format`.
std::string bind_value(std::string_view statement, std::optional<std::string_view> value, std::int16_t format) {
    std::string body = cstr("") + cstr(statement) + be16(1) + be16(static_cast<std::uint16_t>(format)) + be16(1);
    body += value ? be32(static_cast<std::uint32_t>(value->size())) + std::string(*value) : be32(0xffffffffu);
    return frame('B', body + be16(0));
}

TEST_CASE("session core: once a statement takes an advisory lock by parameter, every Bind's keys are read") {
    Harness h;
    h.log_in();
    Outbound out;
    const auto prepare = [&](std::string_view name, std::vector<std::uint16_t> keys) {
        const auto parse_frame = parse(name, "SELECT pg_advisory_lock($1)");
        h.core().on_client_header('P');
        const auto step = h.core().on_client_frame('P', parse_frame, out);
        REQUIRE(step.kind == ClientStep::Kind::check_statement);
        GateVerdict verdict;
        verdict.bound_lock_keys = std::move(keys);
        h.core().apply(verdict, step.statement, out);
    };
    const auto keys_of = [&](const std::string& bind_frame) {
        h.core().on_client_header('B');
        const auto step = h.core().on_client_frame('B', bind_frame, out);
        return step.kind == ClientStep::Kind::check_lock_keys ? step.lock_keys : std::vector<std::string>{};
    };
    // Nothing prepared so yet: a Bind is not even read.
    CHECK_FALSE(h.core().client_inspects('B', 20));
    prepare("take", {1});
    CHECK(h.core().context().prepared_lock_keys);
    CHECK(h.core().client_inspects('B', 20));
    using Keys = std::vector<std::string>;
    const std::string key = "8099568217555234151";
    // Text as int8in reads it: spaces around, a sign, leading zeros.
    CHECK(keys_of(bind_value("take", key, 0)) == Keys{key});
    CHECK(keys_of(bind_value("take", " \t+0008099568217555234151\n", 0)) == Keys{key});
    // What the server would refuse as a key, or what can be none of pgrail's, goes nowhere.
    for (const std::string value : {"-0008099568217555234151", "42", "12 34", "0x10", "99999999999999999999", "abc"})
        CHECK(keys_of(bind_value("take", value, 0)).empty());
    // Binary: a bigint's eight bytes; an int4's four cannot be pgrail's.
    const std::string key_bytes("\x70\x67\x72\x61\x69\x6c\x6d\x67", 8);
    CHECK(keys_of(bind_value("take", key_bytes, 1)) == Keys{key});
    CHECK(keys_of(bind_value("take", std::string(8, '\xff'), 1)).empty());  // -1
    CHECK(keys_of(bind_value("take", std::string(4, '\x7f'), 1)).empty());
    CHECK(keys_of(bind_value("take", std::string(3, '\x7f'), 1)).empty());
    CHECK(keys_of(bind_value("take", std::nullopt, 0)).empty());  // NULL: a strict function takes no lock
    // Every statement's Binds, every parameter: pgrail cannot know which statement a name holds
    // (a Parse the server skipped leaves the old one), and no other value is pgrail's key.
    CHECK(keys_of(bind_value("other", key, 0)) == Keys{key});
    const std::string two = frame('B', cstr("") + cstr("") + be16(0) + be16(2) + be32(2) + "42" +
                                           be32(static_cast<std::uint32_t>(key.size())) + key + be16(0));
    CHECK(keys_of(two) == Keys{key});
    CHECK(keys_of(bind("take")).empty());
}

TEST_CASE("session core: statement and portal names are ASCII") {
    // The server converts a name from client_encoding before it cuts it at 63 bytes; pgrail cuts
    // it as it comes: beyond ASCII two names pgrail told apart could be one (review 92).
    Harness h;
    h.log_in();
    const std::string latin1_name = std::string(61, 'x') + "\xe9" + "A";
    const auto sent = h.client(parse(latin1_name, "SELECT 1") + sync_message());
    CHECK(sent.find("SELECT 1") == std::string::npos);  // a stand-in of pgrail's own instead
    CHECK(sent.find(marker) != std::string::npos);
    const auto answer = h.server(stand_in_error(1) + ready());
    CHECK(error_field_of(answer, 'C') == "0A000");
    CHECK(error_field_of(answer, 'M') == "pgrail: prepared statement and portal names must be ASCII through pgrail");
    // ASCII names, as drivers make them, pass as they came.
    CHECK(h.client(parse("stmtcache_0f3a", "SELECT 1") + sync_message()) ==
          parse("stmtcache_0f3a", "SELECT 1") + sync_message());
}

TEST_CASE("session core: pgrail's probe is answered and hidden, or skipped after an error") {
    SECTION("answered") {
        Harness h;
        h.log_in();
        Outbound out;
        h.core().send_probe("s", out);
        CHECK(h.core().probe() == Probe::waiting);
        CHECK(h.server(parameter_description({}) + no_data()).empty());  // hidden from the client
        CHECK(h.core().probe() == Probe::answered);
    }
    SECTION("skipped") {
        Harness h;
        h.log_in();
        Outbound out;
        h.core().send_probe("gone", out);
        const auto failure = error("ERROR", "26000", "prepared statement \"gone\" does not exist");
        CHECK(h.server(failure) == failure);
        CHECK(h.core().probe() == Probe::skipped);
    }
}

TEST_CASE("session core: a transaction block is not at rest") {
    Harness h;
    h.log_in();
    h.client(query("BEGIN"));
    h.server(complete("BEGIN") + ready('T'));
    CHECK(h.core().transaction_status() == 'T');
    CHECK_FALSE(h.core().at_rest());
    h.client(query("COMMIT"));
    h.server(complete("COMMIT") + ready('I'));
    CHECK(h.core().at_rest());
}

namespace {

std::string startup_packet(std::uint32_t version, const std::vector<std::pair<std::string, std::string>>& parameters) {
    std::string body = be32(version);
    for (const auto& [name, value] : parameters) body += cstr(name) + cstr(value);
    body += '\0';
    return be32(static_cast<std::uint32_t>(body.size() + 4)) + body;
}
std::string request(std::uint32_t code) { return be32(8) + be32(code); }

}  // namespace

TEST_CASE("session core: the startup phase as PostgreSQL 15 reads it") {
    Harness h;  // (its start() is irrelevant here: the startup steps are pure)
    auto& core = h.core();
    SECTION("an encryption request is answered 'N' once; a second one is an unknown protocol") {
        auto step = core.on_startup_packet(request(protocol::gssenc_request_code));
        CHECK(step.kind == StartupStep::Kind::reply);
        CHECK(step.reply == "N");
        step = core.on_startup_packet(request(protocol::ssl_request_code));
        CHECK(step.kind == StartupStep::Kind::reply);
        CHECK(step.reply == "N");
        step = core.on_startup_packet(request(protocol::ssl_request_code));
        CHECK(step.kind == StartupStep::Kind::refuse);
        CHECK(error_field_of(step.reply, 'C') == "0A000");
        CHECK(error_field_of(step.reply, 'M') == "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0");
    }
    SECTION("inside TLS a GSSENCRequest is an unknown protocol, as PostgreSQL reads it") {
        core.offer_tls(false);
        auto step = core.on_startup_packet(request(protocol::ssl_request_code));
        CHECK(step.kind == StartupStep::Kind::start_tls);
        step = core.on_startup_packet(request(protocol::gssenc_request_code));
        CHECK(step.kind == StartupStep::Kind::refuse);
        CHECK(error_field_of(step.reply, 'M') == "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0");
    }
    SECTION("a CancelRequest carries its key; nothing is said") {
        const auto step = core.on_startup_packet(be32(16) + be32(protocol::cancel_request_code) + be32(42) + be32(7));
        CHECK(step.kind == StartupStep::Kind::cancel);
        CHECK(step.cancel_key.pid == 42);
        CHECK(step.cancel_key.secret == 7);
        CHECK(step.reply.empty());
    }
    SECTION("3.0: accepted as it came; the database defaults to the user") {
        const auto packet = startup_packet(protocol::protocol_version_3, {{"user", "agent"}, {"application_name", "mcp"}});
        const auto step = core.on_startup_packet(packet);
        CHECK(step.kind == StartupStep::Kind::accept);
        CHECK(step.reply.empty());
        CHECK(core.startup_bytes() == packet);
        CHECK(core.context().user == "agent");
        CHECK(core.context().database == "agent");
        CHECK(core.context().application_name == "mcp");
    }
    SECTION("user and database are cut to 63 bytes, as the server cuts them before it looks them up") {
        // A policy that names a 63-byte role must see that role when the client sends a longer name.
        const std::string role(63, 'r');
        const auto packet = startup_packet(protocol::protocol_version_3, {{"user", role + "-and-more"}});
        REQUIRE(core.on_startup_packet(packet).kind == StartupStep::Kind::accept);
        CHECK(core.startup_bytes() == packet);  // the server gets the bytes as sent, and cuts them itself
        CHECK(core.context().user == role);
        CHECK(core.context().database == role);  // defaulted from the whole user name, then cut
    }
    SECTION("auth.mode pgrail: the server is asked for the identity's role, the context names both") {
        REQUIRE(core.on_startup_packet(startup_packet(protocol::protocol_version_3,
                                                      {{"user", "agent-7"}, {"database", "app"}, {"application_name", "mcp"}}))
                    .kind == StartupStep::Kind::accept);
        core.log_in_as("agent-7", "agent");
        CHECK(core.startup_bytes() == startup_packet(protocol::protocol_version_3,
                                                     {{"user", "agent"}, {"database", "app"}, {"application_name", "mcp"}}));
        CHECK(core.context().user == "agent");
        CHECK(core.context().identity == "agent-7");
        CHECK(core.context().database == "app");
    }
    SECTION("auth.mode pgrail without a database: it defaults to the role, as the server defaults it") {
        REQUIRE(core.on_startup_packet(startup_packet(protocol::protocol_version_3, {{"user", "agent-7"}})).kind ==
                StartupStep::Kind::accept);
        CHECK(core.context().database == "agent-7");
        core.log_in_as("agent-7", "agent");
        CHECK(core.startup_bytes() == startup_packet(protocol::protocol_version_3, {{"user", "agent"}}));
        CHECK(core.context().database == "agent");
    }
    SECTION("3.2 and protocol options: NegotiateProtocolVersion, and the server gets 3.0 without them") {
        const auto step = core.on_startup_packet(
            startup_packet(protocol::protocol_version_3 + 2, {{"user", "agent"}, {"_pq_.compression", "on"}}));
        CHECK(step.kind == StartupStep::Kind::accept);
        REQUIRE_FALSE(step.reply.empty());
        CHECK(step.reply[0] == 'v');
        CHECK(step.reply.find("_pq_.compression") != std::string::npos);
        CHECK(core.startup_bytes() == startup_packet(protocol::protocol_version_3, {{"user", "agent"}}));
    }
    SECTION("protocol 2 hears an old-style error; 4.0 a FATAL; a malformed packet 08P01") {
        auto step = core.on_startup_packet(startup_packet(2u << 16, {{"user", "agent"}}));
        CHECK(step.kind == StartupStep::Kind::refuse);
        CHECK(step.reply.starts_with("EFATAL:  unsupported frontend protocol 2.0"));
        step = core.on_startup_packet(startup_packet(4u << 16, {{"user", "agent"}}));
        CHECK(error_field_of(step.reply, 'C') == "0A000");
        step = core.on_startup_packet(be32(12) + be32(protocol::protocol_version_3) + "user");  // no terminator
        CHECK(step.kind == StartupStep::Kind::refuse);
        CHECK(error_field_of(step.reply, 'C') == "08P01");
    }
}

TEST_CASE("session core: a batch owes a bounded number of refusals and Describes before its Sync") {
    // After its first error a batch answers nothing until the Sync (the server skips to it), so
    // what pgrail keeps for it must be bounded: past 1,024 refusals or 65,536 unanswered
    // Describes the session ends, as on a limit.
    // `allowed` copies of `frame` without a Sync pass; one more ends the session as on a limit.
    const auto ends_after = [](const std::string& frame, int allowed) {
        Harness h;
        h.log_in();
        std::string frames;
        for (int index = 0; index < allowed; ++index) frames += frame;
        (void)h.client(frames);
        CHECK_FALSE(h.core().ending());
        (void)h.client(frame);
        REQUIRE(h.core().ending());
        CHECK(h.core().ending()->sqlstate == "54000");
    };
    ends_after(parse("", "DROP TABLE users"), 1024);
    {
        Harness h;
        h.log_in();
        // A Sync starts the count again.
        std::string refused;
        for (int index = 0; index < 1000; ++index) refused += parse("", "DROP TABLE users");
        (void)h.client(refused + sync_message() + refused);
        CHECK_FALSE(h.core().ending());
    }
    ends_after(describe('S', "nosuch"), 65536);
    {
        // Answered Describes are not owed: a long pipeline that the server answers goes on.
        Harness h;
        h.log_in();
        std::string describes;
        std::string answers;
        for (int index = 0; index < 20000; ++index) {
            describes += describe('S', "a");
            answers += parameter_description({}) + no_data();
        }
        for (int round = 0; round < 4; ++round) {
            (void)h.client(describes);
            CHECK(h.server(answers) == answers);
        }
        CHECK_FALSE(h.core().ending());
    }
}

// The migrator route: a registered migration's statement counts as run only by the completion
// that answers it (its place in its batch), and only as the gate checked it.
TEST_CASE("session core: a registered statement counts by the completion that answers it") {
    Harness h;
    h.log_in();
    const auto committed = [&h] { return h.core().migrator_runs().take_committed().size(); };
    const auto bind_portal = [](std::string_view portal, std::string_view statement) {
        return frame('B', cstr(portal) + cstr(statement) + be16(0) + be16(0) + be16(0));
    };
    const auto execute_portal = [](std::string_view portal) { return frame('E', cstr(portal) + be32(0)); };
    SECTION("prepared but never executed: another statement's completion of the same tag does not count") {
        h.client(parse("s1", "ALTER TABLE registered ADD c int") + parse("", "ALTER TABLE other ADD c int") +
                 bind("") + execute() + sync_message());
        h.server(parse_complete() + parse_complete() + bind_complete() + complete("ALTER TABLE") + ready());
        CHECK(committed() == 0);
    }
    SECTION("executed in its batch, after another Execute: the second completion is its own") {
        h.client(parse("", "ALTER TABLE other ADD c int") + bind("") + execute() +
                 parse("s1", "ALTER TABLE registered ADD c int") + bind("s1") + execute() + sync_message());
        h.server(parse_complete() + bind_complete() + complete("ALTER TABLE") + parse_complete() + bind_complete() +
                 complete("ALTER TABLE") + ready());
        CHECK(committed() == 1);
        // The same, failing: nothing.
        h.client(parse("", "ALTER TABLE other ADD c int") + bind("") + execute() +
                 parse("s1", "ALTER TABLE registered ADD c int") + bind("s1") + execute() + sync_message());
        h.server(parse_complete() + bind_complete() + complete("ALTER TABLE") +
                 error("ERROR", "42701", "column \"c\" already exists") + ready());
        CHECK(committed() == 0);
    }
    SECTION("a Query's statements complete in their order") {
        h.client(query("SELECT 1; ALTER TABLE registered ADD c int"));
        h.server(data_row("1") + complete("SELECT 1") + complete("ALTER TABLE") + ready());
        CHECK(committed() == 1);
        h.client(query("ALTER TABLE other ADD c int; ALTER TABLE registered ADD c int"));
        h.server(complete("ALTER TABLE") + error("ERROR", "42701", "column \"c\" already exists") + ready());
        CHECK(committed() == 0);
    }
    SECTION("a Bind in a later batch than the Parse is refused; so is one after a temporary relation") {
        h.client(parse("s1", "ALTER TABLE registered ADD c int") + sync_message());
        h.server(parse_complete() + ready());
        auto sent = h.client(bind("s1") + execute() + sync_message());
        CHECK(sent.find(marker) != std::string::npos);  // a stand-in fails in its place
        CHECK(sent.find(bind("s1")) == std::string::npos);
        auto answer = h.server(stand_in_error(1) + ready());
        CHECK(error_field_of(answer, 'C') == "55000");
        CHECK(committed() == 0);
        sent = h.client(parse("s1", "ALTER TABLE registered ADD c int") + parse("t", "CREATE TEMP TABLE x (a int)") +
                        bind("t") + execute() + bind("s1") + execute() + sync_message());
        CHECK(sent.find(bind("s1")) == std::string::npos);
        answer = h.server(parse_complete() + parse_complete() + bind_complete() + complete("CREATE TABLE") +
                          stand_in_error(2) + ready());
        CHECK_THAT(answer, Catch::Contains("temporary relation or type"));
        CHECK(committed() == 0);
    }
    SECTION("a portal executed after a temporary relation made since its Bind is refused there") {
        // A utility statement resolves its names when executed: the Execute is refused in place.
        const auto sent = h.client(parse("s1", "ALTER TABLE registered ADD c int") + bind_portal("p", "s1") +
                                   parse("t", "CREATE TEMP TABLE x (a int)") + bind("t") + execute() +
                                   execute_portal("p") + sync_message());
        CHECK(sent.find(execute_portal("p")) == std::string::npos);
        CHECK(sent.find(marker) != std::string::npos);
        const auto answer = h.server(parse_complete() + bind_complete() + parse_complete() + bind_complete() +
                                     complete("CREATE TABLE") + stand_in_error(1) + ready());
        CHECK_THAT(answer, Catch::Contains("temporary relation or type"));
        CHECK(committed() == 0);
    }
    SECTION("a portal executed in a later batch than its Bind ends the session") {
        h.client(query("BEGIN"));
        h.server(complete("BEGIN") + ready('T'));
        h.client(parse("s1", "ALTER TABLE registered ADD c int") + bind_portal("p", "s1") + sync_message());
        h.server(parse_complete() + bind_complete() + ready('T'));
        h.client(execute_portal("p") + sync_message());
        REQUIRE(h.core().ending().has_value());
        CHECK(h.core().ending()->sqlstate == "0A000");
    }
}
