// How a device tells the guest that something happened.  For linux guests this is
// an interrupt line (KVM irqfd); for nano guests it ends a KN_PORT_WAIT.  Devices
// only see this interface (kvmtool's rule: a device never knows its transport or
// the guest kind).
#pragma once

namespace kindling {

class Interrupt {
public:
    virtual ~Interrupt() = default;
    // Edge-triggered: may be called from any thread.
    virtual void trigger() = 0;
};

}  // namespace kindling
