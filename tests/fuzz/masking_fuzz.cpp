// Fuzzes result masking (src/proxy/result_masking.cpp): a RowDescription body and a DataRow
// frame from the server, under a guard that masks every column of table 1000 with the method
// byte 0 chooses.
//
// Input: byte 0 the method (0 null, 1 constant, 2 hash); bytes 1-2 the RowDescription body's
// length (big-endian); then that body; the rest is the DataRow's body (a frame is built around it).
// Properties: nothing crashes or reads out of bounds; a rewritten row is a well-formed DataRow
// with the plan's field count whose unmasked values are the input's, byte for byte.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../src/proxy/result_masking.hpp"
#include "pgrail/protocol/bytes.hpp"

using namespace pgrail;

namespace {

const proxy::ResultGuard& guard(std::uint8_t method) {
    static const auto make = [](policy::MaskMethod m) {
        proxy::ResultGuard g;
        g.rule = "fuzz";
        g.hash_key = "fuzzing key of sixteen bytes or more";
        for (std::int16_t column = -8; column <= 64; ++column)
            g.columns[policy::ColumnKey{1000, column}] = proxy::MaskedColumn{m, "***", "t.c", column == 3};
        return g;
    };
    static const proxy::ResultGuard guards[] = {make(policy::MaskMethod::null), make(policy::MaskMethod::constant),
                                                make(policy::MaskMethod::hash)};
    return guards[method % 3];
}

// The values of a DataRow frame; false when it is not one.
bool values_of(std::string_view frame, std::vector<std::optional<std::string_view>>& values) {
    if (frame.size() < 7 || frame[0] != 'D' || protocol::read_u32(frame.data() + 1) != frame.size() - 1) return false;
    protocol::ByteReader reader(frame.substr(5));
    const auto count = reader.u16();
    if (!count) return false;
    for (std::uint16_t i = 0; i < *count; ++i) {
        const auto length = reader.i32();
        if (!length) return false;
        if (*length < 0) {
            values.emplace_back(std::nullopt);
        } else {
            const auto bytes = reader.bytes(static_cast<std::size_t>(*length));
            if (!bytes) return false;
            values.emplace_back(*bytes);
        }
    }
    return reader.complete();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t description_size = (static_cast<std::size_t>(data[1]) << 8) | data[2];
    if (3 + description_size > size) return 0;
    const auto description = input.substr(3, description_size);
    const auto row_body = input.substr(3 + description_size);

    const auto plan = proxy::plan_result(description, guard(data[0]));
    if (!plan) return 0;
    std::string frame;
    protocol::MessageWriter(frame, 'D').raw(row_body).finish();
    std::string out = "prefix";
    const auto outcome = proxy::mask_data_row(frame, *plan, out);
    if (outcome != proxy::RowRewrite::rewritten) {
        if (out != "prefix") __builtin_trap();  // untouched or malformed: nothing appended
        return 0;
    }
    std::vector<std::optional<std::string_view>> before;
    std::vector<std::optional<std::string_view>> after;
    if (!values_of(frame, before) || !values_of(std::string_view(out).substr(6), after)) __builtin_trap();
    if (before.size() != plan->field_count || after.size() != before.size()) __builtin_trap();
    std::size_t masked = 0;
    for (std::size_t i = 0; i < before.size(); ++i) {
        const bool is_masked = masked < plan->fields.size() && plan->fields[masked].index == i;
        if (is_masked) {
            ++masked;
            if (!before[i] && after[i]) __builtin_trap();  // NULL stays NULL
        } else if (before[i] != after[i]) {
            __builtin_trap();
        }
    }
    return 0;
}
