#include "kvm/elf.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

#include "base/error.h"
#include "base/io.h"

namespace kindling {

bool has_elf_magic(const std::string& path) {
    UniqueFd fd = open_file(path, O_RDONLY);
    char m[4] = {};
    return read_full(fd.get(), m, 4, path) == 4 && std::memcmp(m, ELFMAG, SELFMAG) == 0;
}

namespace {

bool in_file(uint64_t off, uint64_t len, size_t file_size) {
    return off <= file_size && len <= file_size - off;
}

void parse_notes(ElfImage& img, uint64_t off, uint64_t len) {
    uint64_t end = off + len;
    while (off + sizeof(Elf64_Nhdr) <= end) {
        Elf64_Nhdr nh;
        std::memcpy(&nh, img.data() + off, sizeof nh);
        uint64_t name_off = off + sizeof nh;
        uint64_t desc_off = name_off + ((nh.n_namesz + 3ull) & ~3ull);
        uint64_t next = desc_off + ((nh.n_descsz + 3ull) & ~3ull);
        if (next > end) throw DataError(img.path + ": malformed ELF note");
        ElfNote n;
        n.type = nh.n_type;
        if (nh.n_namesz > 0)
            n.name.assign(reinterpret_cast<const char*>(img.data() + name_off), nh.n_namesz - 1);
        n.desc.assign(img.data() + desc_off, img.data() + desc_off + nh.n_descsz);
        img.notes.push_back(std::move(n));
        off = next;
    }
}

}  // namespace

ElfImage read_elf(const std::string& path) {
    ElfImage img;
    img.path = path;
    {
        UniqueFd fd = open_file(path, O_RDONLY);
        struct stat st {};
        if (::fstat(fd.get(), &st) < 0) throw_errno(path);
        if (S_ISDIR(st.st_mode)) throw SysError(path, EISDIR);
        if (st.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) throw DataError(path + ": not an ELF file (too short)");
        img.file = Mapping::map(static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0, path);
    }
    struct Bytes {
        const uint8_t* p;
        size_t n;
        const uint8_t* data() const { return p; }
        size_t size() const { return n; }
    } b{img.data(), img.size()};
    if (b.size() < SELFMAG || std::memcmp(b.data(), ELFMAG, SELFMAG) != 0)
        throw DataError(path + ": not an ELF file");
    if (b.size() < sizeof(Elf64_Ehdr)) throw DataError(path + ": truncated ELF header");
    Elf64_Ehdr eh;
    std::memcpy(&eh, b.data(), sizeof eh);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) throw DataError(path + ": not a 64-bit ELF (wrong architecture)");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) throw DataError(path + ": not a little-endian ELF");
    if (eh.e_machine != EM_X86_64)
        throw DataError(path + ": ELF machine " + std::to_string(eh.e_machine) + " is not x86-64 (wrong architecture)");
    if (eh.e_type != ET_EXEC) throw DataError(path + ": not a static executable (ELF type " + std::to_string(eh.e_type) + ")");
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        !in_file(eh.e_phoff, uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr), b.size()))
        throw DataError(path + ": bad program header table");
    img.entry = eh.e_entry;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, b.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD) {
            if (!in_file(ph.p_offset, ph.p_filesz, b.size()) || ph.p_filesz > ph.p_memsz)
                throw DataError(path + ": PT_LOAD segment " + std::to_string(i) + " lies outside the file");
            img.loads.push_back({ph.p_paddr, ph.p_memsz, ph.p_offset, ph.p_filesz});
        } else if (ph.p_type == PT_NOTE) {
            if (!in_file(ph.p_offset, ph.p_filesz, b.size()))
                throw DataError(path + ": PT_NOTE segment " + std::to_string(i) + " lies outside the file");
            parse_notes(img, ph.p_offset, ph.p_filesz);
        }
    }
    if (img.loads.empty()) throw DataError(path + ": no loadable segments");
    return img;
}

}  // namespace kindling
