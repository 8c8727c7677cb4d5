/// A guest-physical address. There is deliberately no `+`: arithmetic on
/// addresses a guest controls goes through ``checkedAdd(_:)``.
public struct GuestAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The raw 64-bit guest-physical address.
    public let raw: UInt64

    /// Wraps a raw guest-physical address.
    public init(_ raw: UInt64) { self.raw = raw }

    /// `self + offset`, or nil on overflow.
    public func checkedAdd(_ offset: UInt64) -> GuestAddress? {
        let (r, o) = raw.addingReportingOverflow(offset)
        return o ? nil : GuestAddress(r)
    }

    /// `self - base` if `self >= base`, else nil.
    public func offset(from base: GuestAddress) -> UInt64? {
        raw >= base.raw ? raw - base.raw : nil
    }

    /// Rounds down to a multiple of `alignment` (a power of two).
    public func alignedDown(to alignment: UInt64) -> GuestAddress {
        GuestAddress(raw & ~(alignment - 1))
    }

    /// Rounds up to a multiple of `alignment` (a power of two), or nil on overflow.
    public func alignedUp(to alignment: UInt64) -> GuestAddress? {
        guard let r = checkedAdd(alignment - 1) else { return nil }
        return r.alignedDown(to: alignment)
    }

    /// Whether the address is a multiple of `alignment` (a power of two).
    public func isAligned(to alignment: UInt64) -> Bool { raw & (alignment - 1) == 0 }

    public static func < (a: GuestAddress, b: GuestAddress) -> Bool { a.raw < b.raw }

    public var description: String { "0x" + String(raw, radix: 16) }
}

/// Errors from guest memory access. Every one of them can be caused by a
/// guest (a bad descriptor address), so they are values, never traps.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `[address, address+length)` is not entirely inside one RAM region.
    case outOfRange(address: GuestAddress, length: UInt64)
    /// `address + length` overflows 64 bits.
    case overflow(address: GuestAddress, length: UInt64)
    /// The regions given to ``GuestMemory/init(regions:)`` overlap or are empty.
    case invalidLayout(String)
    /// A system call failed while creating or mapping memory.
    case system(String)

    public var description: String {
        switch self {
        case .outOfRange(let a, let l): return "guest range [\(a), +\(l)) is outside guest RAM"
        case .overflow(let a, let l): return "guest range [\(a), +\(l)) overflows"
        case .invalidLayout(let s): return "invalid guest memory layout: \(s)"
        case .system(let s): return s
        }
    }
}
