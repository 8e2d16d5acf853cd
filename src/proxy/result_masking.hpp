// Masking results on the wire (a rule's sensitive_columns with action mask) and the messages
// of max_rows: pure functions over message bytes, no I/O. The session builds a ResultPlan from
// each result's RowDescription and rewrites the result's DataRows under it, one at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgrail/protocol/backend.hpp"
#include "pgrail/proxy/result_guard.hpp"

namespace pgrail::proxy {

// The type OIDs masking knows (pg_type.oid, fixed in every PostgreSQL).
namespace type_oid {
inline constexpr std::uint32_t bytea = 17;
inline constexpr std::uint32_t name = 19;
inline constexpr std::uint32_t int8 = 20;
inline constexpr std::uint32_t int2 = 21;
inline constexpr std::uint32_t int4 = 23;
inline constexpr std::uint32_t text = 25;
inline constexpr std::uint32_t json = 114;
inline constexpr std::uint32_t bpchar = 1042;
inline constexpr std::uint32_t varchar = 1043;
inline constexpr std::uint32_t uuid = 2950;
inline constexpr std::uint32_t jsonb = 3802;
}  // namespace type_oid

// HMAC-SHA-256 under one key, with the key's inner and outer digest states computed once (a
// result hashes every row's value: OpenSSL's one-shot HMAC() would set the key up per value).
class Hmac {
public:
    explicit Hmac(std::string_view key);
    ~Hmac();
    Hmac(const Hmac&) = delete;
    Hmac& operator=(const Hmac&) = delete;
    // The 32-byte MAC of `data`; false when OpenSSL failed (then the value is masked as NULL).
    [[nodiscard]] bool mac(std::string_view data, unsigned char (&out)[32]) const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

// One masked column of a result.
struct MaskedField {
    std::uint16_t index = 0;  // the field's position in the row
    policy::MaskMethod method = policy::MaskMethod::null;
    std::uint32_t type = 0;   // the type OID RowDescription gives
    std::int16_t format = 0;  // 0 text, 1 binary
    std::string constant;     // MaskMethod::constant
};

// What to do to one result's rows, from its RowDescription.
struct ResultPlan {
    std::uint16_t field_count = 0;
    std::vector<MaskedField> fields;            // in field order
    std::vector<std::string> backstop_columns;  // MaskedColumn::backstop columns among them
    std::shared_ptr<const Hmac> hmac;           // set when a field is hashed
    [[nodiscard]] bool masks() const { return !fields.empty(); }
};

// The plan for a result whose RowDescription has this body (the message without its tag and
// length). nullopt: the message is malformed. `hmac` is reused when given (the session keeps one
// per key), otherwise made from guard.hash_key when a field is hashed.
[[nodiscard]] std::optional<ResultPlan> plan_result(std::string_view row_description_body, const ResultGuard& guard,
                                                    std::shared_ptr<const Hmac> hmac = nullptr);

// A DataRow under a plan: untouched (no masked value is non-NULL: forward the frame as it is),
// rewritten (the new frame is appended to `out`, so that a result's rows leave in one piece) or
// malformed (a field count or length that does not fit the plan or the message; `out` as it was).
enum class RowRewrite : std::uint8_t { untouched, rewritten, malformed };
[[nodiscard]] RowRewrite mask_data_row(std::string_view frame, const ResultPlan& plan, std::string& out);

// The masked bytes of one non-NULL value (without its length word); nullopt: NULL.
[[nodiscard]] std::optional<std::string> mask_value(const MaskedField& field, std::string_view value,
                                                    const Hmac* hmac);

// The portal an Execute body names; nullopt: malformed.
[[nodiscard]] std::optional<std::string_view> execute_portal(std::string_view execute_body);

// The SQLSTATE of an ErrorResponse or NoticeResponse body ("" when it has none or is malformed).
[[nodiscard]] std::string_view error_sqlstate(std::string_view body);

// max_rows' messages: the notice before a cut result's CommandComplete (or CopyDone), and the
// error that replaces the cancel's when the rule refuses a longer result.
void encode_notice(std::string& out, const protocol::ErrorMessage& notice);
[[nodiscard]] protocol::ErrorMessage truncated_notice(std::string_view rule, std::uint64_t limit,
                                                      std::uint64_t rows_not_sent);
[[nodiscard]] protocol::ErrorMessage refused_error(std::string_view rule, std::uint64_t limit);

}  // namespace pgrail::proxy
