/// apus-blkback's control socket (`--control PATH`).
public enum BlockBackendControl {
    public enum Command: ControlCommand {
        /// Per-device counters (``Stats``).
        case stats
        /// The image and how it is served (``Info``).
        case info
        /// Grows the disk to `bytes` and updates the capacity the device
        /// reports; the frontend then tells the guest (a configuration-change
        /// interrupt). Shrinking is refused: it would discard guest data.
        case resize(bytes: UInt64)
        /// Takes an internal snapshot of a qcow2 image (`qemu-img snapshot
        /// -l` lists it), dated `seconds` since the epoch, replacing one of
        /// the same name (as QEMU's savevm does). Refused while a ring runs:
        /// the frontend stops them first (apus-hv `save PATH held`).
        case snapshotCreate(name: String, seconds: UInt32)
        /// Deletes an internal snapshot (by ID, else by name), rings stopped too.
        case snapshotDelete(name: String)

        public static let usage = "stats, info, resize BYTES, snapshot-create NAME SECONDS, snapshot-delete NAME"

        public init(words: [String]) throws(ControlError) {
            switch (words.first ?? "", words.count) {
            case ("stats", 1): self = .stats
            case ("info", 1): self = .info
            case ("resize", 2): self = .resize(bytes: try words.controlNumber(1, "BYTES"))
            case ("snapshot-create", 3): self = .snapshotCreate(name: words[1], seconds: try words.controlNumber(2, "SECONDS"))
            case ("snapshot-delete", 2): self = .snapshotDelete(name: words[1])
            default: throw ControlLine.unknown(words, usage: Self.usage)
            }
        }

        public var words: [String] {
            switch self {
            case .stats: return ["stats"]
            case .info: return ["info"]
            case .resize(let b): return ["resize", String(b)]
            case .snapshotCreate(let name, let seconds): return ["snapshot-create", name, String(seconds)]
            case .snapshotDelete(let name): return ["snapshot-delete", name]
            }
        }
    }

    /// Counters, as `virsh domblkstat` reports them (VIR_DOMAIN_BLOCK_STATS_*).
    public struct Stats: ControlReply, Equatable {
        public var readRequests: UInt64 = 0, readBytes: UInt64 = 0, readNanoseconds: UInt64 = 0
        public var writeRequests: UInt64 = 0, writeBytes: UInt64 = 0, writeNanoseconds: UInt64 = 0
        public var flushRequests: UInt64 = 0, flushNanoseconds: UInt64 = 0
        public var discardRequests: UInt64 = 0, writeZeroesRequests: UInt64 = 0
        /// Requests answered IOERR.
        public var errors: UInt64 = 0
        /// Requests answered UNSUPP.
        public var unsupported: UInt64 = 0
        /// Malformed descriptor chains (completed with no status).
        public var malformedChains: UInt64 = 0
        /// Large reads from an image in memory copied by two threads together.
        public var parallelReads: UInt64 = 0

        public init() {}

        static let names: [(String, WritableKeyPath<Stats, UInt64> & Sendable)] = [
            ("rd_req", \.readRequests), ("rd_bytes", \.readBytes), ("rd_total_ns", \.readNanoseconds),
            ("wr_req", \.writeRequests), ("wr_bytes", \.writeBytes), ("wr_total_ns", \.writeNanoseconds),
            ("flush_req", \.flushRequests), ("flush_total_ns", \.flushNanoseconds),
            ("discard_req", \.discardRequests), ("write_zeroes_req", \.writeZeroesRequests),
            ("errs", \.errors), ("unsupported", \.unsupported), ("malformed_chains", \.malformedChains),
            ("parallel_reads", \.parallelReads),
        ]

        public init(fields f: JSONFields) throws(ControlError) {
            for (name, key) in Self.names { self[keyPath: key] = try f.count(name) }
        }

        public var fields: [(String, JSONValue)] {
            Self.names.map { ($0.0, .integer(Int64(clamping: self[keyPath: $0.1]))) }
        }

        /// Sums two devices' counters (a domain's disks together).
        public static func + (a: Stats, b: Stats) -> Stats {
            var r = a
            for (_, key) in names { r[keyPath: key] = a[keyPath: key] &+ b[keyPath: key] }
            return r
        }
    }

    /// The reply to `info` and `resize`.
    public struct Info: ControlReply, Equatable {
        public var image: String
        /// Bytes the guest sees.
        public var capacity: UInt64
        public var readOnly: Bool
        public var queues: Int
        public var direct: Bool
        /// The image lives in memory (tmpfs): its I/O is done on the queues' threads.
        public var inMemory: Bool

        public init(image: String, capacity: UInt64, readOnly: Bool, queues: Int, direct: Bool, inMemory: Bool) {
            self.image = image; self.capacity = capacity; self.readOnly = readOnly; self.queues = queues; self.direct = direct
            self.inMemory = inMemory
        }

        public init(fields f: JSONFields) throws(ControlError) {
            image = try f.string("image")
            capacity = try f.count("size")
            readOnly = try f.bool("readonly")
            queues = Int(try f.int("queues"))
            direct = try f.bool("direct")
            inMemory = try f.bool("in_memory")
        }

        public var fields: [(String, JSONValue)] {
            [("image", .string(image)), ("size", .integer(Int64(clamping: capacity))), ("readonly", .bool(readOnly)),
             ("queues", .integer(Int64(queues))), ("direct", .bool(direct)),
             ("in_memory", .bool(inMemory))]
        }
    }

    /// The reply to `snapshot-create`: the snapshot's ID in the image.
    public struct SnapshotTaken: ControlReply, Equatable {
        public var id: String
        public var name: String
        public init(id: String, name: String) { self.id = id; self.name = name }
        public init(fields f: JSONFields) throws(ControlError) {
            id = try f.string("id")
            name = try f.string("name")
        }
        public var fields: [(String, JSONValue)] { [("id", .string(id)), ("name", .string(name))] }
    }

    public static let stats = ControlCall<Stats>(Command.stats)
    public static func snapshotCreate(_ name: String, seconds: UInt32) -> ControlCall<SnapshotTaken> {
        ControlCall(Command.snapshotCreate(name: name, seconds: seconds))
    }
    public static func snapshotDelete(_ name: String) -> ControlCall<Acknowledged> { ControlCall(Command.snapshotDelete(name: name)) }
    public static let info = ControlCall<Info>(Command.info)
    public static func resize(bytes: UInt64) -> ControlCall<Info> { ControlCall(Command.resize(bytes: bytes)) }
}
