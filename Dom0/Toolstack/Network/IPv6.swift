/// An IPv6 address, as network XML and dnsmasq write it (RFC 4291 text
/// forms in; RFC 5952's canonical form out).
public struct IPv6Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt128
    public init(_ value: UInt128) { self.value = value }

    /// Eight groups of 1-4 hex digits, at most one `::` standing for one or
    /// more zero groups, and an optional dotted quad as the last 32 bits.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        // Split at each "::" (more than one is malformed).
        var halves: [String] = [], current = ""
        var chars = Array(text)[...]
        while let c = chars.popFirst() {
            if c == ":", chars.first == ":" {
                chars.removeFirst()
                halves.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        halves.append(current)
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String, last: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if last, i == parts.count - 1, p.contains(".") {
                    guard let v4 = IPv4Address(String(p)) else { return nil }
                    out += [UInt16(v4.value >> 16), UInt16(v4.value & 0xffff)]
                } else {
                    guard (1...4).contains(p.count), p.allSatisfy(\.isHexDigit), let g = UInt16(p, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        guard let head = groups(halves[0], last: halves.count == 1) else { return nil }
        var all = head
        if halves.count == 2 {
            guard let tail = groups(halves[1], last: true), head.count + tail.count <= 7 else { return nil }
            all += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard all.count == 8 else { return nil }
        value = all.reduce(UInt128(0)) { $0 << 16 | UInt128($1) }
    }

    var groups: [UInt16] { (0..<8).map { UInt16(truncatingIfNeeded: value >> UInt128(112 - 16 * $0)) } }

    /// Lower-case hex, leading zeros dropped, the longest run of two or more
    /// zero groups (the first of equals) written `::`.
    public var description: String {
        let g = groups
        var best = (start: -1, count: 0), i = 0
        while i < 8 {
            guard g[i] == 0 else { i += 1; continue }
            var j = i
            while j < 8, g[j] == 0 { j += 1 }
            if j - i > best.count { best = (i, j - i) }
            i = j
        }
        let hex = g.map { String($0, radix: 16) }
        guard best.count >= 2 else { return hex.joined(separator: ":") }
        return hex[..<best.start].joined(separator: ":") + "::" + hex[(best.start + best.count)...].joined(separator: ":")
    }

    public static func < (a: IPv6Address, b: IPv6Address) -> Bool { a.value < b.value }

    public static func netmask(prefix: Int) -> IPv6Address {
        IPv6Address(prefix == 0 ? 0 : UInt128.max << UInt128(128 - prefix))
    }
}

/// An IPv6 subnet: an address and a prefix length.
public struct IPv6Subnet: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv6Address
    public var prefix: Int
    public init(_ address: IPv6Address, prefix: Int) { self.address = address; self.prefix = prefix }

    public var mask: IPv6Address { .netmask(prefix: prefix) }
    public var network: IPv6Address { IPv6Address(address.value & mask.value) }
    public func contains(_ a: IPv6Address) -> Bool { a.value & mask.value == network.value }
    public func overlaps(_ o: IPv6Subnet) -> Bool { contains(o.network) || o.contains(network) }
    /// `fd00:122::/64`.
    public var description: String { "\(network)/\(prefix)" }
}
