#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// An mmap'ed range of this process's address space, unmapped on deinit.
///
/// Only the low-level modules (guest memory, KVM) touch the pointer.
public final class MemoryMapping: @unchecked Sendable {
    // SAFETY (Sendable): the base and length never change; concurrent access
    // to the bytes is the owner's business (guest memory is shared with the
    // guest anyway and is only accessed by copying).
    /// First byte of the mapping.
    public let base: UnsafeMutableRawPointer
    /// Length in bytes.
    public let length: Int

    /// Protection bits for ``map(length:protection:flags:fd:offset:)``.
    public struct Protection: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// Readable.
        public static let read = Protection(rawValue: PROT_READ)
        /// Writable.
        public static let write = Protection(rawValue: PROT_WRITE)
    }

    private init(base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    /// Maps `length` bytes of `fd` at `offset` (shared), or anonymous memory if `fd` is nil.
    public static func map(length: Int, protection: Protection = [.read, .write],
                           shared: Bool = true, fd: FileDescriptor? = nil, offset: Int64 = 0,
                           noReserve: Bool = false) throws(SystemCallError) -> MemoryMapping {
        guard length > 0 else { throw SystemCallError("mmap", .invalidArgument) }
        var flags: Int32 = shared ? MAP_SHARED : MAP_PRIVATE
        if fd == nil { flags |= MAP_ANONYMOUS }
        if noReserve { flags |= MAP_NORESERVE }
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to it.
        let p = mmap(nil, length, protection.rawValue, flags, fd?.rawValue ?? -1, off_t(offset))
        guard let p, p != MAP_FAILED else { throw SystemCallError("mmap", Errno.current) }
        return MemoryMapping(base: p, length: length)
    }

    /// Advises the kernel about use of a sub-range (e.g. `MADV_DONTDUMP`).
    public func advise(offset: Int, length: Int, advice: Int32) {
        guard offset >= 0, length >= 0, offset <= self.length, length <= self.length - offset else { return }
        // SAFETY: the range was checked to lie inside the mapping.
        _ = madvise(base + offset, length, advice)
    }

    deinit {
        // SAFETY: base/length are exactly what mmap returned.
        munmap(base, length)
    }
}
