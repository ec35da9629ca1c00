// A component whose state a snapshot keeps (Firecracker's Persist, cloud-hypervisor's
// Snapshottable).  Each component writes and reads its own tagged fields; whoever
// walks the components (vmm/device_manager.h) only files each one's bytes under its
// id and knows none of their fields.
#pragma once

#include <string>

#include "base/tlv.h"

namespace kindling {

class Persistent {
public:
    virtual ~Persistent() = default;

    // Names this component's state in a snapshot: unique among the machine's
    // components and the same from one kindling to the next ("serial",
    // "virtio-mmio@0xd0000000").
    virtual std::string persist_id() const = 0;

    // Writes the component's state as TLV fields.  The VM is paused (no vCPU runs).
    // Saving may act on the outside world where a component says so (vsock closes
    // its host connections).
    virtual void save_to(TlvWriter& out) = 0;

    // Reads fields written by save_to() into this freshly built component before any
    // vCPU runs.  A missing, malformed or unknown field, or state this component
    // cannot have, is a DataError "CONTEXT: ..." (CONTEXT is in.context(): the file and
    // the component).
    virtual void restore_from(TlvReader& in) = 0;
};

}  // namespace kindling
