// Generators of deeply nested SQL, the inputs that crash an unguarded libpg_query.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace pgrail::sql::testing {

struct DeepShape {
    const char* name;
    std::string (*make)(std::size_t levels);
};

inline std::string repeat(const std::string& part, std::size_t count) {
    std::string out;
    out.reserve(part.size() * count);
    for (std::size_t index = 0; index < count; ++index) out += part;
    return out;
}

inline const std::vector<DeepShape>& deep_shapes() {
    static const std::vector<DeepShape> shapes = {
        {"plus chain", [](std::size_t n) { return "SELECT 1" + repeat("+1", n); }},
        {"parentheses", [](std::size_t n) { return "SELECT " + repeat("(", n) + "1" + repeat(")", n); }},
        {"nested CASE", [](std::size_t n) { return "SELECT " + repeat("CASE WHEN true THEN ", n) + "1" + repeat(" END", n); }},
        {"nested subselects", [](std::size_t n) { return repeat("SELECT (", n) + "SELECT 1" + repeat(")", n); }},
        {"nested arrays", [](std::size_t n) { return "SELECT ARRAY" + repeat("[", n) + "1" + repeat("]", n); }},
        {"UNION chain", [](std::size_t n) { return "SELECT 1" + repeat(" UNION SELECT 1", n); }},
        {"JOIN chain", [](std::size_t n) { return "SELECT * FROM t0" + repeat(" JOIN t ON true", n); }},
        {"NOT chain", [](std::size_t n) { return "SELECT " + repeat("NOT ", n) + "true"; }},
        {"unary minus chain", [](std::size_t n) { return "SELECT " + repeat("- ", n) + "1"; }},
        // `+-` lexes as two operators: one tree level per byte, the densest nesting.
        {"alternating signs", [](std::size_t n) { return "SELECT " + repeat("+", n % 2) + repeat("-+", n / 2) + "1"; }},
        {"typecast chain", [](std::size_t n) { return "SELECT 1" + repeat("::int", n); }},
        {"string concatenation", [](std::size_t n) { return "SELECT 'a'" + repeat(" || 'a'", n); }},
        {"AND chain in parentheses", [](std::size_t n) { return "SELECT 1 WHERE " + repeat("(true AND ", n) + "true" + repeat(")", n); }},
        {"function calls", [](std::size_t n) { return "SELECT " + repeat("lower(", n) + "'a'" + repeat(")", n); }},
        {"nested row constructors", [](std::size_t n) { return "SELECT " + repeat("ROW(", n) + "1" + repeat(")", n); }},
        {"IS NULL chain", [](std::size_t n) { return "SELECT 1" + repeat(" IS NULL", n); }},
        {"json arrow chain", [](std::size_t n) { return "SELECT j" + repeat("->'a'", n) + " FROM t"; }},
        {"nested DO blocks",
         [](std::size_t n) { return "DO $$BEGIN " + repeat("BEGIN ", n) + "PERFORM 1;" + repeat(" END;", n) + " END$$"; }},
        {"DO with a plus chain", [](std::size_t n) { return "DO $$BEGIN PERFORM 1" + repeat("+1", n) + "; END$$"; }},
    };
    return shapes;
}

}  // namespace pgrail::sql::testing
