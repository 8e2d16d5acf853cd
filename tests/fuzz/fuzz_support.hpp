// Shared by the libFuzzer targets: a property check that fails the run, and the shipped policy.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "pgrail/policy/loader.hpp"

namespace pgrail::fuzz {

// A broken property is a crash to libFuzzer: it saves the input as crash-<sha1>.
#define PGRAIL_FUZZ_CHECK(condition)                                                                 \
    do {                                                                                             \
        if (!(condition)) {                                                                          \
            std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #condition); \
            std::abort();                                                                            \
        }                                                                                            \
    } while (false)

// policies/default.yaml, loaded once: the decisions pgrail makes out of the box.
inline const policy::Policy& default_policy() {
    static const std::shared_ptr<const policy::Policy> loaded =
        policy::load_policy_file(PGRAIL_SOURCE_DIR "/policies/default.yaml");
    return *loaded;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace pgrail::fuzz
