import ApusSys
#if canImport(Glibc)
import Glibc
#endif

/// A control socket: parses each request line into a `Command`, answers it
/// with the handler's typed reply (or its error) as one JSON line. Runs on
/// an ``EventLoop``; the handler runs on the loop's thread, so it must not
/// block (a key held down is a timer, not a sleep).
public final class ControlServer<Command: ControlCommand> {
    public typealias Handler = (Command) throws(ControlError) -> any ControlReply

    private let listener: UnixListener
    private unowned let loop: EventLoop
    private var clients: [Int32: (socket: UnixSocket, buffer: [UInt8])] = [:]
    private let handler: Handler

    /// Listens on `path` (mode 0600 unless given).
    public init(path: String, loop: EventLoop, mode: mode_t = 0o600, handler: @escaping Handler) throws(SystemCallError) {
        listener = try UnixListener(path: path, mode: mode)
        do {
            try listener.fd.setNonBlocking(true)
        } catch {
            throw SystemCallError("fcntl", error)
        }
        self.loop = loop
        self.handler = handler
        try loop.register(listener.fd) { [weak self] _ in self?.accept() }
    }

    /// The reply line for one request line (no newline): what a client sees.
    public func answer(_ line: String) -> String {
        do {
            let words = try ControlLine.words(line)
            let command = try Command(words: words)
            return ControlLine.success(try handler(command))
        } catch {
            return ControlLine.failure(error.description)
        }
    }

    private func accept() {
        while let socket = try? listener.accept() {
            try? socket.fd.setNonBlocking(true)
            let key = socket.fd.rawValue
            clients[key] = (socket, [])
            _ = try? loop.register(socket.fd) { [weak self] _ in self?.read(key) }
        }
    }

    private func drop(_ key: Int32) {
        guard let c = clients.removeValue(forKey: key) else { return }
        loop.unregister(c.socket.fd)
    }

    private func read(_ key: Int32) {
        guard var client = clients[key] else { return }
        let received: UnixSocket.Received
        do {
            received = try client.socket.receive(maxBytes: 4096, maxFDs: 0)
        } catch {
            if error != .wouldBlock { drop(key) }
            return
        }
        if received.bytes.isEmpty {
            drop(key)
            return
        }
        client.buffer += received.bytes
        while let newline = client.buffer.firstIndex(of: UInt8(ascii: "\n")) {
            var end = newline
            if end > 0, client.buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let line = String(decoding: client.buffer[..<end], as: UTF8.self)
            client.buffer.removeSubrange(...newline)
            let reply = answer(line)
            // The socket is non-blocking: send the reply whole, blocking briefly.
            do {
                try client.socket.fd.setNonBlocking(false)
                try client.socket.sendAll(Array((reply + "\n").utf8))
                try client.socket.fd.setNonBlocking(true)
            } catch {
                drop(key)
                return
            }
        }
        if client.buffer.count > ControlLine.maxRequest {
            try? client.socket.sendAll(Array((ControlLine.failure("request line too long") + "\n").utf8))
            drop(key)
            return
        }
        clients[key] = client
    }

    /// Disconnects every client and stops listening.
    public func close() {
        for key in Array(clients.keys) { drop(key) }
        loop.unregister(listener.fd)
    }
}
