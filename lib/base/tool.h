// The one place where a tool turns an exception into an error line and exit code.
#pragma once

#include <functional>

namespace kindling {

inline constexpr const char* kVersion = "0.1.0";

// Runs body(); kindling::Error -> "TOOL: error: <what>" and its exit code;
// std::bad_alloc -> 71; any other exception -> 70.
int run_tool(const char* tool_name, const std::function<int()>& body);

}  // namespace kindling
