/*
 * The Apus stub guest kernel: boots in milliseconds under any KVM (including
 * software-assisted ones that cannot run Linux), so management-plane tests can
 * start and stop domains quickly.
 *
 * It prints a banner on COM1, echoes what it receives there, powers off on
 * Ctrl-Alt-Del (i8042) or the ACPI power button, and idles with hlt. Typed
 * commands (ended with Enter) exercise apus-hv's exit paths:
 *   poweroff  ACPI S5 soft-off          reboot  reset via 0xCF9
 *   crash     triple fault              help    list commands
 *   fill      write a pattern over RAM above 16 MiB (a busy guest's memory,
 *             for the save/restore benchmark)
 */
#include <stdint.h>

#define COM1 0x3f8
#define PM1A_EVT 0x600
#define PM1A_CNT 0x604
#define S5_SLEEP_TYPE 5

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static void putc_serial(char c) {
    while (!(inb(COM1 + 5) & 0x20)) { }
    outb(COM1, (uint8_t)c);
}

static void puts_serial(const char *s) {
    for (; *s; s++) {
        if (*s == '\n') putc_serial('\r');
        putc_serial(*s);
    }
}

static void put_dec(uint64_t v) {
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
    puts_serial(&buf[i]);
}

static void power_off(const char *why) {
    puts_serial("stub: powering off (");
    puts_serial(why);
    puts_serial(")\n");
    outw(PM1A_CNT, (uint16_t)((S5_SLEEP_TYPE << 10) | (1 << 13)));
    for (;;) __asm__ volatile("cli; hlt");
}

static void reboot(void) {
    puts_serial("stub: rebooting\n");
    outb(0xcf9, 0x06);
    for (;;) __asm__ volatile("cli; hlt");
}

static void triple_fault(void) {
    puts_serial("stub: triple fault\n");
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } empty = { 0, 0 };
    __asm__ volatile("lidt %0; int3" : : "m"(empty));
    for (;;) __asm__ volatile("cli; hlt");
}

/* IDT */
struct idt_gate {
    uint16_t offset_low, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_high, zero;
} __attribute__((packed));

static struct idt_gate idt[48] __attribute__((aligned(16)));
extern const uint64_t isr_table[48];

static void idt_init(void) {
    for (int i = 0; i < 48; i++) {
        uint64_t a = isr_table[i];
        idt[i].offset_low = (uint16_t)a;
        idt[i].selector = 0x08;
        idt[i].ist = 0;
        idt[i].type_attr = 0x8e; /* present, interrupt gate */
        idt[i].offset_mid = (uint16_t)(a >> 16);
        idt[i].offset_high = (uint32_t)(a >> 32);
        idt[i].zero = 0;
    }
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } d = { sizeof idt - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" : : "m"(d));
}

/* The 8259 pair, remapped to vectors 0x20-0x2f; IRQ 1 (keyboard), 4 (COM1)
 * and 9 (ACPI SCI, level-triggered through ELCR) unmasked. */
static void pic_init(void) {
    outb(0x20, 0x11); outb(0xa0, 0x11);
    outb(0x21, 0x20); outb(0xa1, 0x28);
    outb(0x21, 0x04); outb(0xa1, 0x02);
    outb(0x21, 0x01); outb(0xa1, 0x01);
    outb(0x21, (uint8_t)~((1 << 1) | (1 << 2) | (1 << 4)));
    outb(0xa1, (uint8_t)~(1 << 1));
    outb(0x4d1, 0x02);
}

static void serial_init(void) {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80); outb(COM1 + 0, 0x01); outb(COM1 + 1, 0x00); /* 115200 */
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0x07);
    outb(COM1 + 4, 0x0b);
    outb(COM1 + 1, 0x01); /* receive-data interrupt */
}

/* Console line editing. */
static char line[64];
static unsigned line_len;

static int streq(const char *a, const char *b) {
    while (*a && *a == *b) { a++; b++; }
    return *a == *b;
}

/* The end of RAM below 4 GiB (the identity map's reach), from the E820 map. */
static uint64_t ram_top;

static void fill_ram(void) {
    uint64_t *p = (uint64_t *)(uintptr_t)(16ull << 20), *end = (uint64_t *)(uintptr_t)ram_top;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (; p < end; p++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; *p = x; }
    puts_serial("stub: filled ");
    put_dec(ram_top > (16ull << 20) ? (ram_top - (16ull << 20)) >> 20 : 0);
    puts_serial(" MiB\n");
}

static void run_command(void) {
    line[line_len] = 0;
    if (streq(line, "poweroff")) power_off("command");
    else if (streq(line, "reboot")) reboot();
    else if (streq(line, "crash")) triple_fault();
    else if (streq(line, "help")) puts_serial("stub: commands: poweroff reboot crash fill help\n");
    else if (streq(line, "fill")) fill_ram();
    else if (line_len) { puts_serial("stub: unknown command: "); puts_serial(line); puts_serial("\n"); }
    line_len = 0;
    puts_serial("stub> ");
}

static void serial_irq(void) {
    while (inb(COM1 + 5) & 0x01) {
        char c = (char)inb(COM1);
        if (c == '\r' || c == '\n') {
            puts_serial("\n");
            run_command();
        } else if ((c == 0x7f || c == 0x08) && line_len) {
            line_len--;
            puts_serial("\b \b");
        } else if (c >= ' ' && line_len < sizeof line - 1) {
            line[line_len++] = c;
            putc_serial(c);
        }
    }
}

/* Scancode set 2 (or set 1 if the controller translates): Ctrl-Alt-Del. */
static int ctrl, alt, extended, release;

static void keyboard_irq(void) {
    while (inb(0x64) & 0x01) {
        uint8_t b = inb(0x60);
        if (b == 0xe0) { extended = 1; continue; }
        if (b == 0xf0) { release = 1; continue; }
        int down = !release;
        if (b & 0x80) { down = 0; b &= 0x7f; } /* set 1 break codes */
        if (b == 0x14 || b == 0x1d) ctrl = down;          /* Ctrl (set 2 / set 1) */
        else if (b == 0x11 || b == 0x38) alt = down;      /* Alt */
        else if (extended && (b == 0x71 || b == 0x53) && down && ctrl && alt) power_off("ctrl-alt-del");
        extended = 0;
        release = 0;
    }
}

static void sci_irq(void) {
    uint16_t status = inw(PM1A_EVT);
    if (status & (1 << 8)) {
        outw(PM1A_EVT, 1 << 8); /* acknowledge PWRBTN_STS */
        power_off("power button");
    }
}

void stub_interrupt(uint64_t vector) {
    if (vector < 32) {
        puts_serial("stub: exception ");
        put_dec(vector);
        puts_serial("\n");
        triple_fault();
    }
    unsigned irq = (unsigned)(vector - 32);
    if (irq == 1) keyboard_irq();
    else if (irq == 4) serial_irq();
    else if (irq == 9) sci_irq();
    if (irq >= 8) outb(0xa0, 0x20);
    outb(0x20, 0x20);
}

void stub_main(const uint8_t *boot_params) {
    serial_init();
    puts_serial("\nApus stub kernel: hello from the guest\n");
    const uint8_t *e820_count = boot_params + 0x1e8;
    uint64_t ram = 0;
    for (unsigned i = 0; i < *e820_count && i < 128; i++) {
        const uint8_t *e = boot_params + 0x2d0 + i * 20;
        uint64_t size = *(const uint64_t *)(e + 8);
        uint32_t type = *(const uint32_t *)(e + 16);
        uint64_t base = *(const uint64_t *)e;
        if (type == 1) {
            ram += size;
            if (base + size <= (4ull << 30) && base + size > ram_top) ram_top = base + size;
        }
    }
    puts_serial("stub: RAM ");
    put_dec(ram >> 20);
    puts_serial(" MiB\n");
    idt_init();
    pic_init();
    outw(PM1A_EVT + 2, 1 << 8); /* PWRBTN_EN */
    puts_serial("stub: ready\nstub> ");
    for (;;) __asm__ volatile("sti; hlt");
}
