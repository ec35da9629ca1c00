// An invoke as it passes between routerd's parts: the call the Lambda API accepted
// (lambda_api) and the result an invoker produced (invoker, io_thread_invoker).
#pragma once

#include <memory>
#include <string>

#include "route/registry.h"

namespace kindling::route {

// An authenticated invoke of a resolved function version, not yet run.
struct InvokeCall {
    enum Type { kRequestResponse, kEvent } type = kRequestResponse;
    std::shared_ptr<const Registry> registry;  // keeps `function` alive
    const Function* function = nullptr;
    std::string version;
    std::string payload;
    bool log_tail = false;  // X-Amz-Log-Type: Tail
    // Already counted in kindling_routerd_invocations_total (an invoke that waited
    // on the I/O thread and was then handed to a worker).
    bool counted = false;
};

struct InvokeResult {
    enum Kind { kOk, kFunctionError, kThrottled, kServiceError } kind = kServiceError;
    std::string body;     // payload, or error JSON for a function error
    std::string message;  // throttle / service error message
    std::string log;      // Log-Type: Tail: the console tail and the REPORT line
    bool cold = false;
};

}  // namespace kindling::route
