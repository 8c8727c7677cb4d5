/// An IPv4 address (host byte order), as network XML and dnsmasq write it.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }

    /// Dotted quad, four decimal parts of 0-255, no leading zeros beyond one digit's worth.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(p), n <= 255 else { return nil }
            v = v << 8 | n
        }
        value = v
    }

    public var description: String { "\(value >> 24).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)" }
    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    /// The netmask of a prefix length.
    public static func netmask(prefix: Int) -> IPv4Address {
        IPv4Address(prefix == 0 ? 0 : UInt32.max << UInt32(32 - prefix))
    }

    /// The prefix length of a contiguous netmask, or nil.
    public var prefixLength: Int? {
        let ones = (~value).leadingZeroBitCount
        guard IPv4Address.netmask(prefix: ones) == self else { return nil }
        return ones
    }
}

/// An IPv4 subnet: an address and a prefix length.
public struct IPv4Subnet: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefix: Int
    public init(_ address: IPv4Address, prefix: Int) { self.address = address; self.prefix = prefix }

    public var mask: IPv4Address { .netmask(prefix: prefix) }
    public var network: IPv4Address { IPv4Address(address.value & mask.value) }
    public var broadcast: IPv4Address { IPv4Address(network.value | ~mask.value) }
    public func contains(_ a: IPv4Address) -> Bool { a.value & mask.value == network.value }
    public func overlaps(_ o: IPv4Subnet) -> Bool { contains(o.network) || o.contains(network) }
    /// `192.168.122.0/24`.
    public var description: String { "\(network)/\(prefix)" }

    /// Parses `A.B.C.D/N` (a route's destination in `ip route` output).
    public init?(cidr: String) {
        let parts = cidr.split(separator: "/")
        guard let a = IPv4Address(String(parts[0])) else { return nil }
        if parts.count == 1 {
            self.init(a, prefix: 32)
        } else if parts.count == 2, let p = Int(parts[1]), (0...32).contains(p) {
            self.init(a, prefix: p)
        } else {
            return nil
        }
    }
}
