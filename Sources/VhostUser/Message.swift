import ApusSys

/// vhost-user request codes (QEMU docs/interop/vhost-user.rst, "Front-end
/// message types").
public enum VhostUserRequest: UInt32, Sendable, CaseIterable {
    case getFeatures = 1
    case setFeatures = 2
    case setOwner = 3
    case resetOwner = 4
    case setMemTable = 5
    case setLogBase = 6
    case setLogFD = 7
    case setVringNum = 8
    case setVringAddr = 9
    case setVringBase = 10
    case getVringBase = 11
    case setVringKick = 12
    case setVringCall = 13
    case setVringErr = 14
    case getProtocolFeatures = 15
    case setProtocolFeatures = 16
    case getQueueNum = 17
    case setVringEnable = 18
    case sendRARP = 19
    case netSetMTU = 20
    case setBackendReqFD = 21
    case iotlbMessage = 22
    case setVringEndian = 23
    case getConfig = 24
    case setConfig = 25
    case getInflightFD = 31
    case setInflightFD = 32
    case resetDevice = 34
    case getMaxMemSlots = 36
    case addMemReg = 37
    case remMemReg = 38
    case setStatus = 39
    case getStatus = 40
}

/// Protocol feature bits (VHOST_USER_PROTOCOL_F_*).
public struct VhostUserProtocolFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let multiQueue = VhostUserProtocolFeatures(rawValue: 1 << 0)
    public static let logSharedMemory = VhostUserProtocolFeatures(rawValue: 1 << 1)
    public static let rarp = VhostUserProtocolFeatures(rawValue: 1 << 2)
    public static let replyAck = VhostUserProtocolFeatures(rawValue: 1 << 3)
    public static let mtu = VhostUserProtocolFeatures(rawValue: 1 << 4)
    public static let backendRequest = VhostUserProtocolFeatures(rawValue: 1 << 5)
    public static let config = VhostUserProtocolFeatures(rawValue: 1 << 9)
    public static let inflightSharedMemory = VhostUserProtocolFeatures(rawValue: 1 << 12)
    public static let resetDevice = VhostUserProtocolFeatures(rawValue: 1 << 13)
    public static let configureMemSlots = VhostUserProtocolFeatures(rawValue: 1 << 15)
    public static let status = VhostUserProtocolFeatures(rawValue: 1 << 16)
}

/// VHOST_USER_F_PROTOCOL_FEATURES: the virtio feature bit (30) that says
/// GET/SET_PROTOCOL_FEATURES are supported.
public let vhostUserProtocolFeaturesBit: UInt64 = 1 << 30

/// Errors of the vhost-user layer. Malformed input from a peer is an error
/// value that ends that session, never a crash.
public enum VhostUserError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedRequest(UInt32)
    case peerClosed
    case io(Errno)
    case protocolViolation(String)
    case backendFailed(request: VhostUserRequest, code: UInt64)

    public var description: String {
        switch self {
        case .malformed(let s): return "malformed vhost-user message: \(s)"
        case .unsupportedRequest(let r): return "unsupported vhost-user request \(r)"
        case .peerClosed: return "vhost-user peer closed the connection"
        case .io(let e): return "vhost-user socket: \(e)"
        case .protocolViolation(let s): return "vhost-user protocol error: \(s)"
        case .backendFailed(let r, let c): return "vhost-user backend failed \(r) (status \(c))"
        }
    }
}

/// One vhost-user message: a 12-byte header, a payload and any descriptors
/// that rode along (SCM_RIGHTS).
public struct VhostUserMessage: Sendable {
    /// Header flag bits.
    public static let version: UInt32 = 0x1
    public static let versionMask: UInt32 = 0x3
    public static let replyFlag: UInt32 = 0x4
    public static let needReplyFlag: UInt32 = 0x8
    /// Header size.
    public static let headerSize = 12
    /// The largest payload accepted; bigger claims are malformed (the
    /// largest real message, a memory table of 8 regions, is 264 bytes;
    /// config space is at most 256 bytes plus its 12-byte header).
    public static let maxPayload = 4096

    public var requestCode: UInt32
    public var flags: UInt32
    public var payload: [UInt8]
    public var fds: [FileDescriptor]

    public init(request: VhostUserRequest, flags: UInt32 = VhostUserMessage.version, payload: [UInt8] = [], fds: [FileDescriptor] = []) {
        self.requestCode = request.rawValue
        self.flags = flags
        self.payload = payload
        self.fds = fds
    }

    public init(requestCode: UInt32, flags: UInt32, payload: [UInt8], fds: [FileDescriptor]) {
        self.requestCode = requestCode
        self.flags = flags
        self.payload = payload
        self.fds = fds
    }

    public var request: VhostUserRequest? { VhostUserRequest(rawValue: requestCode) }
    public var isReply: Bool { flags & Self.replyFlag != 0 }
    public var needsReply: Bool { flags & Self.needReplyFlag != 0 }

    /// Header + payload bytes.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.headerSize + payload.count)
        out += le32(requestCode) + le32(flags) + le32(UInt32(payload.count))
        out += payload
        return out
    }

    /// Parses a header; returns (request, flags, payload size).
    public static func parseHeader(_ b: [UInt8]) throws(VhostUserError) -> (UInt32, UInt32, Int) {
        guard b.count == headerSize else { throw .malformed("short header (\(b.count) bytes)") }
        let request = u32(b, 0), flags = u32(b, 4), size = Int(u32(b, 8))
        guard flags & versionMask == version else { throw .malformed("version \(flags & versionMask)") }
        guard size <= maxPayload else { throw .malformed("payload of \(size) bytes") }
        return (request, flags, size)
    }
}

// MARK: payload codecs

@inline(__always) func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)] }
@inline(__always) func le64(_ v: UInt64) -> [UInt8] { le32(UInt32(truncatingIfNeeded: v)) + le32(UInt32(truncatingIfNeeded: v >> 32)) }
@inline(__always) func u32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}
@inline(__always) func u64(_ b: [UInt8], _ o: Int) -> UInt64 { UInt64(u32(b, o)) | UInt64(u32(b, o + 4)) << 32 }

/// Payload layouts.
public enum VhostUserPayload {
    /// A u64 (features, acks, kick/call index + flags).
    public static func u64(_ v: UInt64) -> [UInt8] { le64(v) }
    public static func parseU64(_ p: [UInt8]) throws(VhostUserError) -> UInt64 {
        guard p.count == 8 else { throw .malformed("expected a u64, got \(p.count) bytes") }
        return VhostUser.u64(p, 0)
    }

    /// Vring state: index + num (SET_VRING_NUM/BASE, GET_VRING_BASE, SET_VRING_ENABLE).
    public static func vringState(index: UInt32, value: UInt32) -> [UInt8] { le32(index) + le32(value) }
    public static func parseVringState(_ p: [UInt8]) throws(VhostUserError) -> (index: UInt32, value: UInt32) {
        guard p.count == 8 else { throw .malformed("vring state of \(p.count) bytes") }
        return (u32(p, 0), u32(p, 4))
    }

    /// SET_VRING_KICK / CALL / ERR: index in bits 0-7, bit 8 = no descriptor (polling).
    public static let noFDFlag: UInt64 = 1 << 8
}

/// SET_VRING_ADDR's payload. Addresses are in the frontend's virtual
/// address space (translated through the memory table's `userspace_addr`).
public struct VringAddress: Equatable, Sendable {
    public var index: UInt32
    public var flags: UInt32
    public var descriptor: UInt64
    public var used: UInt64
    public var avail: UInt64
    public var log: UInt64

    public init(index: UInt32, flags: UInt32 = 0, descriptor: UInt64, used: UInt64, avail: UInt64, log: UInt64 = 0) {
        self.index = index; self.flags = flags; self.descriptor = descriptor; self.used = used; self.avail = avail; self.log = log
    }

    public var encoded: [UInt8] { le32(index) + le32(flags) + le64(descriptor) + le64(used) + le64(avail) + le64(log) }

    public init(parsing p: [UInt8]) throws(VhostUserError) {
        guard p.count == 40 else { throw .malformed("vring address of \(p.count) bytes") }
        self.init(index: u32(p, 0), flags: u32(p, 4), descriptor: u64(p, 8), used: u64(p, 16), avail: u64(p, 24), log: u64(p, 32))
    }
}

/// One memory region of SET_MEM_TABLE.
public struct VhostUserMemoryRegion: Equatable, Sendable {
    public var guestPhysicalAddress: UInt64
    public var size: UInt64
    public var userspaceAddress: UInt64
    public var mmapOffset: UInt64

    public init(guestPhysicalAddress: UInt64, size: UInt64, userspaceAddress: UInt64, mmapOffset: UInt64) {
        self.guestPhysicalAddress = guestPhysicalAddress; self.size = size
        self.userspaceAddress = userspaceAddress; self.mmapOffset = mmapOffset
    }

    public var encoded: [UInt8] { le64(guestPhysicalAddress) + le64(size) + le64(userspaceAddress) + le64(mmapOffset) }
}

/// SET_MEM_TABLE's payload: up to 8 regions, one descriptor each.
public struct VhostUserMemoryTable: Equatable, Sendable {
    public static let maxRegions = 8
    public var regions: [VhostUserMemoryRegion]

    public init(regions: [VhostUserMemoryRegion]) { self.regions = regions }

    public var encoded: [UInt8] { le32(UInt32(regions.count)) + le32(0) + regions.flatMap(\.encoded) }

    public init(parsing p: [UInt8]) throws(VhostUserError) {
        guard p.count >= 8 else { throw .malformed("memory table of \(p.count) bytes") }
        let n = Int(u32(p, 0))
        guard n >= 1, n <= Self.maxRegions else { throw .malformed("memory table with \(n) regions") }
        guard p.count == 8 + 32 * n else { throw .malformed("memory table of \(n) regions in \(p.count) bytes") }
        regions = (0..<n).map { i in
            let o = 8 + 32 * i
            return VhostUserMemoryRegion(guestPhysicalAddress: u64(p, o), size: u64(p, o + 8),
                                         userspaceAddress: u64(p, o + 16), mmapOffset: u64(p, o + 24))
        }
    }
}

/// GET_CONFIG / SET_CONFIG payload: offset, size, flags, then the bytes.
public struct VhostUserConfig: Equatable, Sendable {
    /// The largest device config space vhost-user carries.
    public static let maxSize = 256
    public var offset: UInt32
    public var flags: UInt32
    public var bytes: [UInt8]

    public init(offset: UInt32, flags: UInt32 = 0, bytes: [UInt8]) { self.offset = offset; self.flags = flags; self.bytes = bytes }

    public var encoded: [UInt8] { le32(offset) + le32(UInt32(bytes.count)) + le32(flags) + bytes }

    public init(parsing p: [UInt8]) throws(VhostUserError) {
        guard p.count >= 12 else { throw .malformed("config payload of \(p.count) bytes") }
        let size = Int(u32(p, 4))
        guard size <= Self.maxSize, p.count == 12 + size else { throw .malformed("config payload size \(size) in \(p.count) bytes") }
        self.init(offset: u32(p, 0), flags: u32(p, 8), bytes: Array(p[12...]))
    }
}

/// GET_INFLIGHT_FD / SET_INFLIGHT_FD payload (VhostUserInflight): a C struct
/// of two u64 and two u16, 24 bytes with its tail padding, as QEMU and
/// libvhost-user send and insist on. GET carries the queues' shape from the
/// frontend and comes back with the region's size and offset and its
/// descriptor; SET hands the same descriptor to a (re)started backend.
public struct VhostUserInflight: Equatable, Sendable {
    public static let size = 24
    public var mmapSize: UInt64
    public var mmapOffset: UInt64
    public var queueCount: UInt16
    public var queueSize: UInt16

    public init(mmapSize: UInt64 = 0, mmapOffset: UInt64 = 0, queueCount: UInt16, queueSize: UInt16) {
        self.mmapSize = mmapSize; self.mmapOffset = mmapOffset; self.queueCount = queueCount; self.queueSize = queueSize
    }

    public var encoded: [UInt8] {
        le64(mmapSize) + le64(mmapOffset) + [UInt8(queueCount & 0xFF), UInt8(queueCount >> 8), UInt8(queueSize & 0xFF), UInt8(queueSize >> 8)]
            + [0, 0, 0, 0]
    }

    public init(parsing p: [UInt8]) throws(VhostUserError) {
        guard p.count == Self.size else { throw .malformed("inflight payload of \(p.count) bytes (expected \(Self.size))") }
        self.init(mmapSize: u64(p, 0), mmapOffset: u64(p, 8), queueCount: UInt16(p[16]) | UInt16(p[17]) << 8,
                  queueSize: UInt16(p[18]) | UInt16(p[19]) << 8)
    }
}
