/* Entry point of a nano guest (kindling-nano(7)): 64-bit, CPL 3, IOPL 3,
 * rdi = boot info, rsp = boot_info.stack_top, no IDT, no interrupts. */
#include "internal.h"

/* The note that marks this ELF as a nano image (nano_abi.h: name "kindling", type
 * KN_ELF_NOTE_TYPE, descriptor = the ABI version); the linker script puts it in a
 * PT_NOTE segment. */
struct kindling_note {
    uint32_t namesz, descsz, type;
    char name[12]; /* "kindling\0" padded to 4 bytes */
    uint32_t desc;
};
__attribute__((section(".note.kindling"), used, aligned(4))) static const struct kindling_note note = {
    sizeof(KN_ELF_NOTE_NAME), 4, KN_ELF_NOTE_TYPE, KN_ELF_NOTE_NAME, KN_BOOT_VERSION};

__asm__(".section .text.start, \"ax\"\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    andq $-16, %rsp\n"
        "    xorl %ebp, %ebp\n"
        "    call nano_runtime_start\n"
        "    ud2\n"
        ".size _start, . - _start\n"
        ".previous\n");

extern char __bss_start[], __bss_end[];
void nano_runtime_main(void) __attribute__((noreturn));

const struct kn_boot_info* kn_boot;

__attribute__((noreturn, used)) void nano_runtime_start(const struct kn_boot_info* bi) {
    if (bi->magic != KN_BOOT_MAGIC || bi->version != KN_BOOT_VERSION) {
        /* Not started by a VMM that speaks our ABI: nothing below is safe. */
        for (;;) outl(KN_PORT_EXIT, 70);
    }
    /* Fresh VM memory is zero already, but a loader that copies only file bytes
     * over reused memory would leave junk. */
    memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
    kn_boot = bi;
    nano_runtime_main();
}
