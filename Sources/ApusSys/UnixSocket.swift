#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// A connected AF_UNIX stream socket, with SCM_RIGHTS descriptor passing
/// (the transport of vhost-user and of apus-hv's control channel).
public final class UnixSocket: @unchecked Sendable {
    // SAFETY (Sendable): the descriptor is immutable; callers serialize use.
    /// The socket descriptor (owned; closed on deinit unless released).
    public let fd: FileDescriptor
    private var owned = true

    /// Adopts a connected socket descriptor.
    public init(adopting fd: FileDescriptor) { self.fd = fd }

    /// Connects to the socket at `path`.
    public static func connect(path: String) throws(SystemCallError) -> UnixSocket {
        do {
            return try connect(path: path, nonBlocking: false)
        } catch {
            throw SystemCallError("connect \(path)", error)
        }
    }

    /// Connects to the socket at `path`; with `nonBlocking` the socket is
    /// non-blocking from the start, and a listener whose backlog is full
    /// fails with `wouldBlock` (retry later) instead of stalling the caller.
    public static func connect(path: String, nonBlocking: Bool) throws(Errno) -> UnixSocket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0)
        let raw = socket(AF_UNIX, type, 0)
        guard raw >= 0 else { throw Errno.current }
        let fd = FileDescriptor(rawValue: raw)
        do {
            try withSocketAddress(path) { (addr, len) throws(Errno) in
                _ = try retryOnInterrupt { Glibc.connect(raw, addr, len) }
            }
        } catch {
            fd.close()
            throw error
        }
        return UnixSocket(adopting: fd)
    }

    /// A connected pair (for tests and in-process peers).
    public static func pair() throws(SystemCallError) -> (UnixSocket, UnixSocket) {
        var fds: [Int32] = [0, 0]
        let r = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        guard r == 0 else { throw SystemCallError("socketpair", Errno.current) }
        return (UnixSocket(adopting: FileDescriptor(rawValue: fds[0])),
                UnixSocket(adopting: FileDescriptor(rawValue: fds[1])))
    }

    /// Sends `bytes` and optionally descriptors in one message. Returns bytes sent.
    @discardableResult
    public func send(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws(Errno) -> Int {
        let raw = fds.map(\.rawValue)
        let n = bytes.withUnsafeBytes { b in
            raw.withUnsafeBufferPointer { f in
                apus_sendmsg_fds(fd.rawValue, b.baseAddress, b.count, f.baseAddress, Int32(f.count), 0)
            }
        }
        guard n >= 0 else { throw Errno.current }
        return n
    }

    /// Sends all of `bytes` (descriptors ride on the first chunk).
    public func sendAll(_ bytes: [UInt8], fds: [FileDescriptor] = []) throws(Errno) {
        var offset = try send(bytes, fds: fds)
        while offset < bytes.count {
            offset += try send(Array(bytes[offset...]))
        }
    }

    /// One received message: bytes (empty at EOF) and any descriptors that came with them.
    public struct Received: Sendable {
        /// The payload; empty means the peer closed the connection.
        public var bytes: [UInt8]
        /// Descriptors passed with SCM_RIGHTS (now owned by the caller).
        public var fds: [FileDescriptor]
        /// The kernel truncated the payload or the descriptor list.
        public var truncated: Bool
    }

    /// Receives up to `maxBytes` and up to `maxFDs` descriptors.
    public func receive(maxBytes: Int, maxFDs: Int = 16, peek: Bool = false, waitAll: Bool = false) throws(Errno) -> Received {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        var fds = [Int32](repeating: -1, count: max(maxFDs, 1))
        var nfds: Int32 = 0
        var truncated: Int32 = 0
        var flags: Int32 = 0
        if peek { flags |= Int32(MSG_PEEK) }
        if waitAll { flags |= Int32(MSG_WAITALL) }
        let n = buffer.withUnsafeMutableBytes { b in
            fds.withUnsafeMutableBufferPointer { f in
                apus_recvmsg_fds(fd.rawValue, b.baseAddress, b.count, f.baseAddress, Int32(maxFDs), &nfds, &truncated, flags)
            }
        }
        guard n >= 0 else { throw Errno.current }
        buffer.removeLast(maxBytes - n)
        return Received(bytes: buffer, fds: fds.prefix(Int(nfds)).map { FileDescriptor(rawValue: $0) }, truncated: truncated != 0)
    }

    /// Receives exactly `count` bytes (plus descriptors that arrive with any
    /// part of them). Throws `connectionReset` if the peer closes early.
    public func receiveExactly(_ count: Int, maxFDs: Int = 16) throws(Errno) -> Received {
        var result = Received(bytes: [], fds: [], truncated: false)
        while result.bytes.count < count {
            let r = try receive(maxBytes: count - result.bytes.count, maxFDs: maxFDs)
            result.fds += r.fds
            result.truncated = result.truncated || r.truncated
            if r.bytes.isEmpty {
                for f in result.fds { f.close() }
                throw Errno.connectionReset
            }
            result.bytes += r.bytes
        }
        return result
    }

    /// Shuts down both directions (wakes a peer blocked in receive).
    public func shutdown() {
        _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR))
    }

    /// Sets a receive timeout (0 = none).
    public func setReceiveTimeout(milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The connected peer's process credentials.
    public func peerCredentials() -> (pid: Int32, uid: UInt32, gid: UInt32)? {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        guard apus_peer_credentials(fd.rawValue, &pid, &uid, &gid) == 0 else { return nil }
        return (pid, uid, gid)
    }

    /// Gives up ownership: the descriptor will not be closed on deinit.
    public func release() -> FileDescriptor {
        owned = false
        return fd
    }

    deinit { if owned { fd.close() } }
}

/// A listening AF_UNIX stream socket bound to a path.
public final class UnixListener: @unchecked Sendable {
    // SAFETY (Sendable): immutable descriptor and path.
    /// The listening descriptor (owned).
    public let fd: FileDescriptor
    /// The bound path (unlinked on deinit when `unlinkOnClose`).
    public let path: String
    private let unlinkOnClose: Bool

    /// Binds and listens on `path`, replacing a stale socket file there.
    /// `mode` sets the socket file's permissions.
    public init(path: String, mode: mode_t? = nil, backlog: Int32 = 64, unlinkOnClose: Bool = true) throws(SystemCallError) {
        let raw = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw SystemCallError("socket", Errno.current) }
        let fd = FileDescriptor(rawValue: raw)
        var st = stat()
        if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK {
            unlink(path)
        }
        do throws(Errno) {
            try withSocketAddress(path) { (addr, len) throws(Errno) in
                guard bind(raw, addr, len) == 0 else { throw Errno.current }
            }
            if let mode, chmod(path, mode) != 0 { throw Errno.current }
            guard listen(raw, backlog) == 0 else { throw Errno.current }
        } catch {
            fd.close()
            throw SystemCallError("listen on \(path)", error)
        }
        self.fd = fd
        self.path = path
        self.unlinkOnClose = unlinkOnClose
    }

    /// Accepts one connection; nil if non-blocking and none is pending.
    public func accept() throws(Errno) -> UnixSocket? {
        while true {
            let raw = apus_accept4(fd.rawValue)
            if raw >= 0 { return UnixSocket(adopting: FileDescriptor(rawValue: raw)) }
            let e = Errno.current
            if e == .interrupted { continue }
            if e == .wouldBlock { return nil }
            throw e
        }
    }

    /// Stops listening now: connections still in the backlog are reset, so
    /// their peers see an error at once. Idempotent; deinit does the same.
    public func close() {
        let wasClosed = closed.withValue { c -> Bool in
            defer { c = true }
            return c
        }
        guard !wasClosed else { return }
        fd.close()
        if unlinkOnClose { unlink(path) }
    }
    private let closed = LockedBox(false)

    deinit { close() }
}

/// Builds a `sockaddr_un` for `path` and calls `body` with it.
func withSocketAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> Void) throws(Errno) {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    let capacity = MemoryLayout.size(ofValue: addr.sun_path)
    guard bytes.count < capacity else { throw Errno(rawValue: ENAMETOOLONG) }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
        p.copyBytes(from: bytes)
        p[bytes.count] = 0
    }
    let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    try withUnsafePointer(to: &addr) { (p) throws(Errno) in
        try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sp) throws(Errno) in try body(sp, len) }
    }
}

extension FileDescriptor {
    /// Wakes a thread blocked in accept() on this listening socket.
    public func shutdownListening() { _ = Glibc.shutdown(rawValue, Int32(SHUT_RDWR)) }
}
