//! The ways in: a Multiboot2 header (GRUB, BIOS and UEFI) and a Xen PVH ELF
//! note (`qemu-system-x86_64 -kernel`). Both arrive in 32-bit protected mode
//! with paging off; one trampoline maps the first 4 GiB with 2 MiB pages,
//! enters long mode and calls `kestrel_main`, the boot orchestration's entry
//! (`start.rs` defines it under that link name: the hardware layer names
//! no module above it, as Asterinas' `__ostd_main`).
//!
//! References: Multiboot2 specification 3.1 (header, machine state);
//! Xen `arch/x86/include/public/hvm/start_info.h` and `elfnote.h`
//! (XEN_ELFNOTE_PHYS32_ENTRY = 18); Intel SDM Vol. 3A 10.8.5 (entering
//! IA-32e mode).

use core::arch::global_asm;

/// Size of the boot CPU's stack. A guard page sits below it (left unmapped
/// once the hypervisor's own page tables are live). Boot only: the boot
/// CPU runs guests on a stack of its own (`bootcpu::run_on_own_stack`).
/// Boot measured 29.7 KiB deep (`stacks: ... boot=`, issue 13): 128 KiB
/// keeps more than half free, which boot tests require.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;

unsafe extern "C" {
    /// First byte of the boot CPU's stack guard page.
    pub static __boot_stack_guard: u8;
    /// Top of the boot CPU's stack.
    pub static __boot_stack_top: u8;
    /// TSC at the first instruction of the hypervisor (low, high halves).
    pub static __boot_tsc: u64;
    /// The boot CPU's 64-bit entry with the loader's magic and information
    /// pointer (`start.rs`); never returns.
    fn kestrel_main(magic: u32, info: u64) -> !;
}

global_asm!(
    r#"
    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long 0xe85250d6                  /* magic */
    .long 0                           /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header_start
    .long -(0xe85250d6 + (mb2_header_end - mb2_header_start))
    /* Information request: we need the memory map, modules, command line and
       ACPI RSDP; GRUB supplies them anyway, asking documents the contract. */
    .balign 8
    .short 1, 0
    .long 24
    .long 1, 6, 3, 14
    /* Entry address tag: 32-bit entry point. */
    .balign 8
    .short 3, 0
    .long 12
    .long _start_multiboot2
    /* Module alignment: page-align modules so they can be handed out whole. */
    .balign 8
    .short 6, 0
    .long 8
    /* End tag. */
    .balign 8
    .short 0, 0
    .long 8
mb2_header_end:

    .section .note.Xen, "a"
    .balign 4
    .long 4                           /* name size: "Xen\0" */
    .long 4                           /* descriptor size */
    .long 18                          /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long _start_pvh

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:   .space 4096
boot_pdpt:   .space 4096
boot_pd:     .space 4096 * 4
    .global __boot_stack_guard
__boot_stack_guard: .space 4096
    .space {stack_size}
    .global __boot_stack_top
__boot_stack_top:

    .section .data.boot, "aw"
    .balign 8
    .global __boot_tsc
__boot_tsc: .quad 0
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9b000000ffff          /* 0x08: 64-bit code, accessed */
    .quad 0x00cf93000000ffff          /* 0x10: data, accessed */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .boot.text, "ax"
    .code32
    .global _start_multiboot2
_start_multiboot2:
    /* EAX = 0x36d76289, EBX = physical address of the boot information. */
    mov edi, eax
    mov esi, ebx
    jmp 2f

    .global _start_pvh
_start_pvh:
    /* EBX = physical address of hvm_start_info; EAX is undefined. */
    mov edi, 0x336ec578
    mov esi, ebx

2:  cli
    cld
    rdtsc
    mov [__boot_tsc], eax
    mov [__boot_tsc + 4], edx
    mov esp, offset __boot_stack_top

    /* Long mode and NX are required: CPUID.80000001H:EDX bits 29 and 20. */
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb no_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz no_long_mode
    test edx, 1 << 20
    jz no_long_mode

    /* Identity-map 0..4 GiB with 2 MiB pages (present, writable). */
    mov ebx, edi
    mov edx, esi
    mov edi, offset boot_pml4
    xor eax, eax
    mov ecx, (4096 * 6) / 4
    rep stosd
    mov edi, ebx
    mov esi, edx

    mov eax, offset boot_pdpt
    or eax, 0x3
    mov [boot_pml4], eax
    mov ecx, 0
3:  mov eax, ecx
    shl eax, 12
    add eax, offset boot_pd
    or eax, 0x3
    mov [boot_pdpt + ecx * 8], eax
    inc ecx
    cmp ecx, 4
    jne 3b

    mov ecx, 0
4:  mov eax, ecx
    shl eax, 21
    or eax, 0x83                      /* present, writable, 2 MiB */
    mov [boot_pd + ecx * 8], eax
    mov eax, ecx
    shr eax, 11
    mov [boot_pd + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne 4b

    /* CR4.PAE, CR3, EFER.LME|NXE, CR0.PG|WP (SDM Vol. 3A 10.8.5). */
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, offset boot_pml4
    mov cr3, eax
    mov ebx, edi
    mov ecx, 0xc0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    mov edi, ebx
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    /* jmp far 0x08:long_mode_entry (EA ptr16:32) */
    .byte 0xea
    .long long_mode_entry
    .short 0x08

no_long_mode:
    /* Say why on COM1 (no initialisation: firmware left it usable) and stop. */
    mov esi, offset no_long_mode_msg
5:  lodsb
    test al, al
    jz 6f
    mov dx, 0x3f8
    out dx, al
    jmp 5b
6:  cli
    hlt
    jmp 6b

    .code64
long_mode_entry:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov esp, offset __boot_stack_top
    /* Writes to 32-bit registers zero-extend: RDI = magic, RSI = info. */
    mov edi, edi
    mov esi, esi
    xor ebp, ebp
    call {kmain}
7:  cli
    hlt
    jmp 7b

    .section .rodata.boot, "a"
no_long_mode_msg:
    .asciz "FATAL: this CPU lacks 64-bit long mode or NX; Kestrel cannot run here\r\n"
"#,
    stack_size = const BOOT_STACK_SIZE,
    kmain = sym kestrel_main,
);
