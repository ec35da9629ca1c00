// A snapshot layer on disk: one directory holding
//   snapshot.json  format version, layer id, kind (full/diff), machine and device
//                  config, parent layer (relative path + id), tags, and the size and
//                  CRC32C of every other file (layer_info.h)
//   vmstate        the machine state (vmstate.h)
//   mem            guest memory, exactly the machine's size, guest pages in order
//                  (RAM regions concatenated); sparse: only non-zero pages are written,
//                  the rest are holes
//   mem.bitmap     diff layers only: one bit per 4 KiB page (u64 words, little-endian,
//                  bit i of word w = page 64w+i): the pages this layer holds; `mem`
//                  keeps them at their natural offset (dirty_bitmap.h)
//
// A full layer holds every page.  A diff layer holds the pages dirtied since its
// parent; restore stacks them: function over runtime over base (DESIGN.md
// "Snapshots", layer_stack.h).  Layers are written atomically: into
// DIR.tmp.XXXXXX, fsync'd, then renamed to DIR (layer_writer.h).
//
// This header is the format's description and includes its parts; include it to
// read or write snapshots.
#pragma once

#include "snapshot/dirty_bitmap.h"
#include "snapshot/layer_info.h"
#include "snapshot/layer_stack.h"
#include "snapshot/layer_writer.h"
