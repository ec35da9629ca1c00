#include "base/json_depth.h"

#include <string>

#include "base/error.h"

namespace kindling {

void check_json_depth(std::string_view text, std::string_view what, size_t max_depth) {
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;  // the escaped character, '"' included
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                throw DataError(std::string(what) + ": JSON nested deeper than " + std::to_string(max_depth) +
                                " levels (at byte " + std::to_string(i) + ")");
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
}

}  // namespace kindling
