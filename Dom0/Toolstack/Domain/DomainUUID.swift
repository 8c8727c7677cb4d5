/// A domain's UUID: 16 bytes, written 8-4-4-4-12 in hex.
public struct DomainUUID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// Parses "6695eb01-f6a4-8304-79aa-97f2502e193f" (dashes optional, as libvirt accepts).
    public init?(_ text: String) {
        var hex: [UInt8] = []
        for c in text.utf8 {
            if c == UInt8(ascii: "-") || c == UInt8(ascii: " ") { continue }
            guard let v = Self.hexValue(c) else { return nil }
            hex.append(v)
        }
        guard hex.count == 32 else { return nil }
        bytes = (0..<16).map { hex[2 * $0] << 4 | hex[2 * $0 + 1] }
        // An all-zero UUID is reserved (Domain-0).
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// A random (version 4) UUID.
    public static func random() -> DomainUUID {
        var generator = SystemRandomNumberGenerator()
        var b = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        return DomainUUID(bytes: b)!
    }

    /// The reserved UUID of Domain-0.
    public static let zero = DomainUUID(bytes: [UInt8](repeating: 0, count: 16))!

    public var description: String {
        let hex = bytes.map { b -> String in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }
        return hex[0..<4].joined() + "-" + hex[4..<6].joined() + "-" + hex[6..<8].joined() + "-" + hex[8..<10].joined() + "-" + hex[10..<16].joined()
    }

    public static func < (a: DomainUUID, b: DomainUUID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
