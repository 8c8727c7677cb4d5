import ApusSys

/// A vhost-user socket: reads and writes whole messages with their
/// descriptors. Blocking; one reader and one writer at a time.
public final class VhostUserConnection: @unchecked Sendable {
    // SAFETY (Sendable): the socket is immutable; callers serialize use.
    public let socket: UnixSocket
    /// The most descriptors one message may carry (SET_MEM_TABLE: 8).
    public static let maxFDs = 8

    public init(socket: UnixSocket) { self.socket = socket }

    /// Connects to a listening backend.
    public static func connect(path: String) throws(VhostUserError) -> VhostUserConnection {
        do {
            return VhostUserConnection(socket: try UnixSocket.connect(path: path))
        } catch {
            throw .io(error.errno)
        }
    }

    public func send(_ message: VhostUserMessage) throws(VhostUserError) {
        do {
            try socket.sendAll(message.encoded(), fds: message.fds)
        } catch {
            throw error == .brokenPipe || error == .connectionReset ? .peerClosed : .io(error)
        }
    }

    /// Reads one message. Descriptors beyond what the request allows, and all
    /// descriptors of a malformed message, are closed here.
    public func receive() throws(VhostUserError) -> VhostUserMessage {
        let header: UnixSocket.Received
        do {
            header = try socket.receiveExactly(VhostUserMessage.headerSize, maxFDs: Self.maxFDs)
        } catch {
            throw error == .connectionReset ? .peerClosed : .io(error)
        }
        let (request, flags, size): (UInt32, UInt32, Int)
        do {
            (request, flags, size) = try VhostUserMessage.parseHeader(header.bytes)
        } catch {
            for f in header.fds { f.close() }
            throw error
        }
        if header.truncated {
            for f in header.fds { f.close() }
            throw .malformed("too many descriptors")
        }
        var payload: [UInt8] = []
        var fds = header.fds
        if size > 0 {
            do {
                let body = try socket.receiveExactly(size, maxFDs: Self.maxFDs)
                payload = body.bytes
                fds += body.fds
            } catch {
                for f in fds { f.close() }
                throw error == .connectionReset ? .peerClosed : .io(error)
            }
        }
        return VhostUserMessage(requestCode: request, flags: flags, payload: payload, fds: fds)
    }

    /// Closes the connection (a blocked receive returns peerClosed).
    public func close() { socket.shutdown() }
}
