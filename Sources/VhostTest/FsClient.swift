import ApusSys
import GuestMemory
import VhostUser
import VirtioDriver
import VirtioSpec
import Virtqueue

/// A virtio-fs driver on top of the harness: FUSE requests on the first
/// request queue, one at a time, with the request and reply buffers in the
/// shared memory, as a guest's virtiofs driver lays them out.
public final class FsClient: @unchecked Sendable {
    // SAFETY (Sendable): driven by one thread.
    public let harness: VhostHarness
    /// From the INIT reply.
    public private(set) var maxWrite: UInt32 = 0
    public private(set) var minor: UInt32 = 0
    private var unique: UInt64 = 0
    /// How long a request may take before the backend counts as gone.
    public var timeoutMilliseconds: Int32 = 10_000
    private let requestArea: GuestAddress
    private let replyArea: GuestAddress
    /// Bytes of each buffer: the largest request is a write of `maxIO` bytes.
    public static let maxIO = 256 << 10
    public static let bufferSize = maxIO + 4096

    /// A FUSE reply: the error (0 or a negative errno) and the payload.
    public struct Reply {
        public let error: Int32
        public let payload: [UInt8]
        public var ok: Bool { error == 0 }
    }

    /// What LOOKUP, MKDIR and CREATE return.
    public struct Entry {
        public let node: UInt64
        public let attr: Attr
    }

    public struct Attr {
        public let ino: UInt64
        public let size: UInt64
        public let mode: UInt32
        public var isDirectory: Bool { mode & Fuse.typeMask == Fuse.typeDirectory }
    }

    public init(socket: String, queueSize: UInt16 = 128) throws {
        harness = try VhostHarness(socketPath: socket, queueSize: queueSize)
        try harness.negotiate(deviceFeatures: 0)
        try harness.shareMemory()
        try harness.startQueues(VirtioFs.firstRequestQueue + 1)
        var alloc = BufferAllocator(start: GuestAddress(VhostHarness.bufferStart), end: VhostHarness.memorySize)
        guard let req = alloc.allocate(UInt64(Self.bufferSize), alignment: 4096),
              let rep = alloc.allocate(UInt64(Self.bufferSize), alignment: 4096) else { throw HarnessError("no room for FUSE buffers") }
        requestArea = req
        replyArea = rep
    }

    var queue: HarnessQueue { harness.queues[VirtioFs.firstRequestQueue] }
    var eventIndex: Bool { harness.ackedFeatures & Virtq.featureEventIndex != 0 }

    // MARK: the wire

    /// Puts `readable` in one device-readable descriptor and a writable one
    /// of `replyCapacity` bytes after it (none when 0), and waits for the
    /// chain to come back: the used length and the bytes written.
    public func exchange(_ readable: [UInt8], replyCapacity: Int) throws -> (usedLength: UInt32, reply: [UInt8]) {
        guard readable.count <= Self.bufferSize, replyCapacity <= Self.bufferSize else { throw HarnessError("request too large for the harness") }
        try harness.memory.write(bytes: readable, at: requestArea)
        var buffers: [DescriptorBuffer] = []
        if !readable.isEmpty { buffers.append(DescriptorBuffer(address: requestArea, length: UInt32(readable.count), isWriteOnly: false)) }
        if replyCapacity > 0 {
            try harness.memory.fill(0, at: replyArea, count: replyCapacity)
            buffers.append(DescriptorBuffer(address: replyArea, length: UInt32(replyCapacity), isWriteOnly: true))
        }
        let q = queue
        let previous = q.driver.availIndex
        guard let head = try q.driver.add(buffers) else { throw HarnessError("request queue full") }
        try q.notify(eventIndex: eventIndex, previousAvail: previous)
        let deadline = Clock.monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while Clock.monotonicNanoseconds() < deadline {
            for u in try q.waitUsed(timeoutMilliseconds: 500) where u.head == head {
                let n = min(Int(u.length), replyCapacity)
                return (u.length, n > 0 ? try harness.memory.readBytes(at: replyArea, count: n) : [])
            }
        }
        throw HarnessError("no reply in \(timeoutMilliseconds) ms")
    }

    /// The request bytes: header (len covering everything), then arguments.
    public func request(_ opcode: UInt32, node: UInt64, _ args: [UInt8], declaredLength: UInt32? = nil) -> (unique: UInt64, bytes: [UInt8]) {
        unique += 1
        var w = LittleEndianBytes()
        w.u32(declaredLength ?? UInt32(Fuse.inHeaderSize + args.count))
        w.u32(opcode)
        w.u64(unique)
        w.u64(node)
        w.u32(0); w.u32(0); w.u32(1); w.u32(0) // uid, gid, pid, padding
        return (unique, w.bytes + args)
    }

    /// Sends one FUSE request and checks the reply's header against it.
    public func call(_ opcode: Fuse.Opcode, node: UInt64, _ args: [UInt8] = [], replyCapacity: Int = 4096) throws -> Reply {
        try call(rawOpcode: opcode.rawValue, node: node, args, replyCapacity: replyCapacity)
    }

    public func call(rawOpcode: UInt32, node: UInt64, _ args: [UInt8], replyCapacity: Int = 4096, declaredLength: UInt32? = nil) throws -> Reply {
        let (u, bytes) = request(rawOpcode, node: node, args, declaredLength: declaredLength)
        let (used, out) = try exchange(bytes, replyCapacity: Fuse.outHeaderSize + replyCapacity)
        return try parseReply(out, usedLength: used, unique: u)
    }

    func parseReply(_ out: [UInt8], usedLength: UInt32, unique u: UInt64) throws -> Reply {
        guard out.count >= Fuse.outHeaderSize else { throw HarnessError("reply of \(usedLength) bytes, shorter than a FUSE header") }
        let len = le32(out, 0), error = Int32(bitPattern: le32(out, 4)), echoed = le64(out, 8)
        guard echoed == u else { throw HarnessError("reply for request \(echoed), expected \(u)") }
        guard len == usedLength, Int(len) <= out.count else { throw HarnessError("reply header says \(len) bytes, used length \(usedLength)") }
        guard error <= 0, error > -4096 else { throw HarnessError("reply error \(error) is not a negative errno") }
        return Reply(error: error, payload: Array(out[Fuse.outHeaderSize..<Int(len)]))
    }

    // MARK: operations

    /// FUSE_INIT: protocol 7.31; returns the backend's major.minor.
    @discardableResult
    public func initialize() throws -> (major: UInt32, minor: UInt32) {
        var w = LittleEndianBytes()
        w.u32(Fuse.kernelMajor); w.u32(Fuse.kernelMinor); w.u32(128 << 10); w.u32(0)
        let r = try call(.initialize, node: 0, w.bytes, replyCapacity: Fuse.initOutSize)
        guard r.ok, r.payload.count >= 24 else { throw HarnessError("INIT failed: error \(r.error), \(r.payload.count) bytes") }
        minor = le32(r.payload, 4)
        maxWrite = le32(r.payload, 20)
        return (le32(r.payload, 0), minor)
    }

    static func name(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    func entry(_ r: Reply, _ what: String) throws -> Entry {
        guard r.ok else { throw FsError(errno: -r.error, what) }
        guard r.payload.count >= Fuse.entryOutSize else { throw HarnessError("\(what): entry reply of \(r.payload.count) bytes") }
        return Entry(node: le64(r.payload, 0), attr: attr(r.payload, at: 40))
    }

    func attr(_ b: [UInt8], at o: Int) -> Attr {
        Attr(ino: le64(b, o), size: le64(b, o + 8), mode: le32(b, o + 60))
    }

    public func lookup(_ parent: UInt64, _ name: String) throws -> Entry {
        try entry(try call(.lookup, node: parent, Self.name(name), replyCapacity: Fuse.entryOutSize), "lookup \(name)")
    }

    public func getattr(_ node: UInt64) throws -> Attr {
        let r = try call(.getattr, node: node, [UInt8](repeating: 0, count: 16), replyCapacity: Fuse.attrOutSize)
        guard r.ok else { throw FsError(errno: -r.error, "getattr \(node)") }
        guard r.payload.count >= Fuse.attrOutSize else { throw HarnessError("getattr reply of \(r.payload.count) bytes") }
        return attr(r.payload, at: 16)
    }

    public func mkdir(_ parent: UInt64, _ name: String, mode: UInt32 = 0o755) throws -> Entry {
        var w = LittleEndianBytes()
        w.u32(mode); w.u32(0o022)
        return try entry(try call(.mkdir, node: parent, w.bytes + Self.name(name), replyCapacity: Fuse.entryOutSize), "mkdir \(name)")
    }

    /// CREATE (exclusive, read-write): the new file and its handle.
    public func create(_ parent: UInt64, _ name: String, mode: UInt32 = 0o644) throws -> (Entry, UInt64) {
        var w = LittleEndianBytes()
        w.u32(Fuse.openReadWrite | Fuse.openCreate | Fuse.openExclusive); w.u32(mode); w.u32(0o022); w.u32(0)
        let r = try call(.create, node: parent, w.bytes + Self.name(name), replyCapacity: Fuse.entryOutSize + Fuse.openOutSize)
        let e = try entry(r, "create \(name)")
        guard r.payload.count >= Fuse.entryOutSize + Fuse.openOutSize else { throw HarnessError("create reply of \(r.payload.count) bytes") }
        return (e, le64(r.payload, Fuse.entryOutSize))
    }

    public func open(_ node: UInt64, flags: UInt32 = Fuse.openReadOnly, directory: Bool = false) throws -> UInt64 {
        var w = LittleEndianBytes()
        w.u32(flags); w.u32(0)
        let r = try call(directory ? .opendir : .open, node: node, w.bytes, replyCapacity: Fuse.openOutSize)
        guard r.ok else { throw FsError(errno: -r.error, "open \(node)") }
        guard r.payload.count >= Fuse.openOutSize else { throw HarnessError("open reply of \(r.payload.count) bytes") }
        return le64(r.payload, 0)
    }

    public func release(_ node: UInt64, _ fh: UInt64, directory: Bool = false) throws {
        var w = LittleEndianBytes()
        w.u64(fh); w.u32(0); w.u32(0); w.u64(0)
        let r = try call(directory ? .releasedir : .release, node: node, w.bytes, replyCapacity: 0)
        guard r.ok else { throw FsError(errno: -r.error, "release \(node)") }
    }

    static func readArgs(_ fh: UInt64, _ offset: UInt64, _ size: UInt32) -> [UInt8] {
        var w = LittleEndianBytes()
        w.u64(fh); w.u64(offset); w.u32(size); w.u32(0); w.u64(0); w.u32(0); w.u32(0)
        return w.bytes
    }

    public func read(_ node: UInt64, _ fh: UInt64, offset: UInt64, size: Int) throws -> [UInt8] {
        let r = try call(.read, node: node, Self.readArgs(fh, offset, UInt32(size)), replyCapacity: size)
        guard r.ok else { throw FsError(errno: -r.error, "read \(node) at \(offset)") }
        return r.payload
    }

    /// Reads a whole file in `maxIO` pieces.
    public func readAll(_ node: UInt64, _ fh: UInt64) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let piece = try read(node, fh, offset: UInt64(out.count), size: Self.maxIO)
            out += piece
            if piece.isEmpty || out.count > 1 << 30 { return out }
        }
    }

    public func write(_ node: UInt64, _ fh: UInt64, offset: UInt64, _ data: [UInt8]) throws -> UInt32 {
        var w = LittleEndianBytes()
        w.u64(fh); w.u64(offset); w.u32(UInt32(data.count)); w.u32(0); w.u64(0); w.u32(0); w.u32(0)
        let r = try call(.write, node: node, w.bytes + data, replyCapacity: Fuse.writeOutSize)
        guard r.ok else { throw FsError(errno: -r.error, "write \(node) at \(offset)") }
        guard r.payload.count >= 4 else { throw HarnessError("write reply of \(r.payload.count) bytes") }
        return le32(r.payload, 0)
    }

    /// Writes `data` from offset 0 in pieces no larger than the backend's max_write.
    public func writeAll(_ node: UInt64, _ fh: UInt64, _ data: [UInt8]) throws {
        let piece = max(4096, min(Self.maxIO, Int(maxWrite == 0 ? 4096 : maxWrite)))
        var at = 0
        while at < data.count {
            let end = min(data.count, at + piece)
            let n = try write(node, fh, offset: UInt64(at), Array(data[at..<end]))
            guard n > 0 else { throw HarnessError("write of \(end - at) bytes wrote 0") }
            at += Int(n)
        }
    }

    public func fsync(_ node: UInt64, _ fh: UInt64) throws {
        var w = LittleEndianBytes()
        w.u64(fh); w.u32(0); w.u32(0)
        let r = try call(.fsync, node: node, w.bytes, replyCapacity: 0)
        guard r.ok else { throw FsError(errno: -r.error, "fsync \(node)") }
    }

    /// The names in a directory (READDIR until an empty reply), "." and ".." left out.
    public func readdir(_ node: UInt64) throws -> [String] {
        let fh = try open(node, directory: true)
        defer { try? release(node, fh, directory: true) }
        var names: [String] = []
        var offset: UInt64 = 0
        for _ in 0..<10_000 {
            let r = try call(.readdir, node: node, Self.readArgs(fh, offset, 64 << 10), replyCapacity: 64 << 10)
            guard r.ok else { throw FsError(errno: -r.error, "readdir \(node)") }
            if r.payload.isEmpty { break }
            var o = 0
            while o + Fuse.direntHeaderSize <= r.payload.count {
                let next = le64(r.payload, o + 8), len = Int(le32(r.payload, o + 16))
                guard o + Fuse.direntHeaderSize + len <= r.payload.count else { throw HarnessError("dirent runs past the reply") }
                let name = String(decoding: r.payload[(o + Fuse.direntHeaderSize)..<(o + Fuse.direntHeaderSize + len)], as: UTF8.self)
                if name != "." && name != ".." { names.append(name) }
                offset = next
                o += (Fuse.direntHeaderSize + len + 7) & ~7
            }
        }
        return names
    }

    public func unlink(_ parent: UInt64, _ name: String, directory: Bool = false) throws {
        let r = try call(directory ? .rmdir : .unlink, node: parent, Self.name(name), replyCapacity: 0)
        guard r.ok else { throw FsError(errno: -r.error, "\(directory ? "rmdir" : "unlink") \(name)") }
    }

    public func rename(_ parent: UInt64, _ old: String, to newParent: UInt64, _ new: String) throws {
        var w = LittleEndianBytes()
        w.u64(newParent)
        let r = try call(.rename, node: parent, w.bytes + Self.name(old) + Self.name(new), replyCapacity: 0)
        guard r.ok else { throw FsError(errno: -r.error, "rename \(old)") }
    }

    /// STATFS: block size and free blocks.
    public func statfs() throws -> (blockSize: UInt32, free: UInt64) {
        let r = try call(.statfs, node: Fuse.rootID, [], replyCapacity: Fuse.statfsOutSize)
        guard r.ok, r.payload.count >= 48 else { throw FsError(errno: -r.error, "statfs") }
        return (le32(r.payload, 40), le64(r.payload, 8))
    }

    /// FORGET has no reply: the backend returns the chain with nothing written.
    public func forget(_ node: UInt64, lookups: UInt64) throws -> UInt32 {
        var w = LittleEndianBytes()
        w.u64(lookups)
        let (_, bytes) = request(Fuse.Opcode.forget.rawValue, node: node, w.bytes)
        return try exchange(bytes, replyCapacity: Fuse.outHeaderSize).usedLength
    }

    public func close() { harness.close() }
}

/// A FUSE error reply, by errno.
public struct FsError: Error, CustomStringConvertible {
    public let errno: Int32
    public let what: String
    public init(errno: Int32, _ what: String) {
        self.errno = errno
        self.what = what
    }
    public var description: String { "\(what): errno \(errno)" }
}

/// Little-endian fields appended to a byte array (FUSE's layout).
struct LittleEndianBytes {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
}

func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
    guard o >= 0, o + 4 <= b.count else { return 0 }
    return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}

func le64(_ b: [UInt8], _ o: Int) -> UInt64 {
    guard o >= 0, o + 8 <= b.count else { return 0 }
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(b[o + i]) << (8 * UInt64(i)) }
    return v
}
