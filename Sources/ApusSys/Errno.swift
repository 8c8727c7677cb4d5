#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An error number returned by a system call, as in swift-system's `Errno`.
public struct Errno: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The raw `errno` value.
    public let rawValue: Int32

    /// Wraps a raw `errno` value.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    /// `strerror` text, e.g. "No such file or directory".
    public var description: String { String(cString: strerror(rawValue)) }

    /// Interrupted system call.
    public static let interrupted = Errno(rawValue: EINTR)
    /// Resource temporarily unavailable (non-blocking I/O would block).
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    /// No such file or directory.
    public static let noEntry = Errno(rawValue: ENOENT)
    /// Invalid argument.
    public static let invalidArgument = Errno(rawValue: EINVAL)
    /// Bad file descriptor.
    public static let badDescriptor = Errno(rawValue: EBADF)
    /// Broken pipe.
    public static let brokenPipe = Errno(rawValue: EPIPE)
    /// Connection reset by peer.
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    /// Connection refused.
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    /// Permission denied.
    public static let permissionDenied = Errno(rawValue: EACCES)
    /// Input/output error.
    public static let ioError = Errno(rawValue: EIO)
    /// Message too long.
    public static let messageTooLong = Errno(rawValue: EMSGSIZE)
    /// Operation not supported.
    public static let notSupported = Errno(rawValue: EOPNOTSUPP)
    /// File exists.
    public static let exists = Errno(rawValue: EEXIST)
    /// No space left on device.
    public static let noSpace = Errno(rawValue: ENOSPC)
    /// ENOBUFS
    public static let noBufferSpace = Errno(rawValue: ENOBUFS)
    /// Bad address.
    public static let badAddress = Errno(rawValue: EFAULT)
}

/// A system call error with the name of the call that failed, for messages
/// such as "open /dev/kvm: No such file or directory".
public struct SystemCallError: Error, Sendable, CustomStringConvertible {
    /// The operation that failed, e.g. `"open /dev/kvm"`.
    public let operation: String
    /// The error number.
    public let errno: Errno

    /// Creates an error for `operation` failing with `errno`.
    public init(_ operation: String, _ errno: Errno) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String { "\(operation): \(errno)" }
}

/// Calls `body` until it does not fail with EINTR; returns its result or
/// throws the errno it left.
@inline(__always)
public func retryOnInterrupt<T: BinaryInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let r = body()
        if r >= 0 { return r }
        let e = Errno.current
        if e != .interrupted { throw e }
    }
}
