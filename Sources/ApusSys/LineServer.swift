#if canImport(Glibc)
import Glibc
#endif

/// A Unix-socket server speaking one request line in, one reply line out:
/// the control sockets of apus-hv and of the Dom0 backends. Runs on an
/// ``EventLoop``; the handler runs on the loop's thread.
public final class LineServer {
    private let listener: UnixListener
    private unowned let loop: EventLoop
    private var clients: [Int32: (socket: UnixSocket, buffer: [UInt8])] = [:]
    private let handler: (String) -> String
    /// A client may not send a line longer than this.
    public static let maxLine = 4096

    /// Listens on `path` (mode 0600) and answers each line with `handler`.
    public init(path: String, loop: EventLoop, mode: mode_t = 0o600, handler: @escaping (String) -> String) throws(SystemCallError) {
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
            var line = String(decoding: client.buffer[..<newline], as: UTF8.self)
            client.buffer.removeSubrange(...newline)
            while let last = line.last, last == "\r" || last == " " || last == "\t" { line.removeLast() }
            while let first = line.first, first == " " || first == "\t" { line.removeFirst() }
            let reply = handler(line)
            // The socket is non-blocking: a reply that does not fit drops the client.
            do {
                try client.socket.fd.setNonBlocking(false)
                try client.socket.sendAll(Array((reply + "\n").utf8))
                try client.socket.fd.setNonBlocking(true)
            } catch {
                drop(key)
                return
            }
        }
        if client.buffer.count > Self.maxLine {
            try? client.socket.sendAll(Array("{\"ok\":false,\"error\":\"line too long\"}\n".utf8))
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

/// Escapes a string for a JSON string literal.
public func jsonEscape(_ s: String) -> String {
    var out = ""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 {
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.utf8.count) + h
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out
}
