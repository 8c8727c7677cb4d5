import NIOCore

/// Splits the byte stream into libvirt packets. The length word counts
/// itself; anything under 28 bytes or over 32 MiB closes the connection
/// (as libvirt's client does).
public struct PacketDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Packet

    public enum FramingError: Error, Equatable {
        case badLength(UInt32)
        case malformed(String)
    }

    /// The largest message (after the length word) accepted now: a
    /// connection that has not opened yet gets ``maxBeforeOpen``, so a
    /// client that never opens cannot make apusd hold a 32 MiB frame.
    let maxMessage: @Sendable () -> Int

    /// What CONNECT_OPEN and the calls virsh makes before it need.
    public static let maxBeforeOpen = 64 << 10

    public init(maxMessage: @escaping @Sendable () -> Int = { PacketHeader.maxMessage }) { self.maxMessage = maxMessage }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length >= 28, length - 4 <= UInt32(maxMessage()) else { throw FramingError.badLength(length) }
        guard buffer.readableBytes >= Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let bytes = buffer.readBytes(length: Int(length) - 4) else { return .needMoreData }
        do {
            context.fireChannelRead(wrapInboundOut(try Packet.decode(bytes)))
        } catch {
            throw FramingError.malformed(error.message)
        }
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Writes packets with their length word.
public struct PacketEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Packet
    public init() {}
    public func encode(data: Packet, out: inout ByteBuffer) throws {
        out.writeBytes(data.encoded())
    }
}
