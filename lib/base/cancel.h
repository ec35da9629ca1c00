// Cancelling a long-running command cleanly on SIGINT, SIGTERM or SIGHUP: the
// handler only records the signal; the command polls throw_if_cancelled() from its
// progress callback, so workers stop and temp files are removed by the normal
// unwinding, never from a signal handler.
#pragma once

namespace kindling {

void install_cancel_signals();
// Throws Error("interrupted by SIG", 128 + signo) once a cancel signal arrived.
void throw_if_cancelled();

}  // namespace kindling
