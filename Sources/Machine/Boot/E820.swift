/// One BIOS e820 memory-map entry (20 bytes in boot_params).
public struct E820Entry: Equatable, Sendable {
    /// Entry types.
    public enum Kind: UInt32, Sendable {
        /// Usable RAM.
        case ram = 1
        /// Reserved (firmware, ACPI tables in the BIOS area).
        case reserved = 2
        /// ACPI reclaimable.
        case acpi = 3
    }
    /// First byte.
    public var address: UInt64
    /// Length in bytes.
    public var size: UInt64
    /// What the range holds.
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address; self.size = size; self.kind = kind
    }

    /// The e820 map for `memoryBytes` of RAM laid out by ``Layout``.
    public static func map(memoryBytes: UInt64) -> [E820Entry] {
        var entries = [
            E820Entry(address: 0, size: Layout.ebdaStart, kind: .ram),
            E820Entry(address: Layout.ebdaStart, size: 0xA0000 - Layout.ebdaStart, kind: .reserved),
            E820Entry(address: Layout.acpiStart, size: Layout.biosEnd - Layout.acpiStart, kind: .reserved),
        ]
        for (start, size) in Layout.ramRanges(bytes: memoryBytes) {
            if start.raw == 0 {
                if size > Layout.kernelStart {
                    entries.append(E820Entry(address: Layout.kernelStart, size: size - Layout.kernelStart, kind: .ram))
                }
            } else {
                entries.append(E820Entry(address: start.raw, size: size, kind: .ram))
            }
        }
        return entries
    }
}
