/// The Linux zero page (`struct boot_params`, 4 KiB) that a 64-bit boot
/// loader hands the kernel in RSI. Offsets from arch/x86/include/uapi/asm/bootparam.h.
public struct BootParams: Sendable {
    /// The raw page.
    public private(set) var bytes = [UInt8](repeating: 0, count: 4096)

    /// Field offsets.
    public enum Offset {
        public static let acpiRSDPAddress = 0x070
        public static let extRamdiskImage = 0x0C0
        public static let extRamdiskSize = 0x0C4
        public static let extCommandLinePointer = 0x0C8
        public static let e820Entries = 0x1E8
        public static let setupHeader = 0x1F1
        public static let vidMode = 0x1FA
        public static let typeOfLoader = 0x210
        public static let loadFlags = 0x211
        public static let ramdiskImage = 0x218
        public static let ramdiskSize = 0x21C
        public static let heapEndPointer = 0x224
        public static let commandLinePointer = 0x228
        public static let e820Table = 0x2D0
    }
    /// boot_params holds at most 128 e820 entries.
    public static let maxE820Entries = 128

    public init() {}

    /// Copies the kernel's setup header into place (0x1F1..).
    public mutating func setSetupHeader(_ header: ArraySlice<UInt8>) {
        let count = min(header.count, 4096 - Offset.setupHeader)
        for (i, b) in header.prefix(count).enumerated() { bytes[Offset.setupHeader + i] = b }
    }

    mutating func set8(_ offset: Int, _ v: UInt8) { bytes[offset] = v }
    mutating func set16(_ offset: Int, _ v: UInt16) {
        for i in 0..<2 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt16(i))) }
    }
    mutating func set32(_ offset: Int, _ v: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
    mutating func set64(_ offset: Int, _ v: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    /// Reads a little-endian field (for tests and diagnostics).
    public func get(_ offset: Int, size: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<size { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return v
    }

    /// Marks the loader as "undefined" (0xFF) and enables the heap.
    public mutating func setLoader() {
        set8(Offset.typeOfLoader, 0xFF)
        set8(Offset.loadFlags, bytes[Offset.loadFlags] | 0x80) // CAN_USE_HEAP
        set16(Offset.heapEndPointer, 0xFE00)
        set16(Offset.vidMode, 0xFFFF) // "normal"
    }

    /// Points the kernel at its command line.
    public mutating func setCommandLine(address: UInt64) {
        set32(Offset.commandLinePointer, UInt32(truncatingIfNeeded: address))
        set32(Offset.extCommandLinePointer, UInt32(truncatingIfNeeded: address >> 32))
    }

    /// Describes the initrd.
    public mutating func setRamdisk(address: UInt64, size: UInt64) {
        set32(Offset.ramdiskImage, UInt32(truncatingIfNeeded: address))
        set32(Offset.extRamdiskImage, UInt32(truncatingIfNeeded: address >> 32))
        set32(Offset.ramdiskSize, UInt32(truncatingIfNeeded: size))
        set32(Offset.extRamdiskSize, UInt32(truncatingIfNeeded: size >> 32))
    }

    /// Tells the kernel where the RSDP is (boot protocol 2.14+; older kernels scan for it).
    public mutating func setACPIRSDP(_ address: UInt64) {
        set64(Offset.acpiRSDPAddress, address)
    }

    /// Stores the e820 map (at most 128 entries).
    public mutating func setE820(_ entries: [E820Entry]) {
        let n = min(entries.count, Self.maxE820Entries)
        set8(Offset.e820Entries, UInt8(n))
        for (i, e) in entries.prefix(n).enumerated() {
            let o = Offset.e820Table + i * 20
            set64(o, e.address)
            set64(o + 8, e.size)
            set32(o + 16, e.kind.rawValue)
        }
    }
}
