/// The identity mapping of the first 4 GiB with 2 MiB pages that a 64-bit
/// boot protocol entry expects: one PML4, one PDPT, four page directories.
public enum PageTables {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let pageSize: UInt64 = 1 << 7

    /// (guest address, bytes) pairs to write into guest memory.
    public static func identityMap4GiB() -> [(UInt64, [UInt8])] {
        var writes: [(UInt64, [UInt8])] = []
        var pml4 = [UInt64](repeating: 0, count: 512)
        pml4[0] = Layout.pdpt | present | writable
        writes.append((Layout.pml4, bytes(pml4)))
        var pdpt = [UInt64](repeating: 0, count: 512)
        for i in 0..<4 {
            pdpt[i] = (Layout.pageDirectories + UInt64(i) * 0x1000) | present | writable
        }
        writes.append((Layout.pdpt, bytes(pdpt)))
        for i in 0..<4 {
            var pd = [UInt64](repeating: 0, count: 512)
            for j in 0..<512 {
                let physical = UInt64(i) << 30 | UInt64(j) << 21
                pd[j] = physical | present | writable | pageSize
            }
            writes.append((Layout.pageDirectories + UInt64(i) * 0x1000, bytes(pd)))
        }
        return writes
    }

    static func bytes(_ entries: [UInt64]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * 8)
        for e in entries { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: e >> (8 * UInt64(i)))) } }
        return out
    }
}

/// The boot GDT: selectors 0x10 (__BOOT_CS, 64-bit code) and 0x18
/// (__BOOT_DS) as the boot protocol requires, and 0x20 for the TSS.
public enum BootGDT {
    /// Flat 64-bit code segment.
    public static let code64: UInt64 = entry(flags: 0xA09B, base: 0, limit: 0xFFFFF)
    /// Flat data segment.
    public static let data: UInt64 = entry(flags: 0xC093, base: 0, limit: 0xFFFFF)
    /// 32-bit busy TSS.
    public static let tss: UInt64 = entry(flags: 0x808B, base: 0, limit: 0xFFFFF)
    /// The table: null, null, code (0x10), data (0x18), TSS (0x20).
    public static let entries: [UInt64] = [0, 0, code64, data, tss]
    /// Selectors.
    public static let codeSelector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18
    public static let tssSelector: UInt16 = 0x20

    /// Packs a descriptor from access/flag bits (0xF0FF: G, D/B, L, AVL, P, DPL, S, type), base and limit.
    public static func entry(flags: UInt16, base: UInt32, limit: UInt32) -> UInt64 {
        let b = UInt64(base), l = UInt64(limit), f = UInt64(flags)
        return ((b & 0xFF00_0000) << 32) | ((f & 0xF0FF) << 40) | ((l & 0xF_0000) << 32) | ((b & 0x00FF_FFFF) << 16) | (l & 0xFFFF)
    }
}
