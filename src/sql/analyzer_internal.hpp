// Internals of the analyzer shared with its tests and calibration.
#pragma once

#include <cstddef>
#include <string_view>

#include "deep_stack.hpp"
#include "pgrail/sql/statement.hpp"

namespace pgrail::sql::detail {

// Refuse statements whose nesting bound (see nesting.hpp) exceeds this.
inline constexpr std::size_t max_nesting = 16000;
// Stack budget: a fixed part plus a part per nesting level. Measured (stack
// painting, tests/unit/sql/stack_safety_test.cpp): at most ~1.5 KB per level
// (NOT chains), ~1.2 KB for operator chains, under 1 KB for the rest; the
// budget allows twice the worst. 16000 levels need 49 MB: within a 64 MB worker.
// Sanitizer builds scale both parts (deep_stack.hpp).
inline constexpr std::size_t stack_fixed_bytes = (std::size_t{512} << 10) * instrumented_stack_factor;
inline constexpr std::size_t stack_bytes_per_level = 3072 * instrumented_stack_factor;

[[nodiscard]] constexpr std::size_t stack_needed(std::size_t nesting) {
    return stack_fixed_bytes + nesting * stack_bytes_per_level;
}

// The nesting bound of each statement of `query` (for tests and calibration).
[[nodiscard]] std::size_t max_nesting_bound(std::string_view query, bool plpgsql = false);

// Analyses on the calling thread without the nesting check, always splitting with
// the scanner: only for measuring stack use on a thread whose stack is known to suffice.
[[nodiscard]] Analysis analyze_unchecked(std::string_view query);

// Analyses as analyze() does when its whole-text fast path does not apply: split
// with the scanner, each statement parsed alone (for tests: both paths must agree).
[[nodiscard]] Analysis analyze_split(std::string_view query);

// Whether the calling thread has stack enough to parse `text_bytes` of text
// without bounding its nesting first (the text's length bounds its nesting).
[[nodiscard]] bool whole_text_path_allowed(std::size_t text_bytes);

}  // namespace pgrail::sql::detail
