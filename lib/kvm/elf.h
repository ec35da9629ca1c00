// Minimal, defensive reader for static x86-64 ELF executables: the loadable
// segments and the notes.  Every offset and size is checked against the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"

namespace kindling {

struct ElfSegment {
    uint64_t paddr = 0;
    uint64_t memsz = 0;
    uint64_t file_offset = 0;
    uint64_t filesz = 0;
};

struct ElfNote {
    std::string name;
    uint32_t type = 0;
    std::vector<uint8_t> desc;
};

struct ElfImage {
    std::string path;
    Mapping file;  // the whole file, mapped read-only (only the pages used are read)
    const uint8_t* data() const { return file.data(); }
    size_t size() const { return file.size(); }
    uint64_t entry = 0;
    std::vector<ElfSegment> loads;
    std::vector<ElfNote> notes;
};

// True if the file starts with the ELF magic (cheap: reads 4 bytes).
bool has_elf_magic(const std::string& path);

// Reads and validates `path`: ELF64, little-endian, x86-64, ET_EXEC, every
// PT_LOAD/PT_NOTE inside the file.  Throws DataError "PATH: <reason>" otherwise.
ElfImage read_elf(const std::string& path);

}  // namespace kindling
