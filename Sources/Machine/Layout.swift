import GuestMemory

/// The guest-physical memory map of an Apus x86-64 machine.
///
///     0x0000_0500  GDT                    0x0000_7000  boot_params (zero page)
///     0x0000_8ff0  boot stack (grows down) 0x0000_9000  PML4, PDPT, 4 page directories
///     0x0002_0000  kernel command line     0x0009_fc00  EBDA (reserved)
///     0x000e_0000  ACPI tables (reserved)  0x0010_0000  kernel (bzImage protected-mode part)
///     ...          initrd at the top of low RAM
///     0xc000_0000  MMIO gap: virtio-mmio at 0xd000_0000, IOAPIC, LAPIC
///     0x1_0000_0000  RAM above 4 GiB when memory > 3 GiB
public enum Layout {
    /// Global descriptor table.
    public static let gdt: UInt64 = 0x500
    /// Interrupt descriptor table (empty at entry).
    public static let idt: UInt64 = 0x520
    /// The Linux zero page (`struct boot_params`).
    public static let zeroPage: UInt64 = 0x7000
    /// Initial stack pointer.
    public static let bootStack: UInt64 = 0x8FF0
    /// Page-map level 4 of the identity mapping.
    public static let pml4: UInt64 = 0x9000
    /// Page-directory-pointer table.
    public static let pdpt: UInt64 = 0xA000
    /// Four page directories (2 MiB pages) mapping the first 4 GiB.
    public static let pageDirectories: UInt64 = 0xB000
    /// Kernel command line.
    public static let commandLine: UInt64 = 0x20000
    /// Largest command line Apus places (the kernel's own limit may be lower).
    public static let commandLineCapacity = 0x10000
    /// Start of the extended BIOS data area (end of usable low RAM).
    public static let ebdaStart: UInt64 = 0x9FC00
    /// ACPI tables live in the BIOS area, where Linux also scans for the RSDP.
    public static let acpiStart: UInt64 = 0xE0000
    /// End of the BIOS area.
    public static let biosEnd: UInt64 = 0x100000
    /// Where the protected-mode kernel is loaded.
    public static let kernelStart: UInt64 = 0x100000
    /// Start of the 32-bit MMIO hole.
    public static let mmioGapStart: UInt64 = 0xC000_0000
    /// End of the 32-bit MMIO hole (4 GiB).
    public static let mmioGapEnd: UInt64 = 0x1_0000_0000
    /// First virtio-mmio device window; each device takes ``virtioMMIOSize``.
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    /// Size of one virtio-mmio register window.
    public static let virtioMMIOSize: UInt64 = 0x1000
    /// IOAPIC registers.
    public static let ioapic: UInt64 = 0xFEC0_0000
    /// Local APIC registers.
    public static let lapic: UInt64 = 0xFEE0_0000
    /// KVM_SET_TSS_ADDR (three pages, Intel).
    public static let tss: UInt64 = 0xFFFB_D000
    /// KVM_SET_IDENTITY_MAP_ADDR (one page, Intel).
    public static let identityMap: UInt64 = 0xFFFB_C000

    /// RAM ranges for `bytes` of memory: below the MMIO gap, then above 4 GiB.
    public static func ramRanges(bytes: UInt64) -> [(GuestAddress, UInt64)] {
        if bytes <= mmioGapStart { return [(GuestAddress(0), bytes)] }
        return [(GuestAddress(0), mmioGapStart), (GuestAddress(mmioGapEnd), bytes - mmioGapStart)]
    }
}
