/// The 24-byte header after the length word of every libvirt RPC packet.
public struct PacketHeader: Equatable, Sendable {
    public enum MessageType: Int32, Sendable {
        case call = 0, reply = 1, message = 2, stream = 3, callWithFDs = 4, replyWithFDs = 5, streamHole = 6
    }
    public enum Status: Int32, Sendable { case ok = 0, error = 1, `continue` = 2 }

    public var program: UInt32
    public var version: UInt32
    public var procedure: Int32
    public var type: MessageType
    public var serial: UInt32
    public var status: Status

    public init(program: UInt32, version: UInt32, procedure: Int32, type: MessageType, serial: UInt32, status: Status) {
        self.program = program; self.version = version; self.procedure = procedure
        self.type = type; self.serial = serial; self.status = status
    }

    public static let remoteProgram: UInt32 = 0x2000_8086
    public static let keepaliveProgram: UInt32 = 0x6B65_6570
    /// VIR_NET_MESSAGE_MAX: header plus payload, excluding the length word.
    public static let maxMessage = 33_554_432
    /// Stream data chunk size (libvirtd's legacy payload maximum).
    public static let streamChunk = 262_120
}

/// A whole packet: header and raw payload.
public struct Packet: Equatable, Sendable {
    public var header: PacketHeader
    public var payload: [UInt8]

    public init(header: PacketHeader, payload: [UInt8] = []) {
        self.header = header
        self.payload = payload
    }

    /// Length word, header and payload.
    public func encoded() -> [UInt8] {
        var w = XDRWriter()
        w.uint(UInt32(28 + payload.count))
        w.uint(header.program)
        w.uint(header.version)
        w.int(header.procedure)
        w.int(header.type.rawValue)
        w.uint(header.serial)
        w.int(header.status.rawValue)
        return w.bytes + payload
    }

    /// Parses a packet whose length word was already validated; `bytes`
    /// starts after the length word.
    public static func decode(_ bytes: [UInt8]) throws(XDRError) -> Packet {
        var r = XDRReader(bytes)
        let program = try r.uint(), version = try r.uint(), procedure = try r.int()
        let typeRaw = try r.int(), serial = try r.uint(), statusRaw = try r.int()
        guard let type = PacketHeader.MessageType(rawValue: typeRaw) else { throw XDRError(message: "bad message type \(typeRaw)") }
        guard let status = PacketHeader.Status(rawValue: statusRaw) else { throw XDRError(message: "bad message status \(statusRaw)") }
        return Packet(header: PacketHeader(program: program, version: version, procedure: procedure, type: type, serial: serial, status: status),
                      payload: Array(bytes[24...]))
    }
}
