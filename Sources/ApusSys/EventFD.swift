#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// An eventfd(2) counter: the kick and call notifications of vhost-user,
/// and KVM's ioeventfd/irqfd endpoints.
public final class EventFD: @unchecked Sendable {
    // SAFETY (Sendable): eventfd reads and writes are atomic in the kernel.
    /// The descriptor (owned; closed on deinit).
    public let fd: FileDescriptor

    /// Creates an eventfd; non-blocking by default.
    public init(initialValue: UInt32 = 0, nonBlocking: Bool = true, semaphore: Bool = false) throws(SystemCallError) {
        var flags: Int32 = Int32(EFD_CLOEXEC)
        if nonBlocking { flags |= Int32(EFD_NONBLOCK) }
        if semaphore { flags |= Int32(EFD_SEMAPHORE) }
        let raw = eventfd(initialValue, flags)
        guard raw >= 0 else { throw SystemCallError("eventfd", Errno.current) }
        fd = FileDescriptor(rawValue: raw)
    }

    /// Adopts an eventfd received from elsewhere (e.g. over SCM_RIGHTS).
    public init(adopting fd: FileDescriptor) {
        self.fd = fd
    }

    /// Adds `value` to the counter, waking any reader.
    public func signal(_ value: UInt64 = 1) {
        var v = value
        // A full counter (EAGAIN) still leaves the reader woken; nothing to do.
        _ = withUnsafeBytes(of: &v) { b in Glibc.write(fd.rawValue, b.baseAddress, 8) }
    }

    /// Reads and resets the counter; returns 0 if it was zero (non-blocking).
    @discardableResult
    public func drain() -> UInt64 {
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { b in Glibc.read(fd.rawValue, b.baseAddress, 8) }
        return n == 8 ? v : 0
    }

    /// Blocks until the counter is non-zero, then reads it (blocking eventfds).
    public func wait() throws(Errno) -> UInt64 {
        var v: UInt64 = 0
        _ = try withUnsafeMutableBytes(of: &v) { (b) throws(Errno) -> Int in
            try retryOnInterrupt { Glibc.read(fd.rawValue, b.baseAddress, 8) }
        }
        return v
    }

    deinit { fd.close() }
}
