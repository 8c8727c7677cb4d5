import ApusSys
import CApusSys

/// A 4 KiB page the guest reads device registers from without exiting: the
/// VMM keeps its contents current and KVM maps it read-only (writes still
/// exit to the VMM). Values are little-endian, as the guest reads them.
public final class RegisterPage: @unchecked Sendable {
    // SAFETY (Sendable): the mapping is immutable; stores are single aligned
    // words or byte copies done under the owning device's lock.
    public static let size = 4096
    let mapping: MemoryMapping

    public init() throws(SystemCallError) {
        mapping = try MemoryMapping.map(length: Self.size, shared: false)
    }

    /// Host address of the page (for the KVM memory slot).
    public var hostAddress: UInt64 { UInt64(UInt(bitPattern: mapping.base)) }

    /// Stores a 32-bit register (aligned offsets only; others are ignored).
    public func store32(_ value: UInt32, at offset: Int) {
        guard offset >= 0, offset % 4 == 0, offset + 4 <= Self.size else { return }
        // SAFETY: in bounds and aligned; a release store so a reader never
        // sees a register before the state it summarizes.
        apus_store_release_u32(mapping.base + offset, value.littleEndian)
    }

    /// Copies bytes into the page starting at `offset` (clipped to the page).
    public func store(_ bytes: [UInt8], at offset: Int) {
        guard offset >= 0, offset < Self.size else { return }
        let n = min(bytes.count, Self.size - offset)
        guard n > 0 else { return }
        // SAFETY: the destination range was clipped to the page.
        UnsafeMutableRawBufferPointer(start: mapping.base + offset, count: n).copyBytes(from: bytes.prefix(n))
    }

    /// Reads a 32-bit register back (tests).
    public func load32(at offset: Int) -> UInt32 {
        guard offset >= 0, offset % 4 == 0, offset + 4 <= Self.size else { return 0 }
        // SAFETY: in bounds and aligned.
        return UInt32(littleEndian: apus_load_acquire_u32(mapping.base + offset))
    }
}
