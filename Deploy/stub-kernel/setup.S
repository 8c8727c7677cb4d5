/*
 * The real-mode part of the stub bzImage: a boot sector and one setup
 * sector carrying the Linux boot protocol header (Documentation/arch/x86/
 * boot.rst, protocol 2.15). Nothing here executes under apus-hv, which enters
 * the 64-bit entry point directly; the header tells loaders how to do that.
 */
    .section .setup, "a"
    .code16
    .globl _setup_start
_setup_start:
    cli
1:  hlt
    jmp 1b

    .org 0x1f1
setup_sects:        .byte 1             /* one setup sector after the boot sector */
root_flags:         .word 0
syssize:            .long _syssize      /* protected-mode size in 16-byte units */
ram_size:           .word 0
vid_mode:           .word 0xffff
root_dev:           .word 0
boot_flag:          .word 0xaa55
    /* 0x200: a short jump over the header; its offset sets the header length. */
jump:               .byte 0xeb, header_end - 0x202
header:             .ascii "HdrS"
version:            .word 0x020f
realmode_swtch:     .long 0
start_sys_seg:      .word 0x1000
kernel_version:     .word 0
type_of_loader:     .byte 0
loadflags:          .byte 0x01          /* LOADED_HIGH: protected-mode code at 1 MiB */
setup_move_size:    .word 0
code32_start:       .long 0x100000
ramdisk_image:      .long 0
ramdisk_size:       .long 0
bootsect_kludge:    .long 0
heap_end_ptr:       .word 0
ext_loader_ver:     .byte 0
ext_loader_type:    .byte 0
cmd_line_ptr:       .long 0
initrd_addr_max:    .long 0x7fffffff
kernel_alignment:   .long 0x200000
relocatable_kernel: .byte 0
min_alignment:      .byte 21
xloadflags:         .word 0x0001        /* XLF_KERNEL_64: 64-bit entry at +0x200 */
cmdline_size:       .long 255
hardware_subarch:   .long 0
hardware_subarch_data: .quad 0
payload_offset:     .long 0
payload_length:     .long 0
setup_data:         .quad 0
pref_address:       .quad 0x100000
init_size:          .long _init_size
handover_offset:    .long 0
kernel_info_offset: .long 0
header_end:
    .org 0x400
    .section .note.GNU-stack, "", @progbits
