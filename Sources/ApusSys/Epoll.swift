#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// A small epoll(7) wrapper for the single-threaded event loops of apus-hv
/// and the backends.
public final class Epoll: @unchecked Sendable {
    // SAFETY (Sendable): epoll_ctl and epoll_wait are thread-safe syscalls.
    /// The epoll descriptor (owned).
    public let fd: FileDescriptor

    /// Readiness events.
    public struct Events: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Readable.
        public static let readable = Events(rawValue: EPOLLIN.rawValue)
        /// Writable.
        public static let writable = Events(rawValue: EPOLLOUT.rawValue)
        /// Error condition.
        public static let error = Events(rawValue: EPOLLERR.rawValue)
        /// Hang up.
        public static let hangup = Events(rawValue: EPOLLHUP.rawValue)
        /// Peer closed its writing end.
        public static let peerClosed = Events(rawValue: EPOLLRDHUP.rawValue)
        /// Report once, then stay disabled until re-armed with `modify`.
        public static let oneShot = Events(rawValue: EPOLLONESHOT.rawValue)
    }

    /// One ready descriptor: the user token registered with it and its events.
    public struct Ready: Sendable {
        /// The token given to ``add(_:events:token:)``.
        public let token: UInt64
        /// What happened.
        public let events: Events
    }

    /// Creates an epoll instance.
    public init() throws(SystemCallError) {
        let raw = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard raw >= 0 else { throw SystemCallError("epoll_create1", Errno.current) }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Watches `target` for `events`, reporting `token` when ready.
    public func add(_ target: FileDescriptor, events: Events, token: UInt64) throws(SystemCallError) {
        try control(EPOLL_CTL_ADD, target, events, token)
    }

    /// Changes the watched events of `target`.
    public func modify(_ target: FileDescriptor, events: Events, token: UInt64) throws(SystemCallError) {
        try control(EPOLL_CTL_MOD, target, events, token)
    }

    /// Stops watching `target` (errors ignored: the fd may already be closed).
    public func remove(_ target: FileDescriptor) {
        var ev = epoll_event()
        _ = epoll_ctl(fd.rawValue, EPOLL_CTL_DEL, target.rawValue, &ev)
    }

    private func control(_ op: Int32, _ target: FileDescriptor, _ events: Events, _ token: UInt64) throws(SystemCallError) {
        var ev = epoll_event()
        ev.events = events.rawValue
        ev.data.u64 = token
        guard epoll_ctl(fd.rawValue, op, target.rawValue, &ev) == 0 else {
            throw SystemCallError("epoll_ctl", Errno.current)
        }
    }

    /// Waits up to `timeoutMilliseconds` (-1 = forever); returns the ready set
    /// (empty on timeout or interruption by a signal).
    public func wait(maxEvents: Int = 32, timeoutMilliseconds: Int32 = -1) throws(SystemCallError) -> [Ready] {
        var buffer = [epoll_event](repeating: epoll_event(), count: maxEvents)
        let n = buffer.withUnsafeMutableBufferPointer { p in
            epoll_wait(fd.rawValue, p.baseAddress, Int32(maxEvents), timeoutMilliseconds)
        }
        if n < 0 {
            let e = Errno.current
            if e == .interrupted { return [] }
            throw SystemCallError("epoll_wait", e)
        }
        return (0..<Int(n)).map { Ready(token: buffer[$0].data.u64, events: Events(rawValue: buffer[$0].events)) }
    }

    deinit { fd.close() }
}
