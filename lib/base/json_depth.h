// Bounded nesting for JSON read from outside the process (guest answers, HTTP
// bodies, snapshot.json, functions.json).  nlohmann::json parses iteratively but
// dump() and several accessors recurse once per level, so ~100k nested brackets
// overflow the stack of whichever daemon re-serialises them.  A linear pre-scan
// refuses such text before it is parsed.  base knows no JSON library: parse_json
// takes the document type (nlohmann::json) as a template argument.
#pragma once

#include <cstddef>
#include <string_view>

namespace kindling {

// Deepest nesting of arrays and objects accepted; `[]` is depth 1.  Every format
// kindling reads is under 8; Lambda error bodies and Firecracker bodies too.
inline constexpr size_t kMaxJsonDepth = 64;

// Throws DataError "WHAT: JSON nested deeper than 64 levels (at byte N)" if `text`
// opens more than max_depth arrays/objects at once.  Brackets inside strings do
// not count; malformed text is left to the parser.  O(text.size()), no allocation.
void check_json_depth(std::string_view text, std::string_view what, size_t max_depth = kMaxJsonDepth);

// Json::parse(text) after check_json_depth: DataError for too deep, the JSON
// library's own exception for malformed text.
template <class Json>
Json parse_json(std::string_view text, std::string_view what, size_t max_depth = kMaxJsonDepth) {
    check_json_depth(text, what, max_depth);
    return Json::parse(text);
}

}  // namespace kindling
