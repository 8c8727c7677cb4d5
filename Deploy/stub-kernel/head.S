/*
 * Entry points of the stub kernel's protected-mode part, loaded at 1 MiB.
 * +0x000: 32-bit entry (unsupported: halts).  +0x200: 64-bit entry, as the
 * boot protocol defines it: long mode, identity mapping, RSI = boot_params.
 */
    .section .head32, "ax"
    .code32
    .globl _start32
_start32:
    cli
1:  hlt
    jmp 1b

    .section .head64, "ax"
    .code64
    .globl _start64
_start64:
    cli
    lea     stack_top(%rip), %rsp
    /* Our own GDT: 0x08 code, 0x10 data. */
    lgdt    gdt_descriptor(%rip)
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    mov     %ax, %fs
    mov     %ax, %gs
    pushq   $0x08
    lea     1f(%rip), %rax
    pushq   %rax
    lretq
1:  mov     %rsi, %rdi          /* boot_params */
    call    stub_main
2:  cli
    hlt
    jmp 2b

/* Interrupt entry: push the vector, save caller-saved registers, call C. */
    .macro vector n
    .globl isr\n
isr\n:
    pushq   $\n
    jmp     isr_common
    .endm

    .text
isr_common:
    push    %rax
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    mov     72(%rsp), %rdi      /* the vector pushed by the stub */
    cld
    call    stub_interrupt
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rax
    add     $8, %rsp
    iretq

    /* Exceptions 0-31 (those with an error code push one more word; the stub
     * never returns from an exception, so the frame layout does not matter). */
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    vector \n
    .endr
    /* PIC interrupts 0x20-0x2f. */
    .irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    vector \n
    .endr

    .section .rodata
    .globl isr_table
isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad isr\n
    .endr

    .align 16
gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf93000000ffff    /* 0x10: data */
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .section .bss
    .align 16
stack:
    .skip 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
