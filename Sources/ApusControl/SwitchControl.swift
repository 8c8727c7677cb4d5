/// apus-netback's control socket: ports of Dom0's switch come and go here.
public enum SwitchControl {
    public enum Command: ControlCommand {
        /// A vhost-user-net port listening on `socket`.
        case addPort(name: String, socket: String)
        case removePort(name: String)
        /// One port's counters (``PortStats``).
        case portStats(name: String)
        /// Every port's name (``Ports``).
        case ports
        /// The learned forwarding table (``ForwardingTable``).
        case forwardingTable

        public static let usage = "add-port NAME SOCKET, remove-port NAME, port-stats NAME, ports, fdb"

        public init(words: [String]) throws(ControlError) {
            switch (words.first ?? "", words.count) {
            case ("add-port", 3): self = .addPort(name: words[1], socket: words[2])
            case ("remove-port", 2): self = .removePort(name: words[1])
            case ("port-stats", 2): self = .portStats(name: words[1])
            case ("ports", 1): self = .ports
            case ("fdb", 1): self = .forwardingTable
            default: throw ControlLine.unknown(words, usage: Self.usage)
            }
        }

        public var words: [String] {
            switch self {
            case .addPort(let n, let s): return ["add-port", n, s]
            case .removePort(let n): return ["remove-port", n]
            case .portStats(let n): return ["port-stats", n]
            case .ports: return ["ports"]
            case .forwardingTable: return ["fdb"]
            }
        }
    }

    /// A port's counters from the switch's side: `rx` is what the switch
    /// received from the port (the guest transmitted), `tx` what it sent to it.
    public struct PortStats: ControlReply, Equatable {
        public var port: String = ""
        public var rxBytes: UInt64 = 0, rxPackets: UInt64 = 0
        /// Frames from the port the switch could not take (malformed, oversized).
        public var rxErrors: UInt64 = 0, rxDrops: UInt64 = 0
        public var txBytes: UInt64 = 0, txPackets: UInt64 = 0
        /// Frames for the port that could not be written (bad receive buffers).
        public var txErrors: UInt64 = 0
        /// Frames for the port dropped: not running, or no buffers and the backlog full.
        public var txDrops: UInt64 = 0

        public init() {}

        static let names: [(String, WritableKeyPath<PortStats, UInt64> & Sendable)] = [
            ("rx_bytes", \.rxBytes), ("rx_packets", \.rxPackets), ("rx_errors", \.rxErrors), ("rx_drops", \.rxDrops),
            ("tx_bytes", \.txBytes), ("tx_packets", \.txPackets), ("tx_errors", \.txErrors), ("tx_drops", \.txDrops),
        ]

        public init(fields f: JSONFields) throws(ControlError) {
            port = try f.string("port")
            for (name, key) in Self.names { self[keyPath: key] = try f.count(name) }
        }

        public var fields: [(String, JSONValue)] {
            [("port", .string(port))] + Self.names.map { ($0.0, .integer(Int64(clamping: self[keyPath: $0.1]))) }
        }
    }

    public struct Ports: ControlReply, Equatable {
        public var names: [String]
        public init(names: [String]) { self.names = names }
        public init(fields f: JSONFields) throws(ControlError) {
            names = []
            for v in try f.array("ports") {
                guard case .string(let s) = v else { throw .malformedReply("a port name is not a string") }
                names.append(s)
            }
        }
        public var fields: [(String, JSONValue)] { [("ports", .array(names.map { .string($0) }))] }
    }

    public struct ForwardingEntry: Equatable, Sendable {
        public var mac: String
        public var port: String
        public var ageSeconds: UInt64
        public init(mac: String, port: String, ageSeconds: UInt64) { self.mac = mac; self.port = port; self.ageSeconds = ageSeconds }
    }

    public struct ForwardingTable: ControlReply, Equatable {
        public var entries: [ForwardingEntry]
        public init(entries: [ForwardingEntry]) { self.entries = entries }
        public init(fields f: JSONFields) throws(ControlError) {
            entries = []
            for v in try f.array("fdb") {
                let g = JSONFields(v)
                entries.append(ForwardingEntry(mac: try g.string("mac"), port: try g.string("port"), ageSeconds: try g.count("age")))
            }
        }
        public var fields: [(String, JSONValue)] {
            [("fdb", .array(entries.map { .object([("mac", .string($0.mac)), ("port", .string($0.port)), ("age", .integer(Int64(clamping: $0.ageSeconds)))]) }))]
        }
    }

    public static func addPort(_ name: String, socket: String) -> ControlCall<Acknowledged> { ControlCall(Command.addPort(name: name, socket: socket)) }
    public static func removePort(_ name: String) -> ControlCall<Acknowledged> { ControlCall(Command.removePort(name: name)) }
    public static func portStats(_ name: String) -> ControlCall<PortStats> { ControlCall(Command.portStats(name: name)) }
    public static let ports = ControlCall<Ports>(Command.ports)
    public static let forwardingTable = ControlCall<ForwardingTable>(Command.forwardingTable)
}
