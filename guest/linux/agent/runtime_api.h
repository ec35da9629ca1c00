// The Lambda Runtime API inside the guest (AWS "Custom runtime API", version
// 2018-06-01) on 127.0.0.1:9001, and the runtime process it serves: an unmodified
// custom runtime `bootstrap` long-polls GET /runtime/invocation/next, then posts
// /response or /error for each invocation, or /init/error when it cannot start.
//
// One invocation runs at a time (a Lambda sandbox serves one request at a time);
// invoke() blocks its caller until the runtime answers, fails, exits or times out,
// and maps each outcome to the answer kinds of the vsock invoke protocol.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/http_server.h"

namespace kindling::agent {

struct RuntimeConfig {
    std::string bootstrap = "/var/task/bootstrap";  // the runtime's executable
    std::string task_root = "/var/task";
    std::string handler;                            // _HANDLER
    std::string function_name = "function";
    std::string function_version = "$LATEST";
    uint64_t memory_mb = 128;
    std::chrono::milliseconds timeout{900000};      // per invocation
    size_t max_response = 6 * 1024 * 1024;          // Lambda's synchronous payload limit
    std::string address = "127.0.0.1:9001";
    std::map<std::string, std::string> environment;  // extra variables for the runtime
};

struct InvokeAnswer {
    bool ok = false;   // true: OK with the response; false: ERR with a Lambda error JSON
    std::string body;
};

class RuntimeApi {
public:
    // `on_first_next` runs once, when the runtime first asks for work: its
    // initialisation is done (the agent reports KN_READY_SERVING there).
    RuntimeApi(RuntimeConfig config, std::function<void()> on_first_next);
    ~RuntimeApi();

    // Starts the HTTP server, runs `before_runtime` (the agent reports
    // KN_READY_RUNTIME there, so a base layer holds the kernel, the agent and its
    // root but no runtime), then starts the runtime process.
    void start(const std::function<void()>& before_runtime = {});

    // Runs one invocation.  Blocks until the runtime answers (OK), reports an error,
    // exits, or the timeout passes (ERR with Lambda's errorType: the runtime's own,
    // Runtime.ExitError, Sandbox.Timedout, Function.ResponseSizeTooLarge,
    // Runtime.InitError).  A runtime that exited or was killed is started again for
    // the next invocation.  Serialised: concurrent callers wait their turn.
    InvokeAnswer invoke(const std::string& payload);

    // The generation of the machine changed (a snapshot restore): the next
    // invocation carries the header Kindling-Restore-Generation with this value.
    void note_restore(uint64_t generation);

    // Call when a child process exited (from the agent's SIGCHLD handling).
    void child_exited(pid_t pid, int status);

    struct Counters {
        uint64_t invokes = 0, errors = 0, timeouts = 0, runtime_starts = 0, runtime_exits = 0;
    };
    Counters counters() const;

private:
    struct Invocation;
    HttpResponse handle(const HttpRequest& req);
    void handle_async(const HttpRequest& req, HttpResponder respond);
    void deliver_locked(HttpResponder respond);
    void finish_locked(InvokeAnswer answer);
    void start_runtime_locked();
    void kill_runtime_locked();

    RuntimeConfig cfg_;
    std::function<void()> on_first_next_;
    std::unique_ptr<HttpServer> server_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::mutex invoke_mu_;  // one invocation at a time
    pid_t runtime_pid_ = -1;
    bool runtime_exited_ = false;
    std::string exit_reason_;
    std::optional<std::string> init_error_;  // the runtime's /init/error body
    std::optional<HttpResponder> parked_next_;
    std::unique_ptr<Invocation> current_;
    bool ready_reported_ = false;
    uint64_t restore_generation_ = 0;
    uint64_t request_seq_ = 0;
    Counters counters_;
};

}  // namespace kindling::agent
