import VirtioSpec

/// What netback adds to the virtio-net constants: frame limits, the header
/// it writes in front of a received frame, and the checks on a transmitted one.
extension VirtioNet {
    /// The largest frame accepted from a guest: no GSO is offered, so frames
    /// are at most the MTU plus the Ethernet header; 64 KiB leaves room for
    /// jumbo MTUs and still bounds what one chain can make the switch copy.
    public static let maxFrame = 65_550
    /// An Ethernet header: destination, source, EtherType.
    public static let minFrame = 14

    /// The header netback writes in front of a received frame: no checksum
    /// or GSO information, `buffers` merged buffers.
    public static func receiveHeader(buffers: UInt16) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: headerSize)
        h[10] = UInt8(truncatingIfNeeded: buffers)
        h[11] = UInt8(truncatingIfNeeded: buffers >> 8)
        return h
    }

    /// `receiveHeader(buffers: 1)`, made once.
    public static let singleBufferHeader = receiveHeader(buffers: 1)

    /// Why a transmitted chain is not a frame the switch forwards.
    public enum FrameError: Error, Equatable, Sendable {
        case writableBuffers
        case shorterThanHeader(UInt64)
        case runt(UInt64)
        case oversized(UInt64)
        /// The driver asked for GSO or checksum offload netback did not offer.
        case offloadNotNegotiated(flags: UInt8, gsoType: UInt8)
    }

    /// Checks a transmitted chain's shape and header: readable length
    /// `readable` (header + frame), `writable` bytes after it, and the
    /// header's flags and gso_type bytes.
    public static func checkTransmit(readable: UInt64, writable: UInt64, flags: UInt8, gsoType: UInt8) throws(FrameError) -> Int {
        guard writable == 0 else { throw .writableBuffers }
        guard readable >= UInt64(headerSize) else { throw .shorterThanHeader(readable) }
        let frame = readable - UInt64(headerSize)
        guard frame >= UInt64(minFrame) else { throw .runt(frame) }
        guard frame <= UInt64(maxFrame) else { throw .oversized(frame) }
        guard flags == 0, gsoType == 0 else { throw .offloadNotNegotiated(flags: flags, gsoType: gsoType) }
        return Int(frame)
    }
}
