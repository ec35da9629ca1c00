// answer-bench UDS PAYLOAD_FILE [TIMEOUT_S]: the client side of a time-to-first-
// answer measurement (bench/lazy_restore.sh).  Waits for the VMM's hybrid-vsock socket
// to accept (retrying every 100 us), CONNECTs to port 9000, sends one INVOKE with the
// file's bytes, prints the answer as nano_client.py does ("OK body" / "ERR body"),
// then sends EXIT 0 and reads its answer, so the VM stops.  Native so that no interpreter start-up (tens of
// ms here) is inside the figure.  Exit 0 on OK, 1 otherwise.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "vsock_client.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: answer-bench UDS PAYLOAD_FILE [TIMEOUT_S]\n");
        return 64;
    }
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "answer-bench: %s: cannot read\n", argv[2]);
        return 66;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(argc > 3 ? std::atof(argv[3]) : 30);
    bench::VsockClient c;
    while (!c.connect(argv[1], 9000)) {
        if (std::chrono::steady_clock::now() > deadline) {
            std::fprintf(stderr, "answer-bench: %s: no guest answered CONNECT 9000\n", argv[1]);
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    try {
        bool err = false;
        std::string body = c.invoke(ss.str(), &err);
        std::printf("%s %s\n", err ? "ERR" : "OK", body.c_str());
        std::fflush(stdout);
        c.send_raw("EXIT 0\n");
        bool exit_err = false;
        c.answer(&exit_err);  // the guest stops once it has answered
        return err || exit_err ? 1 : 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "answer-bench: %s: %s\n", argv[1], e.what());
        return 1;
    }
}
