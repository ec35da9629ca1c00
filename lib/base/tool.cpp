#include "base/tool.h"

#include <new>
#include <stdexcept>

#include "base/error.h"
#include "base/log.h"

namespace kindling {

int run_tool(const char* tool_name, const std::function<int()>& body) {
    log_init(tool_name, log_level());
    try {
        return body();
    } catch (const Error& e) {
        log_error("%s", e.what());
        return e.exit_code();
    } catch (const std::bad_alloc&) {
        log_error("out of memory");
        return kExitOsErr;
    } catch (const std::exception& e) {
        log_error("internal error: %s", e.what());
        return kExitSoftware;
    }
}

}  // namespace kindling
