// Analyse query text with libpg_query: split, parse, classify.
#pragma once

#include <array>
#include <memory>
#include <string_view>

#include "pgrail/sql/statement.hpp"

namespace pgrail::sql {

// How the server will lex a text: the session settings that change where literals, comments
// and statements end (the server reports both in ParameterStatus).
// The types whose casts the analyzer reads through by their unqualified names, taking them to be
// pg_catalog's (a constant cast to text, varchar, an integer type or numeric; a sequence name cast
// to regclass). pg_temp is searched before pg_catalog for type names: a temporary type, or a
// temporary relation's row type, of one of these names would change what such a cast is, so the
// policy refuses one.
inline constexpr std::array<std::string_view, 7> types_read_through_casts = {"text", "varchar", "int2", "int4",
                                                                              "int8", "numeric", "regclass"};

struct Lexing {
    // standard_conforming_strings: off makes a backslash in '...' an escape (`'a\' ; DROP ...'`
    // is one literal on, a literal and a DROP off).
    bool standard_conforming_strings = true;
    // The session's client_encoding is one whose multibyte characters may hold ASCII bytes
    // (0x5C '\\', ';' ...): SJIS, BIG5, GBK, UHC, GB18030, JOHAB. The server then also refuses
    // \' in escape strings (backslash_quote = safe_encoding): pgrail reads them alike.
    bool client_only_encoding = false;
    // The server converts this session's text before it lexes it (client_encoding differs from
    // server_encoding), and pgrail does not: a text holding any byte >= 0x80 is refused (a limit
    // error). ASCII text is the same in every encoding PostgreSQL has for a server.
    bool converted = false;
    // A statement that may change client_encoding is on its way to the server and not yet
    // answered, or was answered inside a transaction block still open (whose end or an error may
    // put the old value back): until then, a text holding any byte >= 0x80 is refused as under
    // `converted`.
    bool encoding_pending = false;
    bool operator==(const Lexing&) const = default;
};

// Whether PostgreSQL's encoding `name` (as client_encoding reports it, any case) is one of the
// client-only encodings of Lexing::client_only_encoding.
[[nodiscard]] bool is_client_only_encoding(std::string_view name);
// An encoding's name as PostgreSQL compares them (pg_char_to_encoding: letters and digits, any
// case), with UNICODE as UTF8's other name: "utf8" for every spelling of UTF8.
[[nodiscard]] std::string encoding_key(std::string_view name);

// Analyses `query` (one simple-Query string or one Parse message's text) as the server lexes it
// under `lexing`.
// Never throws for bad SQL and never crashes on hostile input: text nested too
// deeply to parse safely is refused as a ParseError. Thread-safe. Parsing runs on the
// caller's stack when it has room (about 0.5 MB plus 3 KB per nesting level), else on a
// 64 MB stack of the calling thread's own (mapped on first need, in pages as used) or, in
// sanitizer builds, on internal 64 MB-stack worker threads. Fast path: comment-free text of
// up to 16,000 bytes is parsed whole, without scanning it first, on a stack of 0.5 MB plus
// 3 KB per byte of it (a short statement: well under 1 MB).
[[nodiscard]] Analysis analyze(std::string_view query, Lexing lexing = {});

// Whether PostgreSQL's scanner reads `text` in time about linear in its length: false when its
// runs of operator characters, which the scanner reads again for each operator it keeps from a
// run ("+-+-..."), add up to more than a few tens of microseconds of scanning. Linear in the text.
[[nodiscard]] bool scans_in_linear_time(std::string_view text);

// What stands for the analysis of a text longer than pgrail analyses (its memory grows with
// the text: about 75 times its size for a long IN list): one unknown statement over all of
// it, with a limit error.
[[nodiscard]] Analysis too_long_to_analyse(std::size_t size, std::size_t max_size);

}  // namespace pgrail::sql
