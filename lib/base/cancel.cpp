#include "base/cancel.h"

#include <signal.h>

#include <cstring>
#include <string>

#include "base/error.h"

namespace kindling {

namespace {
volatile sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }
}  // namespace

void install_cancel_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &sa, nullptr);
}

void throw_if_cancelled() {
    if (int s = g_signal) throw Error(std::string("interrupted by ") + strsignal(s), 128 + s);
}

}  // namespace kindling
