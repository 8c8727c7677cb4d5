/// A MAC address (6 bytes), as a value usable as a dictionary key.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// The first six bytes of `b` (zeros for any it lacks).
    public init(_ b: some Collection<UInt8>) {
        var it = b.makeIterator()
        bytes = (it.next() ?? 0, it.next() ?? 0, it.next() ?? 0, it.next() ?? 0, it.next() ?? 0, it.next() ?? 0)
    }

    /// The six bytes at `offset` in `frame` (the caller checked they exist).
    @inline(__always)
    init(_ frame: [UInt8], at offset: Int) {
        bytes = (frame[offset], frame[offset + 1], frame[offset + 2], frame[offset + 3], frame[offset + 4], frame[offset + 5])
    }

    /// Group (broadcast or multicast) addresses have the low bit of the first byte set.
    public var isGroup: Bool { bytes.0 & 1 != 0 }

    public var description: String {
        [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5]
            .map { let s = String($0, radix: 16); return s.count == 1 ? "0" + s : s }.joined(separator: ":")
    }

    public static func == (a: MACAddress, b: MACAddress) -> Bool {
        a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2
            && a.bytes.3 == b.bytes.3 && a.bytes.4 == b.bytes.4 && a.bytes.5 == b.bytes.5
    }

    /// The six bytes as one integer (one hash round per lookup, not six).
    var packed: UInt64 {
        UInt64(bytes.0) << 40 | UInt64(bytes.1) << 32 | UInt64(bytes.2) << 24
            | UInt64(bytes.3) << 16 | UInt64(bytes.4) << 8 | UInt64(bytes.5)
    }

    public func hash(into h: inout Hasher) { h.combine(packed) }
}

/// A learning Ethernet switch's forwarding decisions (what a Linux bridge
/// does): learn each frame's source MAC on its ingress port, send unicast
/// to the learned port, flood broadcast, multicast and unknown unicast to
/// every other port; entries not refreshed within `ageing` expire.
/// Pure state: no I/O, no clock of its own (callers pass `now`).
public struct L2Switch: Sendable {
    public typealias Port = Int

    struct Entry {
        var port: Port
        var lastSeen: UInt64
    }

    /// Ageing time in nanoseconds (Linux bridge default: 300 s).
    public var ageing: UInt64
    /// Most MACs learned (the table never grows past it; a flood of forged
    /// sources evicts nothing, it is simply not learned).
    public var capacity: Int
    private(set) var table: [MACAddress: Entry] = [:]
    public private(set) var ports: Set<Port> = []

    public init(ageingNanoseconds: UInt64 = 300_000_000_000, capacity: Int = 8192) {
        ageing = ageingNanoseconds
        self.capacity = capacity
    }

    public mutating func addPort(_ p: Port) { ports.insert(p) }

    /// Removes a port and forgets what was learned on it.
    public mutating func removePort(_ p: Port) {
        ports.remove(p)
        table = table.filter { $0.value.port != p }
    }

    /// Where one frame goes.
    public enum Egress: Equatable, Sendable {
        /// Nowhere (a runt, an unknown ingress, or back out of its own port).
        case drop
        /// To the one port its destination was learned on.
        case port(Port)
        /// To every port but the ingress (broadcast, multicast, unknown unicast).
        case flood
    }

    /// Where a frame from `ingress` goes, learning its source on the way;
    /// allocates nothing (the switch thread calls it per frame). Frames
    /// shorter than an Ethernet header go nowhere.
    public mutating func decide(_ frame: [UInt8], from ingress: Port, now: UInt64) -> Egress {
        guard frame.count >= 14, ports.contains(ingress) else { return .drop }
        let destination = MACAddress(frame, at: 0)
        let source = MACAddress(frame, at: 6)
        if !source.isGroup {
            if table[source] != nil || table.count < capacity {
                table[source] = Entry(port: ingress, lastSeen: now)
            }
        }
        if !destination.isGroup, let e = table[destination] {
            if now &- e.lastSeen <= ageing {
                return e.port == ingress ? .drop : .port(e.port)
            }
            table[destination] = nil
        }
        return .flood
    }

    /// The egress ports of `decide` as a sorted list (never the ingress).
    public mutating func forward(_ frame: [UInt8], from ingress: Port, now: UInt64) -> [Port] {
        switch decide(frame, from: ingress, now: now) {
        case .drop: []
        case .port(let p): [p]
        case .flood: ports.filter { $0 != ingress }.sorted()
        }
    }

    /// Drops expired entries (the table is also checked on every lookup).
    public mutating func expire(now: UInt64) {
        table = table.filter { now &- $0.value.lastSeen <= ageing }
    }

    /// The port a MAC was learned on, if the entry is still live.
    public func port(of mac: MACAddress, now: UInt64) -> Port? {
        guard let e = table[mac], now &- e.lastSeen <= ageing else { return nil }
        return e.port
    }

    /// The forwarding database: (MAC, port, age in ns).
    public func entries(now: UInt64) -> [(mac: MACAddress, port: Port, age: UInt64)] {
        table.map { ($0.key, $0.value.port, now &- $0.value.lastSeen) }.sorted { $0.mac.description < $1.mac.description }
    }
}
