import ApusSys

/// The frontend (driver-owning) side of vhost-user: apus-hv's virtio
/// devices and the apus-vhost-test harness use it to set up a backend.
public final class VhostUserFrontend: @unchecked Sendable {
    // SAFETY (Sendable): callers serialize requests (one request/reply at a time).
    public let connection: VhostUserConnection
    /// REPLY_ACK was negotiated: requests without their own reply ask for an ack.
    public private(set) var replyAck = false

    public init(connection: VhostUserConnection) { self.connection = connection }

    /// Connects to the backend listening at `path`.
    public convenience init(path: String) throws(VhostUserError) {
        self.init(connection: try VhostUserConnection.connect(path: path))
    }

    /// Sends a request; returns the reply payload for requests that have one.
    @discardableResult
    func request(_ req: VhostUserRequest, _ payload: [UInt8] = [], fds: [FileDescriptor] = [], hasReply: Bool = false) throws(VhostUserError) -> [UInt8] {
        var flags = VhostUserMessage.version
        let wantAck = replyAck && !hasReply
        if wantAck { flags |= VhostUserMessage.needReplyFlag }
        try connection.send(VhostUserMessage(request: req, flags: flags, payload: payload, fds: fds))
        guard hasReply || wantAck else { return [] }
        let reply = try connection.receive()
        for f in reply.fds { f.close() }
        guard reply.isReply, reply.requestCode == req.rawValue else {
            throw .protocolViolation("expected a reply to \(req), got request \(reply.requestCode) flags 0x\(String(reply.flags, radix: 16))")
        }
        if wantAck {
            let status = try VhostUserPayload.parseU64(reply.payload)
            guard status == 0 else { throw .backendFailed(request: req, code: status) }
            return []
        }
        return reply.payload
    }

    public func setOwner() throws(VhostUserError) { try request(.setOwner) }
    public func resetOwner() throws(VhostUserError) { try request(.resetOwner) }

    public func getFeatures() throws(VhostUserError) -> UInt64 {
        try VhostUserPayload.parseU64(try request(.getFeatures, hasReply: true))
    }

    public func setFeatures(_ features: UInt64) throws(VhostUserError) {
        try request(.setFeatures, VhostUserPayload.u64(features))
    }

    public func getProtocolFeatures() throws(VhostUserError) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures(rawValue: try VhostUserPayload.parseU64(try request(.getProtocolFeatures, hasReply: true)))
    }

    /// Sets protocol features; REPLY_ACK applies to the requests after this one.
    public func setProtocolFeatures(_ features: VhostUserProtocolFeatures) throws(VhostUserError) {
        try request(.setProtocolFeatures, VhostUserPayload.u64(features.rawValue))
        replyAck = features.contains(.replyAck)
    }

    public func getQueueNum() throws(VhostUserError) -> UInt64 {
        try VhostUserPayload.parseU64(try request(.getQueueNum, hasReply: true))
    }

    /// Shares guest memory: one descriptor per region.
    public func setMemTable(_ regions: [(VhostUserMemoryRegion, FileDescriptor)]) throws(VhostUserError) {
        guard !regions.isEmpty, regions.count <= VhostUserMemoryTable.maxRegions else {
            throw .protocolViolation("memory table needs 1-8 regions")
        }
        try request(.setMemTable, VhostUserMemoryTable(regions: regions.map(\.0)).encoded, fds: regions.map(\.1))
    }

    public func setVringNum(_ index: UInt32, _ num: UInt16) throws(VhostUserError) {
        try request(.setVringNum, VhostUserPayload.vringState(index: index, value: UInt32(num)))
    }

    public func setVringAddr(_ address: VringAddress) throws(VhostUserError) {
        try request(.setVringAddr, address.encoded)
    }

    public func setVringBase(_ index: UInt32, _ base: UInt16) throws(VhostUserError) {
        try request(.setVringBase, VhostUserPayload.vringState(index: index, value: UInt32(base)))
    }

    /// Stops the ring and returns where it stopped (the next avail index).
    public func getVringBase(_ index: UInt32) throws(VhostUserError) -> UInt16 {
        let (i, value) = try VhostUserPayload.parseVringState(try request(.getVringBase, VhostUserPayload.vringState(index: index, value: 0), hasReply: true))
        guard i == index else { throw .protocolViolation("GET_VRING_BASE answered for ring \(i), asked \(index)") }
        return UInt16(truncatingIfNeeded: value)
    }

    public func setVringKick(_ index: UInt32, _ fd: FileDescriptor?) throws(VhostUserError) {
        try vringFD(.setVringKick, index, fd)
    }

    public func setVringCall(_ index: UInt32, _ fd: FileDescriptor?) throws(VhostUserError) {
        try vringFD(.setVringCall, index, fd)
    }

    public func setVringErr(_ index: UInt32, _ fd: FileDescriptor?) throws(VhostUserError) {
        try vringFD(.setVringErr, index, fd)
    }

    private func vringFD(_ req: VhostUserRequest, _ index: UInt32, _ fd: FileDescriptor?) throws(VhostUserError) {
        var v = UInt64(index & 0xFF)
        if fd == nil { v |= VhostUserPayload.noFDFlag }
        try request(req, VhostUserPayload.u64(v), fds: fd.map { [$0] } ?? [])
    }

    public func setVringEnable(_ index: UInt32, _ enabled: Bool) throws(VhostUserError) {
        try request(.setVringEnable, VhostUserPayload.vringState(index: index, value: enabled ? 1 : 0))
    }

    public func getConfig(offset: UInt32, size: Int) throws(VhostUserError) -> [UInt8] {
        let payload = VhostUserConfig(offset: offset, bytes: [UInt8](repeating: 0, count: size)).encoded
        let reply = try VhostUserConfig(parsing: try request(.getConfig, payload, hasReply: true))
        guard reply.bytes.count == size else { throw .protocolViolation("GET_CONFIG returned \(reply.bytes.count) bytes, asked \(size)") }
        return reply.bytes
    }

    public func setConfig(offset: UInt32, bytes: [UInt8]) throws(VhostUserError) {
        try request(.setConfig, VhostUserConfig(offset: offset, bytes: bytes).encoded)
    }

    public func resetDevice() throws(VhostUserError) { try request(.resetDevice) }

    /// GET_INFLIGHT_FD: asks the backend for an inflight region for
    /// `queueCount` queues of up to `queueSize` entries; returns its shape
    /// and descriptor (the frontend keeps both across backend restarts).
    public func getInflightFD(queueCount: UInt16, queueSize: UInt16) throws(VhostUserError) -> (VhostUserInflight, FileDescriptor) {
        try connection.send(VhostUserMessage(request: .getInflightFD, flags: VhostUserMessage.version,
                                             payload: VhostUserInflight(queueCount: queueCount, queueSize: queueSize).encoded))
        let reply = try connection.receive()
        var fds = reply.fds
        guard reply.isReply, reply.requestCode == VhostUserRequest.getInflightFD.rawValue, fds.count == 1 else {
            for f in fds { f.close() }
            throw .protocolViolation("GET_INFLIGHT_FD answered with request \(reply.requestCode) and \(fds.count) descriptors")
        }
        let fd = fds.removeFirst()
        do {
            return (try VhostUserInflight(parsing: reply.payload), fd)
        } catch {
            fd.close()
            throw error
        }
    }

    /// SET_INFLIGHT_FD: hands the kept region to a (re)started backend,
    /// before its memory table and rings.
    public func setInflightFD(_ shape: VhostUserInflight, _ fd: FileDescriptor) throws(VhostUserError) {
        try request(.setInflightFD, shape.encoded, fds: [fd])
    }

    public func close() { connection.close() }
}
