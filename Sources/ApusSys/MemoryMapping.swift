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

    /// Maps `length` bytes of `fd` at `offset` (shared), or anonymous memory
    /// if `fd` is nil. With `alignment` (a power of two, e.g. 2 MiB) the
    /// mapping starts on that boundary, so transparent huge pages can back it.
    public static func map(length: Int, protection: Protection = [.read, .write],
                           shared: Bool = true, fd: FileDescriptor? = nil, offset: Int64 = 0,
                           noReserve: Bool = false, alignment: Int = 0) throws(SystemCallError) -> MemoryMapping {
        guard length > 0 else { throw SystemCallError("mmap", .invalidArgument) }
        var flags: Int32 = shared ? MAP_SHARED : MAP_PRIVATE
        if fd == nil { flags |= MAP_ANONYMOUS }
        if noReserve { flags |= MAP_NORESERVE }
        var hint: UnsafeMutableRawPointer? = nil
        var reservation: (UnsafeMutableRawPointer, Int)? = nil
        if alignment > 4096 {
            // Reserve length + alignment of address space, then place the
            // real mapping at the aligned address inside it.
            let span = length + alignment
            // SAFETY: an inaccessible reservation chosen by the kernel.
            guard let r = mmap(nil, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), r != MAP_FAILED else {
                throw SystemCallError("mmap (reserve)", Errno.current)
            }
            let aligned = (UInt(bitPattern: r) + UInt(alignment - 1)) & ~UInt(alignment - 1)
            hint = UnsafeMutableRawPointer(bitPattern: aligned)
            reservation = (r, span)
            flags |= MAP_FIXED
        }
        // SAFETY: either a fresh mapping chosen by the kernel, or MAP_FIXED
        // inside our own reservation; nothing else refers to either.
        let p = mmap(hint, length, protection.rawValue, flags, fd?.rawValue ?? -1, off_t(offset))
        guard let p, p != MAP_FAILED else {
            let e = Errno.current
            if let (r, span) = reservation { munmap(r, span) }
            throw SystemCallError("mmap", e)
        }
        if let (r, span) = reservation {
            // SAFETY: release the unused head and tail of our reservation.
            let head = p - r
            if head > 0 { munmap(r, head) }
            let tail = span - head - length
            if tail > 0 { munmap(p + length, tail) }
        }
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
