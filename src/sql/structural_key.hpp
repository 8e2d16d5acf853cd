// Hash of a parse tree with every location removed: equal for statements that
// differ only in whitespace, comments and keyword case; constants and names count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "json_tree.hpp"

namespace pgrail::sql::detail {

// A 64-bit multiplicative hash (FNV-1a's prime, applied per 8-byte word, with
// a xor-shift per step and a final avalanche) over a canonical, length-prefixed
// encoding of the tree. Accidental collisions among n statements occur with
// probability about n^2 / 2^65 (1e-11 for 20 000 migration statements). It is
// not a cryptographic hash: callers who must exclude crafted collisions compare
// the statements' text as well once the keys match.
// Throws std::length_error beyond `max_depth` levels of JSON.
[[nodiscard]] std::uint64_t structural_key(const JsonNode& tree, std::size_t max_depth);

}  // namespace pgrail::sql::detail
