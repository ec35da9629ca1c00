// Waiting in a test for something observable (a counter, a state), with a deadline:
// STYLE.md "Synchronisation in tests".  Never a sleep as the synchronisation.
#pragma once

#include <chrono>
#include <thread>

namespace kindling {

// Polls `pred` every millisecond until it holds (true) or `timeout` has passed on the
// steady clock (false: the caller's CHECK fails with its own message).
template <class Predicate>
bool eventually(Predicate pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return pred();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

}  // namespace kindling
