// Location-free hashing of libpg_query JSON parse trees.
#include "structural_key.hpp"

#include <cstring>
#include <stdexcept>
#include <string_view>

namespace pgrail::sql::detail {
namespace {


// FNV-1a's structure over 8-byte words (one multiply per word instead of per
// byte), with a murmur-style finaliser so every input bit reaches every output bit.
class Hasher {
public:
    void bytes(const void* data, std::size_t size) {
        const auto* byte = static_cast<const unsigned char*>(data);
        while (size >= 8) {
            std::uint64_t word = 0;
            std::memcpy(&word, byte, 8);
            mix(word);
            byte += 8;
            size -= 8;
        }
        std::uint64_t tail = 0;
        for (std::size_t index = 0; index < size; ++index) tail |= static_cast<std::uint64_t>(byte[index]) << (8 * index);
        mix(tail ^ (static_cast<std::uint64_t>(size) << 59));
    }
    void tag(char kind) { mix(static_cast<std::uint64_t>(static_cast<unsigned char>(kind)) | 0x100U); }
    void number(std::uint64_t value) { mix(value); }
    void text(std::string_view value) {
        number(value.size());
        bytes(value.data(), value.size());
    }
    std::uint64_t finish() const {
        std::uint64_t mixed = state_;
        mixed ^= mixed >> 33;
        mixed *= 0xff51afd7ed558ccdULL;
        mixed ^= mixed >> 33;
        mixed *= 0xc4ceb9fe1a85ec53ULL;
        mixed ^= mixed >> 33;
        return mixed;
    }

private:
    void mix(std::uint64_t word) {
        state_ ^= word;
        state_ *= 0x100000001b3ULL;
        state_ ^= state_ >> 29;  // a 64-bit multiply only carries upwards: fold high bits back
    }
    std::uint64_t state_ = 0xcbf29ce484222325ULL;
};

bool is_location(std::string_view key) {
    return key == "location" || key == "stmt_location" || key == "stmt_len";
}

void hash(const JsonNode& value, Hasher& hasher, std::size_t depth, std::size_t max_depth) {
    if (depth > max_depth) throw std::length_error("parse tree too deep to hash");
    switch (value.type()) {
    case JsonNode::Type::object:
        hasher.tag('{');
        for (const JsonNode member : value) {
            if (is_location(member.key())) continue;
            hasher.text(member.key());
            hash(member, hasher, depth + 1, max_depth);
        }
        hasher.tag('}');
        break;
    case JsonNode::Type::array:
        hasher.tag('[');
        hasher.number(value.size());
        for (const JsonNode item : value) hash(item, hasher, depth + 1, max_depth);
        break;
    case JsonNode::Type::string:
        hasher.tag('s');
        hasher.text(value.text());
        break;
    case JsonNode::Type::number:
        hasher.tag('d');
        hasher.text(value.text());  // libpg_query prints numbers canonically
        break;
    case JsonNode::Type::boolean:
        hasher.tag(value.boolean() ? 't' : 'f');
        break;
    case JsonNode::Type::null:
        hasher.tag('n');
        break;
    }
}

}  // namespace

std::uint64_t structural_key(const JsonNode& tree, std::size_t max_depth) {
    Hasher hasher;
    hash(tree, hasher, 0, max_depth);
    return hasher.finish();
}

}  // namespace pgrail::sql::detail
