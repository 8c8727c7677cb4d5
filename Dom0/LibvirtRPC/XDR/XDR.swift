/// XDR (RFC 4506) as rpcgen produces it for libvirt's protocol: big-endian,
/// 4-byte aligned; char and short travel as full ints.
public struct XDRWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}

    public mutating func int(_ v: Int32) { uint(UInt32(bitPattern: v)) }
    public mutating func uint(_ v: UInt32) {
        bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
    public mutating func hyper(_ v: Int64) { uhyper(UInt64(bitPattern: v)) }
    public mutating func uhyper(_ v: UInt64) { uint(UInt32(v >> 32)); uint(UInt32(v & 0xFFFF_FFFF)) }
    public mutating func bool(_ v: Bool) { int(v ? 1 : 0) }
    public mutating func double(_ v: Double) { uhyper(v.bitPattern) }

    /// Variable-length opaque: count, bytes, padding.
    public mutating func opaque(_ b: [UInt8]) {
        uint(UInt32(b.count))
        fixedOpaque(b)
    }

    /// Fixed-length opaque: bytes and padding.
    public mutating func fixedOpaque(_ b: [UInt8]) {
        bytes += b
        let pad = (4 - b.count % 4) % 4
        bytes += [UInt8](repeating: 0, count: pad)
    }

    /// A string<N> (remote_nonnull_string).
    public mutating func string(_ s: String) { opaque(Array(s.utf8)) }

    /// An optional string (remote_string): 0, or 1 then the string.
    public mutating func optionalString(_ s: String?) {
        if let s { int(1); string(s) } else { int(0) }
    }

    public mutating func append(_ other: XDRWriter) { bytes += other.bytes }
}

/// Decoding failed: a truncated or malformed payload from a client.
public struct XDRError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Reads XDR from bytes a client sent; every length is bounded.
public struct XDRReader: Sendable {
    let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    mutating func take(_ n: Int) throws(XDRError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw XDRError(message: "payload truncated") }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    public mutating func uint() throws(XDRError) -> UInt32 {
        let b = try take(4)
        let i = b.startIndex
        return UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
    public mutating func int() throws(XDRError) -> Int32 { Int32(bitPattern: try uint()) }
    public mutating func uhyper() throws(XDRError) -> UInt64 { UInt64(try uint()) << 32 | UInt64(try uint()) }
    public mutating func hyper() throws(XDRError) -> Int64 { Int64(bitPattern: try uhyper()) }
    public mutating func bool() throws(XDRError) -> Bool { try int() != 0 }

    public mutating func opaque(max: Int) throws(XDRError) -> [UInt8] {
        let n = Int(try uint())
        guard n <= max else { throw XDRError(message: "opaque of \(n) bytes exceeds \(max)") }
        return try fixedOpaque(n)
    }

    public mutating func fixedOpaque(_ n: Int) throws(XDRError) -> [UInt8] {
        let data = Array(try take(n))
        _ = try take((4 - n % 4) % 4)
        return data
    }

    /// remote_nonnull_string (at most 4 MiB, as libvirt's REMOTE_STRING_MAX).
    public mutating func string(max: Int = 4 << 20) throws(XDRError) -> String {
        let b = try opaque(max: max)
        guard let s = String(validating: b, as: UTF8.self) else { throw XDRError(message: "string is not valid UTF-8") }
        return s
    }

    /// remote_string.
    public mutating func optionalString() throws(XDRError) -> String? {
        switch try uint() {
        case 0: return nil
        case 1: return try string()
        case let v: throw XDRError(message: "bad optional discriminant \(v)")
        }
    }
}
